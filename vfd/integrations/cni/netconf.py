"""The plugin's inputs: the CNI_* environment and the netconf on stdin, checked once, here.

Field names and meanings are sriov-cni's (so a NetworkAttachmentDefinition carries over by
changing `type`), plus `vfd` (any VF-config field; wins over the sriov-cni-style ones),
`vfdConfig` (vfd's main config), and two vfd-cni extensions: `mtu` (the pod interface's MTU)
and `cacheDir` (the per-attachment state, default /var/lib/cni/vfd). Checked here: the shapes
(a whole number, one of these words) and what is the netconf's own (vlanQoS needs vlan). Rules
about the VF config itself (VLAN id and priority ranges, rates, what a driver can do) are vfd's:
the daemon's VF config model and admission decide, and their refusal is passed on; one of the
model's about a value a sriov-cni key set becomes an invalid-netconf error naming that key
(`NetConf.refusal`). The plugin cannot ask the model itself: it runs without site-packages
(`python -S`, no pydantic).
"""

from __future__ import annotations

import json
import os
import re

from vfd.integrations.cni.errors import INCOMPATIBLE_VERSION, INVALID_ENV, INVALID_NETCONF, CniError

try:    # CPython's own SHA-256 (the same digests): hashlib would load OpenSSL's libcrypto at every plugin start
    from _sha2 import sha256            # Python >= 3.12
except ImportError:
    try:
        from _sha256 import sha256      # Python <= 3.11
    except ImportError:
        from hashlib import sha256

SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
DEFAULT_CACHE_DIR = "/var/lib/cni/vfd"
DEFAULT_VFD_CONFIG = "/etc/vfd/vfd.cfg"
# Port names vfd accepts: [A-Za-z0-9_.-], at most 200 bytes.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_PCI = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")
# The VF's identity comes from deviceID; a `vfd` object may not move it elsewhere.
_VFD_RESERVED = ("pciid", "vfid")
_ONOFF = {"on": True, "off": False}
_LINK = {"auto": "auto", "enable": "on", "disable": "off"}
# VF config field (vf_config below) -> the netconf key and NetConf attribute its value comes from.
FIELD_KEYS = {"vlans": ("vlan", "vlan"), "queues": ("vlanQoS", "vlan_qos"),
              "vlan_proto": ("vlanProto", "vlan_proto"), "mac": ("mac", "mac"),
              "mac_anti_spoof": ("spoofchk", "spoofchk"), "allow_un_ucast": ("trust", "trust"),
              "link_status": ("link_state", "link_state"), "rate": ("max_tx_rate", "max_tx_rate"),
              "min_rate": ("min_tx_rate", "min_tx_rate")}


class _Record:
    """Keyword-built records with class-level defaults. Not dataclasses: `dataclasses` imports
    inspect, ast, dis and tokenize, a dozen modules each plugin process would load for two classes."""

    def __init__(self, **values):
        for k, v in values.items():
            if not hasattr(type(self), k):
                raise TypeError(f"{type(self).__name__} has no field {k!r}")
            setattr(self, k, v)

    def __eq__(self, other):
        return type(other) is type(self) and vars(other) == vars(self)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class Env(_Record):
    command: str = ""
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: str = ""
    path: list[str] = ()


