"""Build the Debian package, install it on this machine with dpkg, check what it installed, purge it.

Root only (dpkg -i), and needs tools/packaging/setup.sh's packages (`make test` installs them).
The package goes to /usr/lib/vfd, /usr/bin, /etc/vfd and /lib/systemd: the test venv is not touched.
It refuses to run on a machine where vfd is already installed or /etc/vfd exists, and purges at the end.
"""

from __future__ import annotations

import grp
import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests import vfdlab
from tests.vfdlab import VfdProcess, sim_pf, vf_config

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("dpkg-buildpackage", "dh_python3", "pandoc", "lintian", "systemd-analyze", "systemd-tmpfiles")
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}

pytestmark = [pytest.mark.packaging, pytest.mark.slow]


def sh(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(list(cmd), capture_output=True, text=True, env=kw.pop("env", CLEAN_ENV), **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def installed() -> bool:
    return sh("dpkg-query", "-W", "-f=${db:Status-Status}", "vfd", check=False).stdout == "installed"


def purge() -> None:
    sh("dpkg", "--purge", "vfd", check=False)


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root: the package is installed with dpkg -i")
    missing = [t for t in TOOLS if shutil.which(t, path=CLEAN_ENV["PATH"]) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: run tools/packaging/setup.sh (make system-deps)")
    if installed() or os.path.exists("/etc/vfd"):
        pytest.skip("vfd is already installed or /etc/vfd exists: not overwriting this machine's vfd")
    out = tmp_path_factory.mktemp("deb")
    built = sh("bash", str(ROOT / "tools/packaging/build-deb.sh"), str(out), env={**os.environ, **CLEAN_ENV})
    return Path(built.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def install(deb):
    had_group = _group_exists("vfd")
    try:
        sh("dpkg", "-i", str(deb))
        yield deb
    finally:                                      # also when dpkg -i failed half-way
        purge()
        if not had_group and _group_exists("vfd"):
            sh("delgroup", "--system", "--quiet", "vfd", check=False)    # the package keeps it, by policy


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def scripts() -> list[str]:
    return sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])


# ---- the package file ----------------------------------------------------------------------------
def test_package_holds_scripts_unit_man_pages_completion_and_conffile(deb):
    files = set(re.findall(r" \./(\S+)(?: -> \S+)?$", sh("dpkg-deb", "-c", str(deb)).stdout, re.M))   # links too
    for name in scripts():                       # every [project.scripts] entry, vfd-cni-inproc included
        assert f"usr/bin/{name}" in files, name
    for path in ("usr/lib/cni/vfd-cni", "lib/systemd/system/vfd.service", "usr/lib/tmpfiles.d/vfd.conf",
                 "usr/share/man/man8/vfd.8.gz", "usr/share/man/man8/iplex.8.gz", "usr/share/man/man8/vfd-cni.8.gz",
                 "usr/share/man/man8/vfd-cni-inproc.8.gz",
                 "usr/share/bash-completion/completions/iplex", "etc/vfd/vfd.cfg",
                 "usr/lib/vfd/vfd/daemon/main.py", "usr/lib/vfd/pydantic/__init__.py",
                 "usr/lib/vfd/pyroute2/__init__.py"):
        assert path in files, path
    assert not [f for f in files if f.endswith(".pyc")], "byte code is compiled at install time"
    control = sh("dpkg-deb", "-I", str(deb)).stdout
    assert sh("dpkg-deb", "--info", str(deb), "conffiles").stdout.split() == ["/etc/vfd/vfd.cfg"]
    depends = re.search(r"^ Depends: (.*)$", control, re.M).group(1)
    assert "python3-pydantic" not in depends and "python3-pyroute2" not in depends, depends
    assert re.search(r"python3 \(<< 3\.\d+\)", depends), "the bundled pydantic-core is built for one Python"


def test_lintian_reports_no_errors_and_only_documented_warnings(deb):
    out = sh("lintian", "--tag-display-limit", "0", str(deb), check=False)
    lines = out.stdout.splitlines()
    assert not [l for l in lines if l.startswith("E:")], out.stdout
    documented = (ROOT / "docs" / "packaging.md").read_text()
    tags = {l.split()[2] for l in lines if l.startswith("W:")}
    assert not [t for t in tags if f"`{t}`" not in documented], \
        f"lintian warnings not listed in docs/packaging.md: {sorted(t for t in tags if f'`{t}`' not in documented)}"


# ---- installed on this machine -------------------------------------------------------------------
def test_installed_tools_run_from_usr_bin(install):
    check = sh("/usr/bin/vfd", "--check", "-p", "/etc/vfd/vfd.cfg")
    assert "main config ok" in check.stdout
    assert "Control vfd" in sh("/usr/bin/iplex", "--help").stdout
    for name in scripts():
        assert os.access(f"/usr/bin/{name}", os.X_OK), name
    # vfd's own pydantic 2, not whatever the system Python has.
    code = "import pydantic, vfd; print(pydantic.VERSION, vfd.__file__)"
    out = sh("/usr/bin/python3", "-I", "-c", f"import sys; sys.path.insert(0, '/usr/lib/vfd'); {code}").stdout
    assert out.startswith("2.") and "/usr/lib/vfd/vfd/" in out, out


def test_installed_directories_have_the_documented_modes(install):
    gid = grp.getgrnam("vfd").gr_gid
    for path, mode, group in (("/run/vfd", 0o1730, gid), ("/var/lib/vfd/config", 0o1770, gid),
                              ("/var/lib/vfd/config_live", 0o750, gid), ("/var/lib/vfd", 0o755, 0)):
        st = os.stat(path)
        assert (oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid) == (oct(mode), 0, group), path


def test_systemd_accepts_the_installed_unit(install):
    out = sh("systemd-analyze", "verify", "/lib/systemd/system/vfd.service", check=False)
    own = [l for l in (out.stdout + out.stderr).splitlines() if "vfd.service" in l]
    assert out.returncode == 0 and not own, out.stdout + out.stderr


def test_installed_daemon_serves_installed_iplex(install, tmp_path, monkeypatch):
    monkeypatch.setattr(vfdlab, "BIN", Path("/usr/bin"))     # /usr/bin/vfd and /usr/bin/iplex
    d = VfdProcess(tmp_path, [sim_pf("0000:07:00.0", 4)]).start()
    try:
        out = d.add("web-1", vf_config("0000:07:00.0", 2, vlans=(10, 11), name="web-1"))
        assert out.returncode == 0, out.stdout + out.stderr
        assert d.live() == ["web-1.json"]
        assert sorted(d.vf_state(2)["vlans"]) == [10, 11]
    finally:
        assert d.stop() == 0


def test_installed_cni_front_end_is_static_and_reaches_the_installed_daemon(install, tmp_path, monkeypatch):
    """/usr/lib/cni/vfd-cni: static, a CNI error with code 11 when no daemon listens, and the installed
    daemon's answer through its CNI socket when one does."""
    import json
    plugin = "/usr/lib/cni/vfd-cni"
    assert "statically linked" in sh("file", "-L", plugin).stdout
    env = {**CLEAN_ENV, "CNI_COMMAND": "VERSION", "VFD_CNI_SOCKET": str(tmp_path / "none.sock")}
    out = subprocess.run([plugin], input='{"cniVersion": "1.0.0"}', capture_output=True, text=True, env=env)
    assert out.returncode == 1 and json.loads(out.stdout)["code"] == 11, out.stdout
    monkeypatch.setattr(vfdlab, "BIN", Path("/usr/bin"))
    d = VfdProcess(tmp_path / "vfd", [sim_pf("0000:07:00.0", 4)]).start()
    try:
        env["VFD_CNI_SOCKET"] = str(d.cni_socket)
        out = subprocess.run([plugin], input='{"cniVersion": "1.0.0"}', capture_output=True, text=True, env=env)
        assert out.returncode == 0 and "1.1.0" in json.loads(out.stdout)["supportedVersions"], out
    finally:
        assert d.stop() == 0


def test_purge_removes_everything_the_package_made(install):
    purge()
    for path in ("/usr/bin/vfd", "/usr/bin/iplex", "/usr/lib/cni/vfd-cni", "/usr/lib/vfd", "/etc/vfd", "/lib/systemd/system/vfd.service",
                 "/var/lib/vfd", "/run/vfd", "/usr/lib/tmpfiles.d/vfd.conf"):
        assert not os.path.lexists(path), path
