"""The VF netdev's trip into the pod and back (rtnetlink on plain sockets: `rtnl`, no `ip` processes).

Into the pod: down, renamed in the host to a temporary name (the pod may already have an
interface with the VF's host name), moved into CNI_NETNS, renamed to CNI_IFNAME, MAC and MTU
set, up. Back: down, temporary name, moved to the plugin's own namespace (the kernel drops the
pod's addresses on the move), original name and MTU.
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager

from vfd.integrations.cni.errors import CONTAINER_UNKNOWN, NETDEV_FAILED, CniError
from vfd.integrations.cni.rtnl import NetlinkError, Rtnl


@contextmanager
def host():
    with Rtnl() as ipr:
        yield ipr


@contextmanager
def pod(netns_path: str):
    if not os.path.exists(netns_path):
        raise CniError(CONTAINER_UNKNOWN, f"CNI_NETNS {netns_path} does not exist")
    try:
        ns = Rtnl(netns_path)
    except OSError as exc:
        raise CniError(CONTAINER_UNKNOWN, f"cannot enter CNI_NETNS {netns_path}: {exc}") from None
    with ns:
        yield ns


def _index(ipr: Rtnl, name: str) -> int | None:
    return ipr.index(name)


def link_info(ipr: Rtnl, name: str) -> dict | None:
    found = ipr.link(name)
    return None if found is None else {"index": found["index"], "mac": found["mac"], "mtu": found["mtu"]}


def _fail(what: str, exc: Exception) -> CniError:
    return CniError(NETDEV_FAILED, f"{what}: {exc}")


def move_in(host_name: str, tmp_name: str, netns_path: str, ifname: str, mac: str | None,
            mtu: int | None) -> dict:
    """Move the host netdev into the pod as `ifname`; returns its index, MAC and MTU there."""
    with pod(netns_path) as ns:
        if _index(ns, ifname) is not None:
            raise CniError(NETDEV_FAILED, f"CNI_IFNAME {ifname} already exists in {netns_path}")
        with host() as ipr:
            idx = _index(ipr, host_name)
            if idx is None:
                raise CniError(NETDEV_FAILED, f"VF netdev {host_name} not found in the host")
            try:
                ipr.set_link(idx, up=False)
                ipr.set_link(idx, ifname=tmp_name)
                fd = os.open(netns_path, os.O_RDONLY)
                try:
                    ipr.set_link(idx, netns_fd=fd)
                finally:
                    os.close(fd)
            except NetlinkError as exc:
                raise _fail(f"moving {host_name} into {netns_path}", exc) from None
        idx = _index(ns, tmp_name)
        if idx is None:
            raise CniError(NETDEV_FAILED, f"{tmp_name} did not arrive in {netns_path}")
        try:
            ns.set_link(idx, ifname=ifname)
            if mac:
                _set_mac(ns, idx, mac)
            if mtu:
                ns.set_link(idx, mtu=mtu)
            ns.set_link(idx, up=True)
        except NetlinkError as exc:
            raise _fail(f"configuring {ifname} in {netns_path}", exc) from None
        return link_info(ns, ifname)


def _mac(ipr, idx: int) -> str:
    found = ipr.link(index=idx)
    return found["mac"] if found else ""


def _set_mac(ipr, idx: int, mac: str) -> None:
    """Give the netdev `mac`. When the PF has set the VF's MAC (vfd did), the VF driver may refuse
    to change it (igbvf: EADDRNOTAVAIL) but takes the PF's value on its next reset, which an
    up/down cycle of a netdev that was down since causes; so that is tried first."""
    if _mac(ipr, idx) == mac.lower():
        return
    try:
        ipr.set_link(idx, up=True)
        ipr.set_link(idx, up=False)
    except NetlinkError:
        pass
    cur = _mac(ipr, idx)
    if cur == mac.lower():
        return
    try:
        ipr.set_link(idx, mac=mac)
    except NetlinkError as exc:
        raise _fail(f"setting MAC {mac} (the netdev has {cur})", exc) from None


def move_out(netns_path: str, names: list[str], tmp_name: str, host_name: str,
             mtu: int | None, mac: str | None) -> bool:
    """Move the netdev (found in the pod under the first of `names` that exists) back to the host as
    `host_name`; False when the netns or the netdev is no longer there."""
    if netns_path and os.path.exists(netns_path):
        try:
            with pod(netns_path) as ns:
                for name in names:
                    idx = _index(ns, name)
                    if idx is None:
                        continue
                    try:
                        ns.set_link(idx, up=False)
                        ns.set_link(idx, ifname=tmp_name)
                        fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)   # this thread's: the host's
                        try:
                            ns.set_link(idx, netns_fd=fd)
                        finally:
                            os.close(fd)
                    except NetlinkError as exc:
                        raise _fail(f"moving {name} out of {netns_path}", exc) from None
                    break
        except CniError as exc:
            if exc.code != CONTAINER_UNKNOWN:
                raise
    return restore_host_name([tmp_name], host_name, mtu, mac)


def restore_host_name(names: list[str], host_name: str, mtu: int | None, mac: str | None) -> bool:
    """Give the netdev (in the host under one of `names`) its original name, MTU and MAC back."""
    with host() as ipr:
        for name in names:
            idx = _index(ipr, name)
            if idx is None:
                continue
            try:
                ipr.set_link(idx, up=False)
                if name != host_name:
                    ipr.set_link(idx, ifname=host_name)
                if mtu:
                    ipr.set_link(idx, mtu=mtu)
            except NetlinkError as exc:
                raise _fail(f"restoring {name} as {host_name}", exc) from None
            if mac:
                try:
                    _set_mac(ipr, idx, mac)
                except CniError:
                    pass        # the PF may pin the VF's MAC; vfd's delete restores it from the PF side
            return True
    return False


def configure_ips(netns_path: str, ifname: str, result: dict) -> None:
    """Addresses and routes of an IPAM result, on `ifname` in the pod."""
    import ipaddress    # here: only a netconf with ipam needs it
    with pod(netns_path) as ns:
        idx = _index(ns, ifname)
        if idx is None:
            raise CniError(NETDEV_FAILED, f"{ifname} not found in {netns_path}")
        try:
            for ip in result.get("ips") or []:
                iface = ipaddress.ip_interface(ip["address"])
                ns.add_address(idx, iface)
            for r in result.get("routes") or []:
                dst = ipaddress.ip_network(r["dst"], strict=False)
                gw = r.get("gw") or _gateway_for(result, dst.version)
                try:
                    ns.add_route(dst, idx, ipaddress.ip_address(gw) if gw else None)
                except NetlinkError as exc:
                    if exc.code != errno.EEXIST:
                        raise
        except (NetlinkError, ValueError, KeyError) as exc:
            raise _fail(f"configuring addresses/routes on {ifname}", exc) from None


def _gateway_for(result: dict, version: int) -> str | None:
    import ipaddress
    for ip in result.get("ips") or []:
        gw = ip.get("gateway")
        if gw and ipaddress.ip_address(gw).version == version:
            return gw
    return None


def pod_link(netns_path: str, ifname: str) -> dict | None:
    with pod(netns_path) as ns:
        return link_info(ns, ifname)
