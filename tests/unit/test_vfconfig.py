"""The VF config file format: each field's rule, and errors that name file, field, value and rule."""

import json

import pytest

from vfd.errors import ConfigError
from vfd.model.vfconfig import parse_vf_config

BASE = {"pciid": "0000:07:00.0", "vfid": 1, "vlans": [10]}


def parse(**kw):
    return parse_vf_config(json.dumps({**BASE, **kw}), "vm.json")


def err(**kw) -> str:
    with pytest.raises(ConfigError) as ei:
        parse(**kw)
    return str(ei.value)


def test_defaults_match_the_original():
    c = parse()
    assert (c.allow_bcast, c.allow_mcast, c.allow_un_ucast, c.link_status, c.rate, c.name) == \
           (True, True, False, "auto", 0.0, "unnamed")


@pytest.mark.parametrize("vlans,needle", [
    ([], "at least 1"), ([0], "greater than or equal to 1"), ([4096], "less than or equal to 4095"),
    ([5, 4096], "vlans[1]"),               # the original never range-checked the last element
    ([7, 7], "duplicate VLAN 7"), (list(range(1, 66)), "at most 64"), (["10"], "valid integer"),
])
def test_vlan_rules(vlans, needle):
    assert needle in err(vlans=vlans)


def test_error_names_file_field_and_value():
    msg = err(vlans=[10, 5000])
    assert msg.startswith("vm.json: ") and "field 'vlans[1]'" in msg and "5000" in msg


@pytest.mark.parametrize("mac,needle", [
    ("01:00:5e:00:00:01", "unicast"), ("00:00:00:00:00:00", "all-zero"), ("02:00:00:00:00", "six two-digit"),
    ("02:000:00:00:00:01", "six two-digit"), ("zz:00:00:00:00:01", "six two-digit"),
])
def test_mac_rules(mac, needle):
    assert needle in err(macs=[mac])


def test_macs_parsed_case_insensitively_and_dashes_accepted():
    c = parse(macs=["02-AB-00-00-00-01", "02:ab:00:00:00:02"])
    assert c.macs == ["02:ab:00:00:00:01", "02:ab:00:00:00:02"]
    assert "duplicate MAC" in err(macs=["02:AB:00:00:00:01", "02:ab:00:00:00:01"])
    assert "at most 64" in err(macs=[f"02:00:00:00:00:{i:02x}" for i in range(65)])


def test_single_mac_form_and_vm_mac():
    assert parse(mac="02:00:00:00:00:09").mac_list == ["02:00:00:00:00:09"]
    assert parse(macs=["02:00:00:00:00:01"], vm_mac="02:00:00:00:00:02").mac_list == \
           ["02:00:00:00:00:02", "02:00:00:00:00:01"]


@pytest.mark.parametrize("kw,needle", [
    ({"rate": 1.5}, "less than or equal to 1"), ({"rate": -0.1}, "greater than or equal to 0"),
    ({"rate": 0.2, "min_rate": 0.3}, "min_rate 0.3 is above rate 0.2"), ({"rate": "0.5"}, "valid number"),
])
def test_rate_rules(kw, needle):
    assert needle in err(**kw)


def test_min_rate_without_rate_is_allowed():
    assert parse(min_rate=0.3).min_rate == 0.3


def test_strict_types_no_silent_defaults():
    assert "valid boolean" in err(allow_bcast="yes")
    assert "valid boolean" in err(strip_stag=1)
    assert "valid integer" in err(vfid=True)
    assert "unknown field 'allow_bcst'" in err(allow_bcst=True)
    assert "'link_status'" in err(link_status="maybe")
    assert "greater than or equal to 0" in err(vfid=-1)


def test_required_fields():
    with pytest.raises(ConfigError) as ei:
        parse_vf_config(json.dumps({"vlans": [1]}), "x.json")
    assert "field 'pciid' is required" in str(ei.value) and "field 'vfid' is required" in str(ei.value)


def test_comments_are_ignored():
    assert parse(comment="hello").vfid == 1


@pytest.mark.parametrize("cb", ["rm -rf /; true", "a && b", "x | y", "echo $(id)", "a `b`", "a > /etc/x"])
def test_callbacks_without_shell_metacharacters(cb):
    assert "shell metacharacter" in err(start_cb=cb)


def test_callback_accepted():
    assert parse(start_cb="/usr/bin/logger vf up", stop_cb="/bin/true").start_cb == "/usr/bin/logger vf up"


def test_queue_shares():
    c = parse(queues=[{"priority": 0, "share": "10%"}, {"priority": 3, "share": 25}])
    assert [(q.priority, q.share) for q in c.queues] == [(0, 10), (3, 25)]
    assert "whole percentage" in err(queues=[{"priority": 0, "share": "ten"}])
    assert "less than or equal to 7" in err(queues=[{"priority": 8, "share": "1%"}])
    assert "once" in err(queues=[{"priority": 1, "share": "1%"}, {"priority": 1, "share": "2%"}])


def test_mirror_and_insert_rules():
    assert parse(mirror={"target": 2}).mirror.mode == "all"
    assert parse(mirror={"target": 2, "direction": "both"}).mirror.mode == "all"
    self_mirror = err(mirror={"target": 1, "direction": "in"})
    assert "field 'mirror.target': value 1: is this VF itself" in self_mirror and "rule mirror_target" in self_mirror
    insert = err(vlans=[1, 2], insert_stag=True)
    assert "field 'insert_stag': value true: needs exactly one VLAN, found 2" in insert
    for text in (self_mirror, insert):        # the field that is wrong, not the whole config
        assert "(top level)" not in text and "pciid" not in text


@pytest.mark.parametrize("text,needle", [("", "not valid JSON"), ("[]", "must be a JSON object"),
                                         ("{,}", "not valid JSON"), (b"\xff\xfe", "not valid JSON")])
def test_unparsable(text, needle):
    with pytest.raises(ConfigError) as ei:
        parse_vf_config(text, "x.json")
    assert needle in str(ei.value)
