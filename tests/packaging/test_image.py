"""Build the vfd container image (tools/image/build-image.sh: a debootstrapped Debian base, buildah, no
registry) and run its two containers as deploy/kubernetes/20-daemonset.yaml does, with temporary
directories standing for the node's host paths:

- the init container (its command, env and mounts read from the manifest) installs vfd-cni and the
  ConfigMap's vfd.cfg; the installed /opt/cni/bin/vfd-cni then runs on this host, outside any
  container (the node's /opt replaced by the temporary one in a private mount namespace), and must
  be the static front end: with a vfd daemon on its socket (VFD_CNI_SOCKET) the daemon answers
  CNI_COMMAND=VERSION with a spec-valid result; with none, the front end itself prints the spec's
  code-11 "try again later" error naming the socket;
- the daemon container's command with `--check` on the vfd.cfg the init container installed.

Root only; needs buildah and debootstrap (tools/packaging/setup.sh, which `make test` runs), a Debian
mirror and PyPI. Builds use buildah's chroot isolation (no OCI runtime). The containers run the
image by the ID this build printed (another build may move the tag meanwhile); the image stays,
tagged localhost/vfd:dev, with the base and the build's layers as the next run's cache (removing
it would also delete its untagged parent layers, the cache).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
SYS_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
KERNEL_PATHS = ("/sys", "/dev", "/proc")

pytestmark = [pytest.mark.packaging, pytest.mark.slow]


def sh(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("env", {**os.environ, "PATH": SYS_PATH})
    out = subprocess.run(list(cmd), capture_output=True, text=True, **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def manifest(kind: str) -> dict:
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == kind:
                return doc
    raise AssertionError(f"no {kind} in {DEPLOY}")


@pytest.fixture(scope="module")
def image():
    if os.geteuid() != 0:
        pytest.skip("needs root: debootstrap and buildah's store in /var/lib/containers")
    missing = [t for t in ("buildah", "debootstrap") if shutil.which(t, path=SYS_PATH) is None]
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: run tools/packaging/setup.sh (make system-deps)")
    probe = f"vfd-probe-{uuid.uuid4().hex[:8]}"          # the storage driver works: a container mounts
    made = sh("buildah", "from", "--name", probe, "scratch", check=False)
    mounted = sh("buildah", "mount", probe, check=False) if made.returncode == 0 else made
    sh("buildah", "rm", probe, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"buildah does not work on this machine: {mounted.stderr.strip()}")
    built = sh("bash", str(ROOT / "tools/image/build-image.sh"))
    image_id = built.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"[0-9a-f]{64}", image_id), built.stdout
    return image_id


class Node:
    """Temporary directories standing for a node's host paths, and the pod's volumes on them."""

    def __init__(self, root: Path):
        self.root = root
        self.host = root / "host"
        self.configmap = root / "configmap"
        self.configmap.mkdir()
        for name, text in manifest("ConfigMap")["data"].items():
            (self.configmap / name).write_text(text)

    def hostpath(self, path: str) -> Path:
        p = self.host / path.lstrip("/")
        p.mkdir(parents=True, exist_ok=True)
        return p

    def volume_args(self, pod: dict, container: dict) -> list[str]:
        """buildah --volume arguments for the container's volumeMounts (hostPath and configMap volumes)."""
        volumes = {v["name"]: v for v in pod["volumes"]}
        args = []
        for m in container.get("volumeMounts", []):
            v = volumes[m["name"]]
            if "hostPath" in v and v["hostPath"]["path"] in KERNEL_PATHS:
                continue                # the host's own: buildah gives the container this host's /sys and a /dev
            if "hostPath" in v:
                src = self.hostpath(v["hostPath"]["path"])
            elif "configMap" in v:
                assert v["configMap"]["name"] == manifest("ConfigMap")["metadata"]["name"]
                src = self.configmap
            else:
                raise AssertionError(f"volume {v['name']}: kind not handled by this test: {v}")
            args += ["--volume", f"{src}:{m['mountPath']}{':ro' if m.get('readOnly') else ''}"]
        return args


def run_container(image: str, node: Node, container: dict, argv: list[str] | None = None,
                  check: bool = True) -> subprocess.CompletedProcess:
    """Run one of the DaemonSet's containers in a fresh working container, removed afterwards."""
    pod = pod_spec()
    name = f"vfd-test-{uuid.uuid4().hex[:8]}"
    sh("buildah", "from", "--name", name, "--pull=never", image)
    try:
        env = [a for e in container.get("env", []) for a in ("--env", f"{e['name']}={e['value']}")]
        return sh("buildah", "run", "--isolation", "chroot", *env, *node.volume_args(pod, container), name,
                  "--", *(argv or container["command"]), check=check)
    finally:
        sh("buildah", "rm", name, check=False)


