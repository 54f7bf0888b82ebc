"""CNI errors: what the plugin prints on stdout (`cniVersion`, `code`, `msg`, `details`) and exits non-zero with.

Codes are the CNI spec's where one applies; 100 and up are this plugin's own.
"""

from __future__ import annotations

INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
CONTAINER_UNKNOWN = 3
INVALID_NETCONF = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_ENV = 7
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50
# This plugin's own codes.
VFD_REFUSED = 100        # the daemon refused the request; msg carries vfd's own words
VF_NOT_MANAGED = 101     # deviceID is not a VF of a PF in vfd's main config
NETDEV_FAILED = 102      # moving / renaming / addressing the VF netdev failed
IPAM_FAILED = 103        # the delegated IPAM plugin failed
CHECK_FAILED = 104       # CHECK found the attachment not as ADD left it
ALREADY_ATTACHED = 105   # ADD for a container and interface that already have an attachment
INTERNAL_ERROR = 106     # an unexpected failure inside vfd (a bug: vfd's log has the traceback)
NOT_ROOT = 107           # vfd's CNI socket serves root only (the front end was run by another user)


class CniError(Exception):
    """A failure reported to the runtime as a CNI error result."""

    def __init__(self, code: int, msg: str, details: str = ""):
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> dict:
        out = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out
