"""DPDK backend: drives the PF through Debian's DPDK 22.11 PMDs (ixgbe, i40e, bnxt).  docs/dpdk.md.

ffi.py            the ctypes binding: one prototype table, `call(symbol, *args)` (nothing loaded until used)
eal.py            the EAL command line and PF names
adapter.py        the per-VF record and the shared apply / teardown order; NoVfApiAdapter
pmd_*.py          one adapter per PMD (ixgbe, i40e, bnxt)
mailbox_bridge.py guest mailbox requests -> vfd.policy.mailbox, and the refresh queue
backend.py        DpdkBackend: port start-up, VF operations, counters, events, shutdown
"""

from vfd.backends.dpdk.backend import DpdkBackend

__all__ = ["DpdkBackend"]
