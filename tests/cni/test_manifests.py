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
