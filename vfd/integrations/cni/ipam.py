"""IPAM delegation: run the `ipam.type` plugin found on CNI_PATH with our environment and netconf, as
every CNI plugin does (containernetworking/plugins' `invoke.DelegateAdd`)."""

from __future__ import annotations

import json
import os

from vfd.integrations.cni.errors import IPAM_FAILED, INVALID_ENV, CniError


def find_plugin(name: str, cni_path: list[str]) -> str:
    for d in cni_path:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    raise CniError(INVALID_ENV, f"IPAM plugin {name!r} not found on CNI_PATH {os.pathsep.join(cni_path) or '(empty)'}")


def delegate(command: str, ipam_type: str, netconf_raw: dict, cni_path: list[str], environ: dict) -> dict | None:
    """Run the IPAM plugin; its result (ADD) or None. A failure raises CniError with the plugin's message."""
    import subprocess   # here: a netconf without ipam does not pay for its import at every plugin start
    exe = find_plugin(ipam_type, cni_path)
    env = dict(environ)
    env["CNI_COMMAND"] = command
    conf = {k: v for k, v in netconf_raw.items() if k != "prevResult"}
    try:
        proc = subprocess.run([exe], input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CniError(IPAM_FAILED, f"IPAM plugin {ipam_type} ({command}) could not run: {exc}") from None
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0:
        msg = out or proc.stderr.decode(errors="replace").strip()
        try:
            err = json.loads(out)
            msg = err.get("msg", msg) + (f" ({err['details']})" if err.get("details") else "")
        except (ValueError, AttributeError):
            pass
        raise CniError(IPAM_FAILED, f"IPAM plugin {ipam_type} {command} failed: {msg}")
    if command != "ADD":
        return None
    try:
        result = json.loads(out)
    except ValueError:
        raise CniError(IPAM_FAILED, f"IPAM plugin {ipam_type} printed no JSON result: {out[:200]!r}") from None
    if not isinstance(result, dict):
        raise CniError(IPAM_FAILED, f"IPAM plugin {ipam_type} printed {out[:200]!r}, not a result object")
    return result
