"""dcbnl ETS / max-rate / PCP->TC (vfd/backends/kernel/dcb.py) against a fake parsing the kernel's layout.

Neither netdevsim nor igb has DCB ops, so these layouts are checked here only.
"""

from __future__ import annotations

import errno
import struct

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from tests.kernel.fake_switchdev import FakeDcb
from vfd.backends.kernel.dcb import Dcb, DcbError, Ets, plan

FOUR = [{"pri": 0, "min_bw": 20, "max_bw": 100, "lsp": False},
        {"pri": 1, "min_bw": 30, "max_bw": 100, "lsp": False},
        {"pri": 2, "min_bw": 1, "max_bw": 100, "lsp": True},
        {"pri": 3, "min_bw": 40, "max_bw": 50, "lsp": False}]


def test_four_tcs_strict_ets_shares_normalised_pcp_pairs_and_maxrate_in_kbps():
    p = plan(FOUR, 10000)
    # ETS shares 20/30/40 scaled to 100 by the per-VF rule: 22/33/44 truncated, +1 to the first
    assert p.ets.tc_tx_bw == (23, 33, 0, 44, 0, 0, 0, 0)
    assert p.ets.tc_tsa == (2, 2, 0, 2, 2, 2, 2, 2)
    assert p.ets.prio_tc == (0, 0, 1, 1, 2, 2, 3, 3)
    assert p.maxrate_kbps == (0, 0, 0, 5_000_000, 0, 0, 0, 0)    # 50% of 10 Gb/s


def test_a_pri_above_three_means_eight_tcs_pcp_p_to_tc_p_with_defaults_for_missing_tcs():
    p = plan([{"pri": 5, "min_bw": 50, "max_bw": 100, "lsp": False}], 25000)
    assert p.ets.prio_tc == tuple(range(8))
    # TCs 0-4, 6, 7 get the default share 1, TC 5 its 50: 57 in all, scaled to 100
    assert sum(p.ets.tc_tx_bw) == 100 and p.ets.tc_tx_bw[5] == max(p.ets.tc_tx_bw)


def test_apply_sends_host_ieee_dcbx_then_one_ieee_set_with_the_kernel_struct_layouts():
    fake = FakeDcb(ifname="ens1f0")
    Dcb(sock=fake).apply("ens1f0", plan(FOUR, 10000))
    dcbx, ieee_set = fake.requests
    assert (dcbx["type"], dcbx["cmd"], dcbx["attrs"][14]) == (79, 23, bytes([0x09]))   # host | IEEE
    assert (ieee_set["type"], ieee_set["cmd"]) == (79, 20)
    ets = fake.ets
    assert len(ets) == 59
    willing, cap, cbs = ets[:3]
    assert (willing, cap, cbs) == (0, 0, 0)
    assert tuple(ets[3:11]) == (23, 33, 0, 44, 0, 0, 0, 0)      # tc_tx_bw
    assert tuple(ets[19:27]) == (2, 2, 0, 2, 2, 2, 2, 2)        # tc_tsa
    assert tuple(ets[27:35]) == (0, 0, 1, 1, 2, 2, 3, 3)        # prio_tc
    assert struct.unpack("=8Q", fake.maxrate)[3] == 5_000_000
    assert Dcb(sock=fake).read_ets("ens1f0") == Ets.unpack(ets)


def test_driver_refusal_in_the_reply_status_and_a_driver_without_dcb():
    with pytest.raises(DcbError) as ei:
        Dcb(sock=FakeDcb(refuse_ets=errno.EINVAL)).apply("eth0", plan(FOUR, 10000))
    assert ei.value.code == errno.EINVAL and "ETS" in str(ei.value)
    with pytest.raises(NetlinkError) as ei2:
        Dcb(sock=FakeDcb(has_ops=False)).apply("eth0", plan(FOUR, 10000))
    assert ei2.value.code == errno.EOPNOTSUPP