class NetConf(_Record):
    cni_version: str = ""
    name: str = ""
    raw: dict = None
    device_id: str | None = None
    vlan: int = 0
    vlan_qos: int = 0
    vlan_proto: str | None = None
    mac: str | None = None
    spoofchk: bool | None = None
    trust: bool | None = None
    link_state: str | None = None
    min_tx_rate: int | None = None
    max_tx_rate: int | None = None
    mtu: int | None = None
    ipam: dict | None = None
    vfd: dict = None
    vfd_config: str = DEFAULT_VFD_CONFIG
    cache_dir: str = DEFAULT_CACHE_DIR
    prev_result: dict | None = None

    def __init__(self, **values):
        self.vfd = {}
        super().__init__(**values)

    def vf_config(self, name: str, pf_id: str, vfid: int, speed: int) -> dict:
        """The VF config vfd is asked to admit: sriov-cni-style fields mapped to vfd's, then `vfd` on top.

        Rates are Mb/s in sriov-cni and fractions of the PF's link speed in vfd, hence `speed`.
        """
        cfg: dict = {"name": name, "pciid": pf_id, "vfid": vfid}
        if self.vlan:
            cfg["vlans"] = [self.vlan]
            cfg["strip_stag"] = True          # a port VLAN: the NIC inserts and strips it
            if self.vlan_qos:
                cfg["queues"] = [{"priority": self.vlan_qos, "share": 100}]
        if self.vlan_proto:
            cfg["vlan_proto"] = self.vlan_proto
        if self.mac:
            cfg["mac"] = self.mac
        if self.spoofchk is not None:
            cfg["mac_anti_spoof"] = self.spoofchk
        if self.trust is not None:
            cfg["allow_un_ucast"] = self.trust
        if self.link_state:
            cfg["link_status"] = _LINK[self.link_state]
        for key, mbps in (("rate", self.max_tx_rate), ("min_rate", self.min_tx_rate)):
            if mbps:
                if speed <= 0:
                    raise CniError(INVALID_NETCONF, f"{'max' if key == 'rate' else 'min'}_tx_rate {mbps}: the PF's "
                                   "link speed is unknown (no /sys/class/net/<pf>/speed and no 'speed' for the PF "
                                   "in vfd's main config), so Mb/s cannot become vfd's fraction of link speed")
                cfg[key] = round(mbps / speed, 6)
        cfg.update(self.vfd)
        return cfg

    def refusal(self, data: object) -> CniError | None:
        """vfd's refusal of the VF config (its reply's `data`) as an invalid-netconf error naming the
        sriov-cni key the user wrote, its value and the model's rule; None for any other refusal (an
        admission or driver rule, a value from the `vfd` object): vfd's own words pass on as they are."""
        if not isinstance(data, dict) or data.get("rule") != "vf_config":
            return None
        field = re.split(r"[.\[]", str(data.get("field", "")), maxsplit=1)[0]
        if field not in FIELD_KEYS or field in self.vfd:
            return None
        key, attr = FIELD_KEYS[field]
        return CniError(INVALID_NETCONF, f"{key} {getattr(self, attr)!r}: vfd's VF config {data.get('field')} "
                                         f"{json.dumps(data.get('value'))} {data.get('why')} (rule vf_config)")


def port_id(container_id: str, ifname: str) -> str:
    """vfd's port name for one attachment: readable, safe characters only, unique per (container, ifname)."""
    digest = sha256(f"{container_id}\0{ifname}".encode()).hexdigest()[:10]
    cid = _UNSAFE.sub("_", container_id)[:64]
    ifn = _UNSAFE.sub("_", ifname)[:32]
    return f"cni-{cid}-{ifn}-{digest}"


def read_env(environ: dict) -> Env:
    cmd = environ.get("CNI_COMMAND", "")
    if not cmd:
        raise CniError(INVALID_ENV, "CNI_COMMAND is not set (want ADD, DEL, CHECK, VERSION, STATUS or GC)")
    env = Env(command=cmd, container_id=environ.get("CNI_CONTAINERID", ""), netns=environ.get("CNI_NETNS", ""),
              ifname=environ.get("CNI_IFNAME", ""), args=environ.get("CNI_ARGS", ""),
              path=[p for p in environ.get("CNI_PATH", "").split(os.pathsep) if p])
    need = {"ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
            "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
            "DEL": ("CNI_CONTAINERID", "CNI_IFNAME")}.get(cmd, ())
    missing = [k for k in need if not environ.get(k)]
    if missing:
        raise CniError(INVALID_ENV, f"{cmd} needs {', '.join(missing)} in the environment")
    if env.ifname and (len(env.ifname.encode()) > 15 or "/" in env.ifname or env.ifname in (".", "..")
                       or any(c.isspace() for c in env.ifname)):
        raise CniError(INVALID_ENV, f"CNI_IFNAME {env.ifname!r} is not a valid interface name "
                                    "(at most 15 bytes, no '/', no whitespace)")
    return env


def _int(raw: dict, key: str, lo: int | None = None, hi: int | None = None) -> int | None:
    """A whole number; `lo`..`hi` only for a range that is the netconf's own (the pod's MTU): the VF
    config's ranges are the model's (module docstring)."""
    v = raw.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or (lo is not None and not lo <= v <= hi):
        rng = f" from {lo} to {hi}" if lo is not None else ""
        raise CniError(INVALID_NETCONF, f"{key} {v!r}: must be a whole number{rng}")
    return v


