"""The daemon's status reply carries `data` for programs (vfd-cni's CHECK reads it, never `msg`)."""

from tests.vfdlab import vf_config


def test_status_reply_has_in_sync_and_fields(vfd):
    assert vfd.add("port1", vf_config("0000:07:00.0", 2, vlans=[10], macs=["02:00:00:00:00:21"])).returncode == 0
    r = vfd.request("status", filename="port1.json")
    assert r["state"] == "OK"
    data = r["data"]
    assert data["in_sync"] is True
    fields = {f["field"]: f for f in data["fields"]}
    assert fields and all(f["in_sync"] for f in fields.values())
    assert all(f["desired"] == f["programmed"] for f in fields.values())
