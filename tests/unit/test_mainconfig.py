"""The main config: the original's keys, bare PCI strings, and refusal instead of silent fallback."""

import json

import pytest

from vfd.errors import ConfigError
from vfd.model.mainconfig import parse_main_config


def parse(**kw):
    return parse_main_config(json.dumps({"pciids": ["0000:01:00.0"], **kw}), "vfd.cfg")


def err(**kw):
    with pytest.raises(ConfigError) as ei:
        parse(**kw)
    return str(ei.value)


def test_defaults():
    m = parse()
    assert (m.log_dir, m.config_dir, m.fifo, m.cpu_mask, m.default_mtu, m.backend, m.live_dir) == \
           ("/var/log/vfd", "/var/lib/vfd/config", "/var/lib/vfd/request", "0x04", 9420, "sim",
            "/var/lib/vfd/config_live")


def test_bare_pci_string_is_promiscuous_with_default_mtu():
    m = parse(default_mtu=9000)
    pf = m.pciids[0]
    assert pf.promiscuous is True and m.mtu_of(pf) == 9000


def test_legacy_mtu_key():
    assert parse(mtu=1500).mtu_of(parse(mtu=1500).pciids[0]) == 1500


@pytest.mark.parametrize("mask,out", [("0x04", "0x04"), ("8", "0x08"), (16, "0x10")])
def test_cpu_mask(mask, out):
    assert parse(cpu_mask=mask).cpu_mask == out


@pytest.mark.parametrize("mask", ["0x03", "0", "zz"])
def test_cpu_mask_refused(mask):
    assert "cpu_mask" in err(cpu_mask=mask)


@pytest.mark.parametrize("alarm,value", [("30%", 0.30), ("30", 0.30), (1.05, 1.05)])
def test_cpu_alarm(alarm, value):
    assert parse(cpu_alarm=alarm).cpu_alarm == pytest.approx(value)


def test_refusals():
    assert "cpu_alarm" in err(cpu_alarm=0.01)
    assert "9420" in err(pciids=[{"id": "a", "mtu": 9500}])
    assert "unknown field 'huge'" in err(huge=True)             # the sample's key the original ignored
    assert "listed more than once" in err(pciids=["a", "a"])
    assert "only apply to the sim backend" in err(pciids=[{"id": "a", "backend": "kernel", "sim": {}}])
    assert "valid boolean" in err(huge_pages="false")
    assert "bwg0 .. bwg7" in err(pciids=[{"id": "a", "bw_grps": {"group1": [0]}}])
    assert "less than or equal to 100" in err(pciids=[{"id": "a", "tclasses": [{"pri": 0, "max_bw": 120}]}])
    assert "numa_mem" in err(numa_mem="lots")


def test_backend_per_pf_overrides_default():
    m = parse(backend="kernel", pciids=[{"id": "eth0"}, {"id": "b", "backend": "sim", "sim": {"driver": "i40e"}}])
    assert [m.backend_of(p) for p in m.pciids] == ["kernel", "sim"]


@pytest.mark.parametrize("key,value,rule", [
    ("reconcile_interval", 1e309, "finite"), ("reconcile_interval", float("nan"), "finite"),
    ("reconcile_interval", 1e-300, "greater than or equal to 0.5"),
    ("reconcile_interval", 86401, "less than or equal to 86400"),
    ("callback_timeout", 0, "greater than or equal to 1"), ("callback_timeout", 1e309, "finite"),
    ("callback_timeout", 3601, "less than or equal to 3600")])
def test_intervals_are_bounded_and_finite(key, value, rule):
    """Issue 10.14: 1e309 (infinity in JSON) passed --check and 1e-300 pinned a core."""
    msg = err(**{key: value})
    assert f"field '{key}'" in msg and rule in msg, msg


def test_interval_bounds_admit_their_ends():
    m = parse(reconcile_interval=0.5, callback_timeout=3600)
    assert (m.reconcile_interval, m.callback_timeout) == (0.5, 3600)
    assert parse(reconcile_interval=86400).reconcile_interval == 86400


@pytest.mark.parametrize("extra, pf_extra, key", [({"enable_flowcontrol": True}, {}, "enable_flowcontrol"),
                                                  ({}, {"hw_strip_crc": False}, "hw_strip_crc")])
def test_kernel_pf_refuses_settings_it_would_ignore(extra, pf_extra, key):
    """Issue 10.4: a kernel PF does not program pause frames or CRC keeping: refused, not ignored;
    the same settings stay valid for the sim and dpdk backends."""
    kernel = {"pciids": [{"id": "eth0", "backend": "kernel", **pf_extra}], **extra}
    with pytest.raises(ConfigError, match=f"{key}.*not supported by the kernel backend"):
        parse_main_config(json.dumps(kernel), "t")
    for backend in ("sim", "dpdk"):
        parse_main_config(json.dumps({"pciids": [{"id": "0000:07:00.0", "backend": backend, **pf_extra}],
                                      **extra}), "t")


def test_flowcontrol_flag_is_checked_like_the_key():
    """`vfd -F` with a kernel PF is refused as `enable_flowcontrol: true` in the file is."""
    import argparse
    from vfd.daemon.main import apply_flags
    main = parse_main_config(json.dumps({"pciids": [{"id": "eth0", "backend": "kernel"}]}), "t")
    flags = argparse.Namespace(qos=False, flowcontrol=True, no_huge=False)
    with pytest.raises(ConfigError, match="enable_flowcontrol true is not supported by the kernel backend"):
        apply_flags(main, flags)