def pod_spec() -> dict:
    return manifest("DaemonSet")["spec"]["template"]["spec"]


def test_image_runs_the_daemonsets_command(image):
    out = sh("buildah", "inspect", "--type", "image", image)
    config = json.loads(out.stdout)["OCIv1"]["config"]
    assert config["Cmd"] == pod_spec()["containers"][0]["command"]


def test_every_command_the_daemonset_runs_is_in_the_image(image, tmp_path):
    spec = pod_spec()
    daemon = spec["containers"][0]
    wanted = [spec["initContainers"][0]["command"][0], daemon["command"][0],
              daemon["livenessProbe"]["exec"]["command"][0]]
    out = run_container(image, Node(tmp_path), daemon, argv=["sh", "-c", 'for c; do command -v "$c"; done', "-",
                                                             *wanted])
    assert len(out.stdout.split()) == len(wanted), (wanted, out.stdout)


def test_init_container_installs_a_vfd_cni_that_runs_on_the_host(image, tmp_path):
    node = Node(tmp_path)
    init = pod_spec()["initContainers"][0]
    run_container(image, node, init)

    cni_bin = node.hostpath("/opt/cni/bin")
    plugin = cni_bin / "vfd-cni"
    assert plugin.is_file() and os.access(plugin, os.X_OK)
    assert not [p.name for p in cni_bin.iterdir() if p.name.startswith(".")], "temporary files left"
    assert (node.hostpath("/etc/vfd") / "vfd.cfg").read_text() == (node.configmap / "vfd.cfg").read_text()

    from tests.cni.test_cni_socket import _program_header_types
    assert not {2, 3} & _program_header_types(str(plugin)), "vfd-cni must be static (no PT_DYNAMIC/PT_INTERP)"

    # On the host, as the runtime runs it: /opt is the node's (the temporary one), in a private
    # mount namespace so this machine's /opt is untouched.
    def run_plugin(sock: Path) -> tuple[int, dict]:
        env = {"PATH": SYS_PATH, "CNI_COMMAND": "VERSION", "VFD_CNI_SOCKET": str(sock)}
        out = sh("unshare", "--mount", "--propagation", "private", "sh", "-c",
                 'mount --bind "$0" /opt && exec /opt/cni/bin/vfd-cni', str(node.host / "opt"),
                 input='{"cniVersion": "1.0.0"}', env=env, check=False)
        try:
            return out.returncode, json.loads(out.stdout)
        except ValueError:
            raise AssertionError(f"vfd-cni VERSION: not JSON (exit {out.returncode}):\n{out.stdout}\n{out.stderr}")

    rc, answer = run_plugin(tmp_path / "no-daemon.sock")
    assert rc != 0 and answer["code"] == 11 and "no-daemon.sock" in answer["msg"], answer
    assert answer["cniVersion"] == "1.0.0", answer

    from tests.vfdlab import VfdProcess
    d = VfdProcess(tmp_path / "vfd").start()
    try:
        rc, answer = run_plugin(d.cni_socket)
    finally:
        d.stop()
    assert rc == 0, answer
    assert answer["cniVersion"] == "1.0.0" and "1.0.0" in answer["supportedVersions"], answer
    assert all(SEMVER.match(v) for v in answer["supportedVersions"]), answer


def test_daemon_container_checks_the_installed_config(image, tmp_path):
    node = Node(tmp_path)
    spec = pod_spec()
    run_container(image, node, spec["initContainers"][0])
    daemon = spec["containers"][0]
    out = run_container(image, node, daemon, argv=[*daemon["command"], "--check"])
    assert "main config ok" in out.stdout, out.stdout


def test_daemon_container_check_refuses_a_bad_config(image, tmp_path):
    """The check can fail: a misspelt backend in the ConfigMap is refused, naming the field and value."""
    node = Node(tmp_path)
    cfg = json.loads((node.configmap / "vfd.cfg").read_text())
    cfg["backend"] = "kernal"
    (node.configmap / "vfd.cfg").write_text(json.dumps(cfg))
    spec = pod_spec()
    run_container(image, node, spec["initContainers"][0])
    daemon = spec["containers"][0]
    out = run_container(image, node, daemon, argv=[*daemon["command"], "--check"], check=False)
    assert out.returncode == 1, out
    assert "field 'backend'" in out.stderr and "kernal" in out.stderr, out.stderr
