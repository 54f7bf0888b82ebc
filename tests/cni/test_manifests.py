"""deploy/kubernetes: every manifest validates against the Kubernetes API schemas (kubernetes-validate),
the NetworkAttachmentDefinition against its CRD's schema, and the netconf it carries is one vfd-cni accepts."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from vfd.integrations.cni.netconf import parse_netconf

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.30.0"
# The CRD's schema as network-attachment-definition-client ships it (k8s.cni.cncf.io/v1).
NAD_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "k8s.cni.cncf.io/v1"},
        "kind": {"const": "NetworkAttachmentDefinition"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {"type": "object", "properties": {"config": {"type": "string"}}, "additionalProperties": False},
    },
}


def docs():
    out = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path.name, doc))
    return out


def test_every_manifest_is_known():
    kinds = sorted(d["kind"] for _, d in docs())
    assert kinds == ["ConfigMap", "DaemonSet", "Namespace", "NetworkAttachmentDefinition", "ServiceAccount"]


@pytest.mark.parametrize("name,doc", [d for d in docs() if d[1]["kind"] != "NetworkAttachmentDefinition"],
                         ids=lambda x: x if isinstance(x, str) else x.get("kind"))
def test_manifest_validates_against_kubernetes_schema(name, doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_validation_catches_a_broken_daemonset():
    """The check can fail: a misspelt field is refused in strict mode."""
    ds = next(d for _, d in docs() if d["kind"] == "DaemonSet")
    bad = json.loads(json.dumps(ds))
    bad["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_daemonset_has_what_vfd_needs():
    ds = next(d for _, d in docs() if d["kind"] == "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    assert spec["containers"][0]["securityContext"]["privileged"] is True
    paths = {v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    assert {"/etc/vfd", "/var/lib/vfd", "/opt/cni/bin"} <= paths
    assert spec["initContainers"][0]["command"] == ["/opt/vfd-image/install-cni.sh"]
    assert (DEPLOY / "install-cni.sh").exists()
    assert "install-cni.sh /opt/vfd-image/install-cni.sh" in (ROOT / "Containerfile").read_text()


def test_daemonset_can_execute_cni_commands_as_the_node_would():
    """vfd executes the commands vfd-cni hands it (docs/kubernetes.md): the paths a runtime passes must
    mean the same inside the container as on the node."""
    from vfd.model.mainconfig import DEFAULT_CNI_SOCKET
    spec = next(d for _, d in docs() if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    assert spec["hostPID"] is True                          # CNI_NETNS=/proc/<pid>/ns/net
    host = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
    for path in ("/var/run/netns", "/opt/cni/bin", "/etc/cni/net.d", "/var/lib/cni", "/etc/vfd", "/var/lib/vfd",
                 str(Path(DEFAULT_CNI_SOCKET).parent)):
        assert path in mounts and host[mounts[path]["name"]] == path, path
    assert mounts["/var/run/netns"]["mountPropagation"] == "HostToContainer"   # netns made after vfd started
    assert "vfd-runtime" not in host and "/opt/vfd" not in host.values()       # no Python runtime on the node
    script = (DEPLOY / "install-cni.sh").read_text()
    assert "/opt/vfd-image/vfd-cni" in script and "python" not in script.lower()
    assert "COPY --from=cni-frontend /vfd-cni /opt/vfd-image/vfd-cni" in (ROOT / "Containerfile").read_text()


def test_configmap_holds_a_valid_vfd_config():
    from vfd.model.mainconfig import parse_main_config
    cm = next(d for _, d in docs() if d["kind"] == "ConfigMap")
    parse_main_config(cm["data"]["vfd.cfg"], "configmap vfd.cfg")


def test_network_attachment_definition_and_its_netconf():
    nad = next(d for _, d in docs() if d["kind"] == "NetworkAttachmentDefinition")
    jsonschema.validate(nad, NAD_SCHEMA)
    assert nad["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"]
    conf = json.loads(nad["spec"]["config"])
    plugins = conf["plugins"]
    assert [p["type"] for p in plugins] == ["vfd-cni", "tuning"]
    # the runtime hands each plugin its entry with the list's name and cniVersion (and Multus adds deviceID)
    nc = parse_netconf(json.dumps({**plugins[0], "name": conf["name"], "cniVersion": conf["cniVersion"],
                                   "deviceID": "0000:3b:02.0"}), environ={})
    assert nc.vlan == 100 and nc.ipam["type"] == "host-local"


def test_install_cni_puts_the_static_binary_and_the_config_on_the_node(tmp_path):
    """The init container's script, run against stand-ins for the node's directories."""
    import os
    import subprocess
    import sys
    plugin = Path(sys.executable).parent / "vfd-cni"
    env = {"PATH": "/usr/bin:/bin", "SRC": str(plugin), "CNI_BIN_DIR": str(tmp_path / "opt-cni-bin"),
           "HOST_ETC": str(tmp_path / "etc-vfd")}
    r = subprocess.run(["sh", str(DEPLOY / "install-cni.sh")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    installed = tmp_path / "opt-cni-bin" / "vfd-cni"
    assert installed.read_bytes() == plugin.read_bytes() and os.access(installed, os.X_OK)
    assert sorted(os.listdir(tmp_path / "opt-cni-bin")) == ["vfd-cni"]
