"""The daemon's status reply carries `data` for programs (vfd-cni's CHECK reads it, never `msg`)."""

from tests.vfdlab import vf_config


def test_status_reply_has_in_sync_and_fields(vfd):
    assert vfd.add("port1", vf_config("0000:07:00.0", 2, vlans=[10], macs=["02:00:00:00:00:21"])).returncode == 0
    r = vfd.request("status", filename="port1.json")
    assert r["state"] == "OK"
    data = r["data"]
    assert data["in_sync"] is True
    fields = {f["field"]: f for f in data["fields"]}
    # per field: "differs" (main's status) or "in_sync" (this branch's minimal one)
    assert fields and not any(f.get("differs") or f.get("in_sync") is False for f in fields.values())
