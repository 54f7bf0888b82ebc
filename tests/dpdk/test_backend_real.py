"""The dpdk backend against Debian's real DPDK 22.11 libraries, always in a separate process (EAL initialises
once per process): a real vfd daemon on a net_null PF, and the backend's real C mailbox callback fired through
DPDK's own dispatch.  Nothing here touches NIC hardware: net_null is DPDK's software null device.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.vfdlab import VfdProcess, vf_config
from vfd.backends.dpdk import ffi
from vfd.backends.dpdk.eal import PREFIX_ENV
from vfd.policy import mailbox as m

pytestmark = [
    pytest.mark.dpdk,
    pytest.mark.skipif(os.geteuid() != 0, reason="rte_eal_init needs root (run make test as root)"),
    pytest.mark.skipif(not ffi.available(), reason="DPDK 22.11 libraries not installed (tools/dpdk/setup.sh as root)"),
]

ROOT = Path(__file__).resolve().parents[2]
PF = "net_null0"


@pytest.fixture
def prefix(monkeypatch):
    """A file prefix of our own (a real vfd may run on this host with 'vfd'); the runtime dir is checked
    and removed whatever happens."""
    name = f"vfdtest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(PREFIX_ENV, name)
    yield name
    shutil.rmtree(f"/var/run/dpdk/{name}", ignore_errors=True)


def daemon(tmp_path, **extra) -> VfdProcess:
    pfs = extra.pop("pfs", [{"id": PF, "backend": "dpdk", "vfs_count": 4}])
    return VfdProcess(tmp_path, pfs=pfs, huge_pages=False, cpu_mask="0x01", **extra)


def test_daemon_on_net_null(tmp_path, prefix):
    d = daemon(tmp_path)
    t0 = time.monotonic()
    d.start(timeout=30)
    started = time.monotonic() - t0
    try:
        assert os.path.isdir(f"/var/run/dpdk/{prefix}")
        show = d.iplex("show", "all")
        assert show.returncode == 0, show.stderr
        rows = [line for line in show.stdout.splitlines() if PF in line]
        assert rows, show.stdout
        cols = rows[0].strip(' ",').split()
        assert cols[:6] == ["pf", "0", PF, "UP", "10000", "1"], rows[0]
        assert len(cols) == 14 and all(c.isdigit() for c in cols[6:]), rows[0]   # the 8 counters
        assert "Spoofed" in show.stdout
        pfs = d.iplex("show", "pfs")
        assert PF in pfs.stdout and "vf " not in pfs.stdout

        # A VF on a PMD without a VF API: refused by admission, naming the driver and the feature
        r = d.add("vm1", vf_config(PF, 1, vlans=(10,)))
        out = r.stderr
        assert r.returncode == 1 and "unable to add vf: vm1" in out, out
        assert "driver net_null" in out and "VLAN filter list" in out and "rule driver_capability" in out, out
        assert (d.config_dir / "vm1.json.error").exists() and d.live() == []
        r = d.add("vm2", vf_config(PF, 2, vlans=(10,), strip_stag=True))
        assert r.returncode == 1 and "driver net_null" in r.stderr and "VLAN strip" in r.stderr, r.stderr
        r = d.add("vm3", vf_config(PF, 7, vlans=(10,)))                 # beyond vfs_count: range rule first
        assert r.returncode == 1 and "out of range" in r.stderr
        assert d.iplex("ping").returncode == 0
    finally:
        rc = d.stop(signal.SIGTERM)
    log = d.log_text()
    assert rc == 0, log
    assert not os.path.exists(f"/var/run/dpdk/{prefix}"), log
    assert "EAL cleaned up" in log and f"PF {PF} (DPDK port 0) closed" in log
    assert f"--vdev {PF} --no-pci" in log and "--no-huge -m 64 --no-shconf" in log
    print(f"\ndaemon start {started:.2f}s")


def test_start_failure_still_cleans_up(tmp_path, prefix):
    """A PF that is not there aborts start-up; EAL is still cleaned up and the runtime dir removed."""
    d = daemon(tmp_path, pfs=[{"id": PF, "backend": "dpdk", "vfs_count": 4},
                              {"id": "0000:99:00.0", "backend": "dpdk"}])
    with pytest.raises(RuntimeError, match="no DPDK port named 0000:99:00.0"):
        d.start(timeout=30)
    d.stop()
    log = d.log_text()
    assert "EAL cleaned up" in log, log
    assert not os.path.exists(f"/var/run/dpdk/{prefix}")


def test_mailbox_callback_verdicts(prefix):
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "dpdk" / "mbox_child.py"), prefix],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.monotonic() - t0
    lines = [line for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    assert r.returncode == 0 and lines, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(lines[-1][len("RESULT "):])
    ACK, NACK, PROCEED = m.NOOP_ACK, m.NOOP_NACK, m.PROCEED

    assert res["pf"]["driver"] == "net_null" and res["pf"]["features"] == [] and res["pf"]["vfs_count"] == 8
    assert [ffi.RTE_ETH_EVENT_INTR_LSC, ffi.RTE_ETH_EVENT_VF_MBOX] == [e for _, e in res["registered"]]
    assert res["net_null_retval"] == PROCEED          # no VF API: the PMD's default stands

    ix = res["families"]["ixgbe"]
    assert ix["vlan_configured"]["retval"] == ACK
    assert ix["vlan_not_configured"]["retval"] == NACK
    assert ix["mac_admissible"]["retval"] == PROCEED and ix["guest_mac"] == "02:00:00:00:00:0d"
    assert ix["mac_in_use"]["retval"] == NACK and ix["macvlan_in_use"]["retval"] == NACK
    assert ix["lpe_fits"]["retval"] == PROCEED and ix["lpe_too_big"]["retval"] == NACK
    assert ix["xcast_promisc"] == {"retval": PROCEED, "word1": m.IXGBEVF_XCAST_MODE_ALLMULTI}  # capped in place
    assert ix["unknown"]["retval"] == NACK
    assert ix["unmanaged_vlan"]["retval"] == PROCEED
    assert ix["reset"]["retval"] == ACK and ix["refresh_queued"] == [1]
    assert ["drift", 1] in ix["events"]                   # SET_LPE / unknown: re-apply now
    assert ["link_up", None] in ix["events"]              # LSC fired before the loop was attached
    assert ix["events"][-1] == ["vf_reset", 1]            # the refresh once the mailbox went quiet
    assert ix["pings"] == [[0, 1], [0, 2]]                # LSC pings the configured VFs

    i4 = res["families"]["i40e"]
    assert i4["vlan_configured"]["retval"] == PROCEED and i4["vlan_not_configured"]["retval"] == NACK
    assert i4["mac_admissible"]["retval"] == PROCEED and i4["mac_in_use"]["retval"] == NACK
    assert i4["guest_macs"] == ["02:00:00:00:00:0d"]
    assert i4["promisc_both"] == {"retval": PROCEED, "payload": "00000200"}   # unicast bit masked, multicast kept
    assert i4["unknown"]["retval"] == NACK
    assert i4["enable_queues"]["retval"] == PROCEED and i4["queues_ready"] is True and i4["refresh_queued"] == [1]

    bn = res["families"]["bnxt"]
    assert bn["default_mac_configured"]["retval"] == PROCEED
    assert bn["default_mac_not_configured"]["retval"] == NACK
    assert bn["mtu_too_big"]["retval"] == NACK and bn["mtu_fits"]["retval"] == PROCEED
    assert bn["rx_mask"] == {"retval": PROCEED, "mask": m.RX_MASK_BCAST | m.RX_MASK_ALL_MCAST}  # promisc stripped
    assert bn["nvm"]["retval"] == NACK and bn["ring_alloc"]["retval"] == PROCEED

    assert res["runtime_dir_exists"] is False and res["callbacks_left"] == 0
    print(f"\nmailbox child: open_pf {res['open_s']}s, wall {wall:.2f}s")
