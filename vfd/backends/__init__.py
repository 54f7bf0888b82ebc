"""NIC backends: one narrow interface (`base.NicBackend`), one module per way of reaching a NIC."""

from __future__ import annotations

from vfd.backends.base import NicBackend


def create_backend(name: str, main) -> NicBackend:
    """Import backends lazily: the kernel backend needs pyroute2, the dpdk one loads DPDK."""
    if name == "sim":
        from vfd.backends.sim import SimBackend
        return SimBackend(main)
    if name == "kernel":
        from vfd.backends.kernel import KernelBackend
        return KernelBackend(main)
    if name == "dpdk":
        from vfd.backends.dpdk import DpdkBackend
        return DpdkBackend(main)
    raise ValueError(f"unknown backend {name!r}")
