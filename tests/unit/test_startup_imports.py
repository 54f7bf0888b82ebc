"""What the daemon loads before its first answer (issue 15: start-up cost is mostly imports).

Each check runs a fresh interpreter, so modules other tests imported do not hide a regression.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _modules_after(code: str, env: dict | None = None) -> set[str]:
    prog = code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, cwd=ROOT, env=env,
                       check=True)
    return set(json.loads(r.stdout.strip().splitlines()[-1]))


def test_legacy_kernel_start_loads_no_switchdev_or_metrics_code():
    """A legacy-mode kernel PF without metrics_listen needs neither devlink/tc/dcb (pyroute2's generic
    netlink and socket layer) nor prometheus_client and its HTTP server."""
    mods = _modules_after("import vfd.daemon.main, vfd.backends.kernel.backend")
    for unwanted in ("vfd.backends.kernel.switchdev", "vfd.backends.kernel.devlink", "vfd.backends.kernel.dcb",
                     "vfd.backends.kernel.tcmirror", "pyroute2.netlink.nlsocket", "prometheus_client",
                     "vfd.daemon.metrics"):
        assert unwanted not in mods, f"{unwanted} is imported at daemon start-up"


def test_switchdev_code_is_loaded_when_first_used():
    mods = _modules_after(textwrap.dedent("""
        import sys, types
        from vfd.backends.kernel.backend import KernelBackend
        assert "vfd.backends.kernel.devlink" not in sys.modules
        backend = types.SimpleNamespace(_switchdev=None)       # what KernelBackend.__init__ leaves
        assert type(KernelBackend.switchdev.fget(backend)).__name__ == "Switchdev"
    """))
    assert "vfd.backends.kernel.devlink" in mods


def _fake_plugin(tmp_path: Path) -> tuple[dict, Path]:
    """An installed distribution registering a pydantic plugin whose import leaves a marker file."""
    marker = tmp_path / "plugin-was-imported"
    dist = tmp_path / "evilplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: evilplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pydantic]\nevil = evilplugin:plugin\n")
    (tmp_path / "evilplugin.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "class _P:\n    def new_schema_validator(self, *a, **k):\n        return None, None, None\n"
        "plugin = _P()\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    return env, marker


def test_daemon_does_not_load_pydantic_plugins(tmp_path):
    """The root daemon never imports third-party code through pydantic's plugin entry points (and so
    never scans every installed distribution for them at start-up)."""
    env, marker = _fake_plugin(tmp_path)
    _modules_after("import vfd.daemon.main\nfrom vfd.model.vfconfig import VFConfig\n"
                   "VFConfig.model_validate({'name': 'a', 'pciid': '0000:01:00.0', 'vfid': 1, 'vlans': [10]})", env)
    assert not marker.exists()


def test_the_plugin_fixture_is_loaded_outside_the_daemon(tmp_path):
    """Control for the test above: the same fake plugin is picked up when vfd.daemon is not imported."""
    env, marker = _fake_plugin(tmp_path)
    _modules_after("from vfd.model.vfconfig import VFConfig\n"
                   "VFConfig.model_validate({'name': 'a', 'pciid': '0000:01:00.0', 'vfid': 1, 'vlans': [10]})", env)
    assert marker.exists()

