"""vfd: the Virtual Function Daemon, owner of SR-IOV VF policy on a host.

Kept import-free on purpose: `iplex` imports `vfd.iplex`, and every module pulled in here
would be paid for by each `iplex` start-up.
"""

__version__ = "0.1.0"
PROTOCOL_VERSION = "vfd-py 0.1.0 (iplex protocol 1.3)"