def _choice(raw: dict, key: str, choices) -> str | None:
    v = raw.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or v.lower() not in choices:
        raise CniError(INVALID_NETCONF, f"{key} {v!r}: must be one of {', '.join(choices)}")
    return v.lower()


def parse_netconf(data: bytes | str, environ: dict | None = None) -> NetConf:
    environ = os.environ if environ is None else environ
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CniError(INVALID_NETCONF, f"the network configuration on stdin is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise CniError(INVALID_NETCONF, "the network configuration must be a JSON object")
    version = raw.get("cniVersion")
    if not isinstance(version, str) or not version:
        raise CniError(INVALID_NETCONF, "cniVersion is missing (this plugin speaks "
                                        f"{', '.join(SUPPORTED_VERSIONS)})")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, f"cniVersion {version!r} is not supported "
                                             f"(supported: {', '.join(SUPPORTED_VERSIONS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise CniError(INVALID_NETCONF, "name (the network's name) is missing")
    nc = NetConf(cni_version=version, name=name, raw=raw)
    dev = raw.get("deviceID")
    if dev is not None:
        if not isinstance(dev, str) or not _PCI.match(dev):
            raise CniError(INVALID_NETCONF, f"deviceID {dev!r}: must be a VF's PCI address such as 0000:01:10.0")
        nc.device_id = dev.lower()
    nc.vlan = _int(raw, "vlan") or 0                  # 0: no VLAN (sriov-cni's meaning)
    nc.vlan_qos = _int(raw, "vlanQoS") or 0
    nc.vlan_proto = _choice(raw, "vlanProto", ("802.1q", "802.1ad"))
    if (nc.vlan_qos or nc.vlan_proto) and not nc.vlan:
        what = "vlanQoS" if nc.vlan_qos else "vlanProto"
        raise CniError(INVALID_NETCONF, f"{what} needs vlan: it applies to the VF's port VLAN")
    rc = raw.get("runtimeConfig") or {}
    if not isinstance(rc, dict):
        raise CniError(INVALID_NETCONF, "runtimeConfig must be a JSON object")
    mac = rc.get("mac") or raw.get("mac")          # runtimeConfig.mac wins, as in sriov-cni
    if mac is not None:
        if not isinstance(mac, str) or not _MAC.match(mac):
            raise CniError(INVALID_NETCONF, f"mac {mac!r}: must be a MAC address such as 02:00:00:00:00:01")
        nc.mac = mac.lower()
    for key in ("spoofchk", "trust"):
        v = _choice(raw, key, ("on", "off"))
        setattr(nc, key, None if v is None else _ONOFF[v])
    nc.link_state = _choice(raw, "link_state", tuple(_LINK))
    nc.min_tx_rate = _int(raw, "min_tx_rate")
    nc.max_tx_rate = _int(raw, "max_tx_rate")
    nc.mtu = _int(raw, "mtu", 68, 65535)
    ipam = raw.get("ipam")
    if ipam is not None and ipam != {}:
        if not isinstance(ipam, dict) or not isinstance(ipam.get("type"), str) or not ipam["type"] \
                or "/" in ipam["type"]:
            raise CniError(INVALID_NETCONF, "ipam must be an object with a plugin name in 'type' "
                                            "(e.g. {\"type\": \"host-local\", ...})")
        nc.ipam = ipam
    vfd = raw.get("vfd", {})
    if not isinstance(vfd, dict):
        raise CniError(INVALID_NETCONF, "vfd must be a JSON object of VF-config fields (docs/configuration.md)")
    bad = [k for k in _VFD_RESERVED if k in vfd]
    if bad:
        raise CniError(INVALID_NETCONF, f"vfd.{bad[0]}: not allowed here; the PF and VF come from deviceID")
    nc.vfd = vfd
    conf = raw.get("vfdConfig") or environ.get("VFD_CONF") or DEFAULT_VFD_CONFIG
    if not isinstance(conf, str):
        raise CniError(INVALID_NETCONF, "vfdConfig must be the path of vfd's main config")
    nc.vfd_config = conf
    cache = raw.get("cacheDir", DEFAULT_CACHE_DIR)
    if not isinstance(cache, str) or not os.path.isabs(cache):
        raise CniError(INVALID_NETCONF, f"cacheDir {cache!r}: must be an absolute path")
    nc.cache_dir = cache
    prev = raw.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise CniError(INVALID_NETCONF, "prevResult must be a JSON object")
    nc.prev_result = prev
    return nc
