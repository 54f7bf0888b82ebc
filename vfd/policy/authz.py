"""Who may do what: the request boundary's rules, as pure functions.

vfd runs as root and serves members of `fifo_group`. A requester is identified by a uid the kernel
vouches for (the owner of its reply FIFO in a sticky, unlistable directory, or a Unix socket's
peer credentials); `None` means the daemon could not tell, and such a requester may only read.
Every rule lives here so the server, the manager and the docs agree (docs/operations.md, Security).
"""

from __future__ import annotations

from vfd.errors import RequestError

ROOT = 0

# Reads anyone in fifo_group may do; everything else changes state and is checked below.
READ_ONLY = frozenset({"ping", "show", "status", "dump", "watch"})
# Daemon-wide settings: root only.
ROOT_ONLY = frozenset({"verbose", "cpu_alarm"})


class PermissionRefused(RequestError):
    """The requester is not allowed to do this; the message says who is."""

    def __init__(self, action: str, what: str, requester_uid: int | None, allowed: str, reason: str | None = None):
        self.action = action
        self.requester_uid = requester_uid
        who = "an unidentified requester" if requester_uid is None else f"uid {requester_uid}"
        super().__init__(f"permission denied: {action} {what} by {who}: {reason or f'only {allowed} may do this'}")


def is_root(requester_uid: int | None) -> bool:
    return requester_uid == ROOT


def require_root(action: str, what: str, requester_uid: int | None) -> None:
    if not is_root(requester_uid):
        raise PermissionRefused(action, what, requester_uid, "root")


def require_owner(action: str, what: str, owner_uid: int, requester_uid: int | None) -> None:
    """Changes to a live VF: root, or the uid that owned the drop file it was admitted from."""
    if requester_uid is None or (requester_uid != ROOT and requester_uid != owner_uid):
        raise PermissionRefused(action, what, requester_uid, f"root and its owner (uid {owner_uid})")


def require_file_owner(action: str, what: str, file_uid: int, owner_uid: int, requester_uid: int | None) -> None:
    """An update's new config replaces the VF's (and its callbacks): it must come from root or the
    VF's owner, whoever sends the request."""
    if file_uid not in (ROOT, owner_uid):
        raise PermissionRefused(action, what, requester_uid, "", reason=f"the new config file is owned by uid "
                                f"{file_uid}; it must be owned by root or the VF's owner (uid {owner_uid})")
