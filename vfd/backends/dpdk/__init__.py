"""DPDK backend: drives the PF through Debian's DPDK 22.11 PMDs (ixgbe, i40e, bnxt).

`vfd.backends.dpdk.ffi` is the low-level ctypes binding (nothing is loaded until `ffi.load()`).
The backend class built on top of it lives elsewhere in this package.
"""
