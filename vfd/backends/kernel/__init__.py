"""The kernel backend: PFs on their Linux drivers, VFs through rtnetlink (pyroute2) and sysfs.

Modules: `backend` (KernelBackend), `netlink` (the pyroute2 boundary: reads, one message per VF,
the event socket), `sysfs` (PF lookup, sriov_numvfs), `profiles` (what each driver can do),
`originals` (VF state recorded before vfd's first change, restored on delete). docs/kernel.md.
"""

from vfd.backends.kernel.backend import KernelBackend

__all__ = ["KernelBackend"]
