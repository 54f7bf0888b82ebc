"""Shared fakes of the dpdk tests: a port the recording stand-in describes, a main config, and a fixture that
opens backends over the stand-in and closes them afterwards."""

from __future__ import annotations

import ctypes

import pytest

from tests.vfdlab import keep_programs
from vfd.backends.dpdk import ffi
from vfd.backends.dpdk.backend import DpdkBackend
from vfd.backends.dpdk.eal import PREFIX_ENV
from vfd.model.mainconfig import MainConfig

from .recording_ffi import RecordingFfi


def main_config(**kw) -> MainConfig:
    data = {"backend": "dpdk", "pciids": [{"id": "0000:07:00.0", "vfs_count": 4}], "cpu_mask": "0x01",
            "huge_pages": False, "enable_flowcontrol": True}
    data.update(kw)
    return MainConfig.model_validate(data)


def fake_port(driver: str = "net_ixgbe", max_vfs: int = 4, lsc: bool = True, sample: bool = False) -> RecordingFfi:
    info = ffi.RteEthDevInfo()
    info.min_mtu, info.max_mtu = 68, 9710
    flags = ctypes.c_uint32(0x2 if lsc else 0)
    info.dev_flags = ctypes.addressof(flags)
    info.rx_offload_capa = ffi.RTE_ETH_RX_OFFLOAD_VLAN_STRIP | ffi.RTE_ETH_RX_OFFLOAD_CHECKSUM
    info.default_rxconf.rx_free_thresh = 32
    pinfo = ffi.PortInfo(port_id=0, name="0000:07:00.0", driver_name=driver, max_vfs=max_vfs, max_rx_queues=128,
                         max_tx_queues=128, max_mac_addrs=128, min_mtu=68, max_mtu=9710, max_rx_pktlen=9728,
                         if_index=0, socket_id=0, mac="00:1b:21:00:00:01")
    f = RecordingFfi(sample=sample, returns={
        "list_ports": lambda: [0], "rte_eth_dev_get_name_by_port": lambda p: "0000:07:00.0", "port_info": lambda p: pinfo,
        "rte_eth_dev_info_get": lambda p: info, "pktmbuf_pool_create": 0x1000, "callback_register": lambda *a: object(),
        "link_get_nowait": lambda p: ffi.LinkStatus(10000, True, True, True),
        "rte_version": "DPDK 22.11.11", "eal_cleanup": 0,
    })
    f.keep = (info, flags)
    return f



@pytest.fixture
def opened(monkeypatch):
    """opened(stand_in, **main_config) -> a DpdkBackend with its first PF open; all closed at the end."""
    monkeypatch.setenv(PREFIX_ENV, "vfdtest-fake")
    made: list[DpdkBackend] = []

    def make(f, **main):
        b = DpdkBackend(main_config(**main), ffi=f)
        keep_programs(b)                   # the manager's part: the programs the backend asks for
        made.append(b)
        b.open_pf(b.main.pciids[0])
        return b
    yield make
    for b in made:
        b.close()
