"""devlink messages (vfd/backends/kernel/devlink.py) against a fake that parses them by the kernel's layout."""

from __future__ import annotations

import errno

import pytest
from pyroute2.netlink.exceptions import NetlinkError

from tests.kernel.fake_switchdev import FakeDevlink
from vfd.backends.kernel.devlink import Devlink, Handle, Rate

H = Handle("netdevsim", "netdevsim1")


def make(**kw):
    fake = FakeDevlink(**kw)
    return fake, Devlink(sock=fake)


def test_eswitch_mode_get_and_set():
    fake, dl = make()
    assert dl.eswitch_mode(H) == "legacy"
    dl.set_eswitch_mode(H, "switchdev")
    assert fake.mode == "switchdev"
    assert fake.requests[-1] == {"cmd": 30, "bus": "netdevsim", "dev": "netdevsim1", "eswitch_mode": 1}
    assert dl.eswitch_mode(H) == "switchdev"


def test_handle_and_representors_from_the_port_dump():
    fake, dl = make(mode="switchdev", pf="eni1np1", vfs=3)
    assert dl.handle_of("eni1np1") == H
    assert dl.handle_of("nope") is None
    reps = dl.representors(H)
    assert sorted(reps) == [0, 1, 2]
    assert (reps[1].index, reps[1].netdev, reps[1].ifindex) == (129, "eni1np1_1", 11)


def test_leaf_rate_in_bytes_per_second_with_parent_and_noparent():
    fake, dl = make(mode="switchdev")
    dl.new_node(H, "vfd_bwg1", Rate(tx_share=100, tx_max=1000))
    assert fake.nodes["vfd_bwg1"] == {"tx_share": 12_500_000, "tx_max": 125_000_000}
    dl.set_leaf(H, 129, Rate(tx_share=10, tx_max=500, parent="vfd_bwg1"))
    req = fake.requests[-1]
    assert (req["cmd"], req["port"], req["tx_share"], req["tx_max"], req["parent"]) == \
        (75, 129, 1_250_000, 62_500_000, "vfd_bwg1")
    leaves, nodes = dl.rates(H)
    assert leaves[129] == Rate(tx_share=10, tx_max=500, parent="vfd_bwg1")
    assert nodes["vfd_bwg1"] == Rate(tx_share=100, tx_max=1000)
    assert leaves[128] == Rate()
    n = len(fake.requests)
    dl.set_leaf(H, 129, Rate(tx_max=300, parent="vfd_bwg1"), "vfd_bwg1")   # same parent: not sent (EBUSY)
    assert "parent" not in fake.requests[-1] and len(fake.requests) == n + 1
    dl.set_leaf(H, 129, Rate(tx_max=200), "vfd_bwg1")            # noparent: an empty parent name
    assert fake.requests[-1]["parent"] == ""
    assert fake.leaves[129]["parent"] is None
    dl.del_node(H, "vfd_bwg1")
    assert "vfd_bwg1" not in fake.nodes


def test_tc_bw_detected_from_the_family_maxattr_and_encoded_as_nested_pairs():
    _, old = make(maxattr=176)                      # Linux 6.1
    assert not old.tc_bw_supported()
    fake, new = make(maxattr=182, mode="switchdev")   # 6.17 and later
    assert new.tc_bw_supported()
    new.set_leaf(H, 128, Rate(tx_max=100, tc_bw={0: 20, 5: 80}))
    assert fake.requests[-1]["tc_bws"] == [{"index": i, "bw": {0: 20, 5: 80}.get(i, 0)} for i in range(8)]


def test_refusal_is_a_netlink_error_with_the_errno():
    fake, dl = make(mode="legacy")
    with pytest.raises(NetlinkError) as ei:
        dl.set_leaf(H, 129, Rate(tx_max=5))
    assert ei.value.code == errno.ENODEV


def test_moving_a_leaf_between_nodes_goes_through_noparent():
    fake, dl = make(mode="switchdev")
    dl.new_node(H, "vfd_bwg0", Rate())
    dl.new_node(H, "vfd_bwg1", Rate())
    dl.set_leaf(H, 130, Rate(tx_max=10, parent="vfd_bwg0"))
    dl.set_leaf(H, 130, Rate(tx_max=10, parent="vfd_bwg1"), "vfd_bwg0")
    assert [r.get("parent") for r in fake.requests[-2:]] == ["", "vfd_bwg1"]
    assert fake.leaves[130]["parent"] == "vfd_bwg1"
