"""The packaging sources agree with the code: man pages, bash completion, versions, bundled wheels.

Fast and unprivileged; tests/packaging/test_deb.py builds and installs the package itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from vfd.iplex import build_parser

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "packaging"
COMPLETION = PKG / "bash-completion" / "iplex"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def iplex_commands() -> dict[str, object]:
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return dict(sub.choices)


def options_of(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", help_text))


def man_options(page: str) -> set[str]:
    text = (PKG / "man" / page).read_text().replace("\\-", "-")
    return options_of(text)


# ---- man pages ---------------------------------------------------------------------------------
def test_vfd_man_page_documents_every_option():
    help_text = subprocess.run([sys.executable, "-m", "vfd.daemon.main", "--help"], capture_output=True,
                               text=True, check=True).stdout
    missing = options_of(help_text) - man_options("vfd.8.md")
    assert not missing, f"vfd --help options missing from packaging/man/vfd.8.md: {sorted(missing)}"


def test_iplex_man_page_documents_every_command_and_option():
    text = (PKG / "man" / "iplex.8.md").read_text()
    documented = set(re.findall(r"^\*\*(\w+)\*\*", text, re.M))
    missing = set(iplex_commands()) - documented
    assert not missing, f"iplex commands missing from packaging/man/iplex.8.md: {sorted(missing)}"
    missing = options_of(build_parser().format_help()) - man_options("iplex.8.md")
    assert not missing, f"iplex options missing from packaging/man/iplex.8.md: {sorted(missing)}"


# ---- bash completion ---------------------------------------------------------------------------
def complete(line: str, env: dict | None = None) -> list[str]:
    """Run the completion function as bash would for `line` (cursor at its end)."""
    words = line.split(" ")
    script = (f"source {COMPLETION}\n"
              f"COMP_WORDS=({' '.join(json.dumps(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
              "_iplex; printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    out = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True,
                         check=True, env=env or {"PATH": "/usr/bin:/bin"}).stdout
    return sorted(w for w in out.split("\n") if w)


def test_completion_offers_exactly_iplex_commands():
    assert complete("iplex ") == sorted(iplex_commands())
    assert complete("iplex --json c") == ["clear_stats", "cpu_alarm"]


def test_completion_offers_every_top_level_option():
    offered = set(complete("iplex -"))
    assert options_of(build_parser().format_help()) - {"-h"} <= offered


def test_completion_port_ids_come_from_the_configs_directories(tmp_path):
    drop, live = tmp_path / "cfg", tmp_path / "cfg_live"
    drop.mkdir()
    live.mkdir()
    for name in ("web-1", "web-2", "db-1"):
        (drop / f"{name}.json").write_text("{}")
    (drop / "web-3.json.error").write_text("{}")
    (live / "web-9.json").write_text("{}")
    conf = tmp_path / "vfd.cfg"
    conf.write_text(json.dumps({"config_dir": str(drop), "pciids": []}, indent=1))
    assert complete(f"iplex --conf {conf} add w") == ["web-1", "web-2"]
    assert complete(f"iplex update --conf={conf} ") == ["db-1", "web-1", "web-2"]
    assert complete(f"iplex --conf {conf} delete ") == ["web-9"]
    env = {"PATH": "/usr/bin:/bin", "VFD_CONF": str(conf)}
    assert complete("iplex status w", env) == ["web-9"]


def test_completion_of_fixed_arguments():
    assert complete("iplex show p") == ["pci", "pfs"]
    assert complete("iplex mirror 0 3 o") == ["off", "on", "out"]
    assert complete("iplex --loglevel ") == ["0", "1", "2", "3", "4", "5"]
    assert complete("iplex ping ") == []


# ---- versions and bundled wheels -----------------------------------------------------------------
def test_debian_version_is_the_python_version():
    first = (ROOT / "debian" / "changelog").read_text().split("\n", 1)[0]
    version = re.match(r"vfd \(([^)]+)\)", first).group(1)
    assert version.split("-")[0] == pyproject()["project"]["version"]


def test_bundled_wheels_meet_every_runtime_dependency():
    pins = {}
    for line in (PKG / "vendor-requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{line}: bundled wheels are pinned with =="
            pins[req.name.lower().replace("_", "-")] = spec.version
    for dep in pyproject()["project"]["dependencies"]:
        req = Requirement(dep)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"runtime dependency {dep!r} is not bundled in packaging/vendor-requirements.txt"
        assert req.specifier.contains(pins[name]), f"bundled {name}=={pins[name]} does not meet {dep!r}"


def test_packaged_main_config_is_valid():
    out = subprocess.run([sys.executable, "-m", "vfd.daemon.main", "--check", "-p", str(PKG / "vfd.cfg")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    conf = json.loads((PKG / "vfd.cfg").read_text())
    tmpfiles = (PKG / "vfd.tmpfiles").read_text()
    # The FIFO, the drop directory and the live directory are the ones tmpfiles.d creates.
    for path in (str(Path(conf["fifo"]).parent), conf["config_dir"], conf["config_dir"] + "_live"):
        assert re.search(rf"^d {re.escape(path)} ", tmpfiles, re.M), path
    assert conf["fifo_group"] == "vfd"
