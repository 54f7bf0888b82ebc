"""os-vif plugin `vfd`: nova plugs a direct (SR-IOV) port and vfd programs the VF's policy.

Registered in pyproject.toml under the `os_vif` entry-point namespace, so `os_vif.initialize()`
loads it as the plugin named "vfd" and registers its options in the oslo.config group `os_vif_vfd`:

    [os_vif_vfd]
    vfd_config = /etc/vfd/vfd.cfg     # vfd's main config: where the request FIFO and config_dir are
    request_timeout = 30              # seconds to wait for each of vfd's replies

It handles `VIFHostDevice` objects (`vif.plugin == "vfd"`):

* plug: the VF PCI address (`vif.dev_address`) is mapped to (PF, vfid) by asking the daemon
  (`show pci`'s data); the port's MAC, the network's VLAN and the neutron binding:profile ATT_* keys
  (carried by a `VIFPortProfileVfd`, defined here) become a VF config
  (`vfd.integrations.neutron_profile.vf_config`), written atomically as
  `<config_dir>/<port id>.json`; then the daemon is asked to `add` it, or to `update` it when
  the port is already live (a second plug of the same port).
* unplug: the daemon is asked to `delete` the port's live config; a port vfd does not know is
  already unplugged, and that succeeds quietly (nova retries unplugs).

Errors are raised as `VfdPluginError` carrying vfd's message; `os_vif.plug()` / `os_vif.unplug()`
wrap them in `os_vif.exception.PlugException` / `UnplugException`. The daemon is reached through
the same FIFO protocol as iplex (`vfd.iplex.request`), in process: no process is spawned per call.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass

from oslo_config import cfg
from oslo_versionedobjects import base as ovo_base
from oslo_versionedobjects import fields as ovo_fields

from os_vif import objects as osv_objects
from os_vif import plugin as osv_plugin
from os_vif.objects import vif as osv_vif

from vfd import iplex
from vfd.integrations.neutron_profile import ProfileError, vf_config
from vfd.store import atomic_write

LOG = logging.getLogger(__name__)

PLUGIN_NAME = "vfd"
DEFAULT_VFD_CONFIG = "/etc/vfd/vfd.cfg"

# One lock per process makes "look up the VF, then add" atomic against our own concurrent plugs
# (nova plugs ports from several green threads); reply FIFOs are already unique per thread.
_LOCK = threading.Lock()


class VfdPluginError(Exception):
    """A plug or unplug that vfd (or the plugin, on vfd's rules) refused; the message says why."""


# ---- the port profile: neutron's binding:profile, carried to the plugin -------------------------------
class _JsonObject(ovo_fields.FieldType):
    """A JSON object (dict) kept as is: binding:profile values are lists, objects, numbers and booleans."""

    def coerce(self, obj, attr, value):
        if isinstance(value, (str, bytes)):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"{attr} is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ValueError(f"{attr} must be a JSON object (a dict), not {type(value).__name__}")
        try:
            return json.loads(json.dumps(value))     # a private, JSON-clean copy
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{attr} is not JSON-serialisable: {exc}") from None

    def from_primitive(self, obj, attr, value):
        return self.coerce(obj, attr, value)

    def to_primitive(self, obj, attr, value):
        return json.loads(json.dumps(value))

    def stringify(self, value):
        return json.dumps(value, sort_keys=True)

    def get_schema(self):
        return {"type": ["object"]}


class JsonObjectField(ovo_fields.AutoTypedField):
    AUTO_TYPE = _JsonObject()


@ovo_base.VersionedObjectRegistry.register
class VIFPortProfileVfd(osv_vif.VIFPortProfileBase):
    """Port profile of a vfd-managed VF: the neutron port's `binding:profile` (its ATT_* keys).

    Nova (or whatever builds the VIFHostDevice) sets `binding_profile` to the port's
    binding:profile dict; keys other than the ATT_* ones and RATE_LIMIT are ignored.
    """

    # Version 1.0: Initial release (VIFPortProfileBase 1.1, with datapath_offload)
    VERSION = "1.0"

    fields = {
        "binding_profile": JsonObjectField(default={}),
    }

    obj_relationships = {
        "datapath_offload": [("1.0", "1.0")],
    }


def binding_profile_of(vif) -> dict | None:
    """The binding:profile a VIF carries (None when its port profile is not vfd's or not set)."""
    if not vif.obj_attr_is_set("port_profile"):
        return None
    pp = vif.port_profile
    if isinstance(pp, VIFPortProfileVfd) and pp.obj_attr_is_set("binding_profile"):
        return pp.binding_profile
    return None


def _attr(obj, name: str):
    return getattr(obj, name) if obj is not None and obj.obj_attr_is_set(name) else None


# ---- the daemon, seen through its FIFO ---------------------------------------------------------------
def request(fifo: str, action: str, timeout: float, **params) -> dict:
    """One request/reply with the daemon, in this process (no iplex process per call).

    `vfd.iplex.request` waits with select.select, which eventlet makes green, so this also works
    inside a monkey-patched nova-compute. The thread id in the reply FIFO's name keeps concurrent
    callers of one process apart.
    """
    return iplex.request(fifo, action, timeout, reply_tag=str(threading.get_ident()), **params)


@dataclass(frozen=True)
class VfSlot:
    """One VF of a managed PF (`show pci` data), and the port live on it (None when free)."""

    pf_index: int
    pf_id: str
    vfid: int
    pci: str | None
    port_id: str | None


def slots_from_data(data: dict | None) -> list[VfSlot]:
    """The VFs of a `show pci` reply, from its `data` (never from the text, which is for people)."""
    rows = (data or {}).get("vfs")
    if not isinstance(rows, list):
        raise VfdPluginError("vfd: the show pci reply carries no VF table (is the daemon older than this plugin?)")
    return [VfSlot(int(r["pf_index"]), str(r["pf"]), int(r["vf"]), r["pci"].lower() if r.get("pci") else None,
                   r.get("port")) for r in rows]


class VfdClient:
    """Requests to one vfd daemon, found through its main config, as `iplex --conf <path>` would."""

    def __init__(self, vfd_config: str | None, timeout: float = 30.0):
        self.vfd_config = vfd_config
        self.timeout = timeout
        try:
            conf = iplex.find_config(vfd_config)
        except iplex.ClientError as exc:
            raise VfdPluginError(f"vfd: {exc}") from None
        self.fifo = iplex.fifo_path(conf)
        self.config_dir = iplex.config_dir(conf)
        self.live_dir = self.config_dir.rstrip("/") + "_live"

    def call(self, action: str, **params) -> tuple[bool, list[str], dict]:
        """One request: (ok, the message lines for people, the reply's data for this program)."""
        try:
            reply = request(self.fifo, action, self.timeout, **params)
        except iplex.ClientError as exc:
            raise VfdPluginError(f"vfd: {exc}") from None
        except ValueError as exc:        # a reply that is not vfd's JSON
            raise VfdPluginError(f"vfd: unreadable reply to {action}: {exc}") from None
        data = reply.get("data")
        return reply.get("state") == "OK", [str(x) for x in reply.get("msg", [])], data if isinstance(data, dict) else {}

    def must(self, action: str, **params) -> dict:
        ok, lines, data = self.call(action, **params)
        if not ok:
            raise VfdPluginError(f"vfd refused {action}: {'; '.join(lines)}")
        return data

    def vfs(self) -> list[VfSlot]:
        return slots_from_data(self.must("show", resource="pci"))

    def pf_mtus(self) -> dict[str, int]:
        return {str(pf["pf"]): int(pf["mtu"]) for pf in self.must("show", resource="extended").get("pfs", [])}

    def live_name(self, port_id: str) -> str | None:
        """The `name` a live config was admitted with (vfd refuses an update with another name)."""
        try:
            with open(os.path.join(self.live_dir, f"{port_id}.json")) as f:
                name = json.load(f).get("name")
        except (OSError, ValueError, AttributeError):
            return None
        return name if isinstance(name, str) else None


# ---- the plugin --------------------------------------------------------------------------------------
class VfdPlugin(osv_plugin.PluginBase):
    """os-vif plugin for VFs whose policy vfd owns (VIFHostDevice, vnic_type direct)."""

    CONFIG_OPTS = [
        cfg.StrOpt("vfd_config", default=DEFAULT_VFD_CONFIG,
                   help="Path of vfd's main config (JSON); its 'fifo' and 'config_dir' say how to reach "
                        "the daemon and where VF configs are written."),
        cfg.FloatOpt("request_timeout", default=30.0, min=0.1,
                     help="Seconds to wait for each reply of the vfd daemon."),
    ]

    def describe(self):
        return osv_objects.host_info.HostPluginInfo(
            plugin_name=PLUGIN_NAME,
            vif_info=[
                osv_objects.host_info.HostVIFInfo(
                    vif_object_name=osv_vif.VIFHostDevice.__name__,
                    min_version="1.0", max_version="1.0",
                    supported_port_profiles=[
                        osv_objects.host_info.HostPortProfileInfo(
                            profile_object_name=VIFPortProfileVfd.__name__,
                            min_version="1.0", max_version="1.0"),
                    ]),
            ])

    def _client(self) -> VfdClient:
        return VfdClient(self.config.vfd_config, self.config.request_timeout)

    # -- plug --
    def plug(self, vif, instance_info) -> None:
        if not isinstance(vif, osv_vif.VIFHostDevice):
            raise VfdPluginError(f"vfd plugs VIFHostDevice VIFs (direct SR-IOV ports), not {type(vif).__name__}")
        with _LOCK:
            self._plug(vif, instance_info)

    def _plug(self, vif, instance_info) -> None:
        port_id = vif.id
        client = self._client()
        slots = client.vfs()
        pci = vif.dev_address.lower()
        slot = next((s for s in slots if s.pci == pci), None)
        if slot is None:
            pfs = sorted({s.pf_id for s in slots})
            raise VfdPluginError(f"VF PCI address {pci} is not a VF of a PF vfd manages "
                                 f"(PFs: {', '.join(pfs) or 'none'}; see 'iplex show pci')")
        if slot.port_id is not None and slot.port_id != port_id:
            raise VfdPluginError(f"VF {pci} (PF {slot.pf_id} VF {slot.vfid}) is already used by port "
                                 f"{slot.port_id}; unplug it first")
        live = any(s.port_id == port_id for s in slots)
        network = _attr(vif, "network")
        self._check_mtu(client, slot, _attr(network, "mtu"))
        inst = (_attr(instance_info, "name") or _attr(instance_info, "uuid") or "unknown") if instance_info else "unknown"
        name = (client.live_name(port_id) if live else None) or f"{inst}/{port_id}"
        plugged = {s.port_id: (s.pf_id, s.vfid) for s in slots if s.port_id is not None}
        try:
            config = vf_config(binding_profile_of(vif), name=name, pciid=slot.pf_id, vfid=slot.vfid,
                               mac=_attr(vif, "address"), network_vlan=_attr(network, "vlan"),
                               plugged=plugged, port_id=port_id)
        except ProfileError as exc:
            raise VfdPluginError(f"port {port_id}: {exc}") from None
        path = os.path.join(client.config_dir, f"{port_id}.json")
        try:
            atomic_write(path, (json.dumps(config, indent=1) + "\n").encode())
        except OSError as exc:
            raise VfdPluginError(f"cannot write the VF config {path}: {exc.strerror}") from None
        action = "update" if live else "add"
        ok, lines, _ = client.call(action, filename=path)
        if not ok:
            # add: vfd renamed the file <port>.json.error for the operator; update leaves it: drop it.
            if os.path.exists(path):
                try:
                    os.unlink(path)
                except OSError:
                    pass
            raise VfdPluginError(f"vfd refused {action} of port {port_id}: {'; '.join(lines)}")
        LOG.info("vfd: port %s %s on PF %s VF %d (%s)", port_id, "updated" if live else "added",
                 slot.pf_id, slot.vfid, pci)

    @staticmethod
    def _check_mtu(client: VfdClient, slot: VfSlot, mtu: int | None) -> None:
        """The PF's MTU (vfd's main config) caps every VF's frames; refuse a network MTU above it."""
        if not mtu:
            return
        pf_mtu = client.pf_mtus().get(slot.pf_id)
        if pf_mtu is not None and mtu > pf_mtu:
            raise VfdPluginError(f"the network MTU {mtu} exceeds the MTU {pf_mtu} of PF {slot.pf_id} "
                                 "(set per PF in vfd's main config)")

    # -- unplug --
    def unplug(self, vif, instance_info) -> None:
        with _LOCK:
            self._unplug(vif)

    def _unplug(self, vif) -> None:
        port_id = vif.id
        client = self._client()
        if not any(s.port_id == port_id for s in client.vfs()):
            LOG.info("vfd: port %s is not live; nothing to unplug", port_id)
            return
        ok, lines, data = client.call("delete", filename=f"{port_id}.json")
        if not ok:
            if data.get("rule") == "not_live":     # unplugged meanwhile: nova retries unplugs
                return
            raise VfdPluginError(f"vfd refused delete of port {port_id}: {'; '.join(lines)}")
        LOG.info("vfd: port %s deleted", port_id)
