"""DPDK backend: drives the PF through Debian's DPDK 22.11 PMDs (ixgbe, i40e, bnxt).

`vfd.backends.dpdk.ffi` is the low-level ctypes binding (nothing is loaded until `ffi.load()`);
`backend.DpdkBackend` is the NicBackend built on it, with one adapter module per PMD
(`pmd_ixgbe`, `pmd_i40e`, `pmd_bnxt`; any other driver gets `backend.NoVfApiAdapter`). docs/dpdk.md.
"""

from vfd.backends.dpdk.backend import DpdkBackend

__all__ = ["DpdkBackend"]
