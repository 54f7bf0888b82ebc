"""Shared fixtures of the OpenStack tests: a real vfd daemon on sim PFs, and os-vif initialised with its plugins.

The daemon is a real process (`.venv/bin/vfd -f -p <tmp config>`, through tests.vfdlab.VfdProcess)
with everything (config_dir, live dir, FIFO, sim NIC state, pid file) in the test's tmp dir; it is
stopped with SIGTERM and waited for (SIGKILL only if it hangs), and the test fails if a daemon
of that config is still running afterwards.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.vfdlab import VfdProcess, pids_of

PF = "0000:07:00.0"          # ixgbe, 8 VFs, the 82599 layout: VF n at routing id + 128 + 2n
PF2 = "0000:81:00.0"         # mlx5, 4 VFs, sim layout set in the config: VF n at routing id + 2 + n


def vf_pci(vfid: int, pf: str = PF) -> str:
    """The VF PCI addresses the sim PFs of `vfd_host` report (as the original computed them)."""
    if pf == PF:
        return {0: "0000:07:10.0", 1: "0000:07:10.2", 2: "0000:07:10.4", 3: "0000:07:10.6",
                4: "0000:07:11.0", 5: "0000:07:11.2", 6: "0000:07:11.4", 7: "0000:07:11.6"}[vfid]
    return {0: "0000:81:00.2", 1: "0000:81:00.3", 2: "0000:81:00.4", 3: "0000:81:00.5"}[vfid]


class Host:
    """The daemon plus what the tests look at: sim NIC registers, the live and drop directories."""

    def __init__(self, proc: VfdProcess):
        self.proc = proc
        self.conf = proc.conf
        self.config_dir = proc.config_dir
        self.live_dir = proc.live_dir

    def vf_state(self, vfid: int, pf: str = PF) -> dict:
        return self.proc.vf_state(vfid, pf)

    def sim_file(self, pf: str = PF):
        return self.proc.sim_dir / f"{pf}.json"

    def live(self) -> dict[str, dict]:
        return {p.name[:-5]: json.loads(p.read_text()) for p in sorted(self.live_dir.glob("*.json"))}

    def snapshot(self) -> dict:
        return self.proc.snapshot()

    def log(self) -> str:
        return self.proc.log_text()


@pytest.fixture
def vfd_host(tmp_path):
    proc = VfdProcess(tmp_path / "vfd", [
        {"id": PF, "vfs_count": 8, "sim": {"driver": "ixgbe"}},
        {"id": PF2, "vfs_count": 4, "sim": {"driver": "mlx5", "vf_offset": 2, "vf_stride": 1}},
    ])
    try:
        proc.start(timeout=20)      # waits until `iplex --conf ... ping` answers
        yield Host(proc)
    finally:
        rc = proc.stop()            # SIGTERM, wait (SIGKILL after 15 s)
        left = pids_of(f"vfd -f -p {proc.conf}")
        assert not left, f"vfd processes left behind: {left}"
        assert rc == 0, f"vfd exited with {rc}:\n{proc.log_text()}"


@pytest.fixture(scope="session")
def os_vif_lib():
    os_vif = pytest.importorskip("os_vif")
    os_vif.initialize()
    return os_vif


@pytest.fixture
def osvif(os_vif_lib, vfd_host):
    """os-vif pointed at the test daemon through the plugin's option [os_vif_vfd] vfd_config."""
    from oslo_config import cfg
    cfg.CONF.set_override("vfd_config", str(vfd_host.conf), group="os_vif_vfd")
    cfg.CONF.set_override("request_timeout", 10.0, group="os_vif_vfd")
    yield os_vif_lib
    cfg.CONF.clear_override("vfd_config", group="os_vif_vfd")
    cfg.CONF.clear_override("request_timeout", group="os_vif_vfd")


@pytest.fixture
def make_vif():
    """VIFHostDevice factory: a direct port on VF `vf_pci`, its network VLAN/MTU and binding:profile."""
    from os_vif import objects
    from vfd.integrations.osvif import VIFPortProfileVfd

    def make(dev_address: str, profile: dict | None = None, port_id: str | None = None,
             mac: str | None = "fa:16:3e:00:00:01", vlan: int | None = 100, mtu: int | None = 1500,
             plugin: str = "vfd"):
        net_args = {"id": str(uuid.uuid4()), "label": "sriov-net"}
        if vlan is not None:
            net_args["vlan"] = vlan
        if mtu is not None:
            net_args["mtu"] = mtu
        args = dict(id=port_id or str(uuid.uuid4()), address=mac, plugin=plugin,
                    network=objects.network.Network(**net_args), dev_type="ethernet", dev_address=dev_address)
        if profile is not None:
            args["port_profile"] = VIFPortProfileVfd(binding_profile=profile)
        return objects.vif.VIFHostDevice(**args)
    return make


@pytest.fixture
def instance():
    from os_vif import objects
    return objects.instance_info.InstanceInfo(uuid=str(uuid.uuid4()), name="web-vm", project_id="p1")
