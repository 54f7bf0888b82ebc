"""A recording stand-in for vfd.backends.dpdk.ffi: the same function names, every call recorded.

Only names the real binding (or the backend's few extra bindings) has are accepted, and each call is
checked against the real wrapper's signature, so an adapter calling a misspelt function or passing the
arguments in the wrong shape fails here as it would against DPDK.  Constants and ctypes structures come
from the real module.  `fail` makes named functions raise DpdkError (code -EINVAL by default), as a NIC
refusing an operation would.
"""

from __future__ import annotations

import errno
import inspect

from vfd.backends.dpdk import ffi
from vfd.backends.dpdk.backend import EXTRA


# Pure helpers (no DPDK call): the real ones run.
PASS_THROUGH = {"make_eth_conf", "errno_name", "errno_text", "ixgbe_mb_param", "i40e_mb_param", "bnxt_mb_param",
                "ixgbe_msg_words", "msg_bytes", "hwrm_req_type"}


class RecordingFfi:
    def __init__(self, returns: dict | None = None, fail: dict | None = None):
        self.calls: list[tuple[str, tuple]] = []
        self.returns = dict(returns or {})
        self.fail = dict(fail or {})          # name -> negative errno

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        real = getattr(ffi, name, None)
        if real is None and name not in EXTRA.names():
            raise AttributeError(f"vfd.backends.dpdk.ffi has no {name}")
        if real is not None and (not callable(real) or isinstance(real, type) or name in PASS_THROUGH):
            return real                      # constants, structure classes, pure helpers
        sig = inspect.signature(real) if real is not None else None

        def record(*args, **kwargs):
            if sig is not None:
                sig.bind(*args, **kwargs)    # TypeError when the call would not fit the real wrapper
            self.calls.append((name, args))
            if name in self.fail:
                raise ffi.DpdkError(name, self.fail[name] or -errno.EINVAL)
            r = self.returns.get(name, 0)
            return r(*args) if callable(r) else r
        record.__name__ = name
        return record

    def names(self) -> list[str]:
        return [n for n, _ in self.calls]

    def clear(self) -> None:
        self.calls.clear()
