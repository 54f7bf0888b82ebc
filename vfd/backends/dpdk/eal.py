"""EAL set-up for the dpdk backend: the original's EAL command line (reference 1.4 step 6) for DPDK 22.11,
and the names EAL gives the PFs.  Pure functions; the backend calls `ffi.eal_init` with their result."""

from __future__ import annotations

import logging
import os
import re

from vfd.model.mainconfig import MainConfig

log = logging.getLogger("vfd.dpdk")

DEFAULT_FILE_PREFIX = "vfd"
PREFIX_ENV = "VFD_DPDK_FILE_PREFIX"        # tests run their own daemon next to a real one
NO_HUGE_MEM_MB = 64
PCI_RE = re.compile(r"^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$")


def is_pci(pf_id: str) -> bool:
    return PCI_RE.match(pf_id) is not None


def pci_name(pf_id: str) -> str:
    """DPDK's spelling of a PCI address: lowercase with a domain ('0000:07:00.0')."""
    m = PCI_RE.match(pf_id)
    if not m:
        return pf_id
    dom, bus, dev, fn = m.groups()
    return f"{dom or '0000'}:{bus}:{dev}.{fn}".lower()


def port_name(pf_id: str) -> str:
    """The ethdev name a PF id yields: the PCI address, or the vdev name before its ',args'."""
    return pci_name(pf_id) if is_pci(pf_id) else pf_id.split(",", 1)[0]


def cpu_core(cpu_mask: str, allowed: set[int] | None = None) -> int:
    """The one core of `cpu_mask` ("0x04" -> 2).  When the process may not run there (cgroups, small VMs)
    the lowest allowed core is used instead, with a warning: EAL would refuse to start otherwise."""
    value = int(cpu_mask, 16) if cpu_mask.lower().startswith("0x") else int(cpu_mask)
    core = max(value.bit_length() - 1, 0)
    if allowed and core not in allowed:
        fallback = min(allowed)
        log.warning("cpu_mask %s names core %d, which this process may not use; using core %d",
                    cpu_mask, core, fallback)
        return fallback
    return core


def eal_args(main: MainConfig, pf_ids: list[str], prefix: str = DEFAULT_FILE_PREFIX,
             allowed_cores: set[int] | None = None) -> list[str]:
    """The original's EAL command line (reference 1.4 step 6), for DPDK 22.11.

    -c <one core> -n 4 --file-prefix vfd --log-level <dpdk_init_log_level>, then --socket-mem <numa_mem>
    or (huge_pages false) --no-huge -m 64 --no-shconf, --no-telemetry, and the allow-list: -a <pci> per PCI
    PF, --vdev <id> per other PF, --no-pci when no PF is a PCI device.
    """
    core = cpu_core(main.cpu_mask, allowed_cores)
    args = ["vfd", "-c", f"0x{1 << core:x}", "-n", "4", "--file-prefix", prefix,
            "--log-level", str(max(1, main.dpdk_init_log_level))]   # DPDK levels are 1 (EMERG) .. 8 (DEBUG)
    if main.huge_pages:
        args += ["--socket-mem", main.numa_mem]
    else:
        args += ["--no-huge", "-m", str(NO_HUGE_MEM_MB), "--no-shconf"]
    args.append("--no-telemetry")     # the telemetry socket would keep /var/run/dpdk/<prefix> until exit
    pci = False
    for pf_id in pf_ids:
        if is_pci(pf_id):
            args += ["-a", pci_name(pf_id)]
            pci = True
        else:
            args += ["--vdev", pf_id]
    if not pci:
        args.append("--no-pci")
    return args


def runtime_dir(prefix: str) -> str:
    base = "/var/run" if os.geteuid() == 0 else os.environ.get("XDG_RUNTIME_DIR", "/tmp")
    return os.path.join(base, "dpdk", prefix)

