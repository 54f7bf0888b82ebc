"""The daemon's main config (`/etc/vfd/vfd.cfg`): every key of the original VFd plus the backend keys.

Where the original clamped or silently fell back to a default (bad cpu_mask, mtu above 9420,
TC percentages out of range, non-boolean flags), this model refuses the file and says why.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from vfd.errors import ConfigError
from vfd.model.common import StrictModel, describe_validation_error, load_json_object, strip_comments

MAX_MTU = 9420  # the original's cap (82599 with loopback misbehaves above ~9.5K)
# Intervals in seconds: finite, and bounded so that neither a busy loop (1e-300) nor a timer that
# never fires (1e309 is infinity in JSON) can be configured.
RECONCILE_MIN, RECONCILE_MAX = 0.5, 86400.0
# vfd's CNI socket when the main config does not name one (`cni_socket`, docs/kubernetes.md): a fixed
# path, because the static front end vfd-cni must find it without reading any config; the same
# string is compiled into tools/cni-frontend/vfd-cni.c (a test checks they agree).
DEFAULT_CNI_SOCKET = "/run/vfd/cni.sock"
CALLBACK_TIMEOUT_MIN, CALLBACK_TIMEOUT_MAX = 1.0, 3600.0
BACKENDS = ("sim", "kernel", "dpdk")
SIM_DRIVERS = ("ixgbe", "i40e", "bnxt", "mlx5")

Backend = Literal["sim", "kernel", "dpdk"]


class SimNic(StrictModel):
    """Which NIC family a sim PF imitates, and the values a real NIC would report."""

    driver: Literal["ixgbe", "i40e", "bnxt", "mlx5"] = "ixgbe"
    speed: int = Field(default=10000, gt=0)
    vf_offset: int | None = Field(default=None, ge=0)
    vf_stride: int | None = Field(default=None, ge=1)


class TrafficClass(StrictModel):
    pri: int = Field(ge=0, le=7)
    name: str | None = None
    llatency: bool = False
    lsp: bool = False
    bsp: bool = False
    max_bw: int = Field(default=100, ge=1, le=100)
    min_bw: int = Field(default=1, ge=1, le=100)

    @property
    def label(self) -> str:
        return self.name or f"TC-{self.pri}"


class PFConfig(StrictModel):
    id: str = Field(min_length=1)
    backend: Backend | None = None
    mtu: int | None = Field(default=None, ge=68, le=MAX_MTU)
    hw_strip_crc: bool = True
    promiscuous: bool = False
    enable_loopback: bool = False
    vf_oversubscription: bool = False
    tclasses: list[TrafficClass] = Field(default_factory=list, max_length=8)
    bw_grps: dict[str, list[Annotated[int, Field(ge=0, le=7)]]] = Field(default_factory=dict)
    pf_driver: str | None = None
    vf_driver: str | None = None
    vfs_count: int | None = Field(default=None, ge=0, le=256)
    speed: int | None = Field(default=None, gt=0)
    eswitch_mode: Literal["legacy", "switchdev"] = "legacy"   # kernel backend: docs/kernel.md "Switchdev mode"
    sim: SimNic | None = None

    @field_validator("bw_grps")
    @classmethod
    def _bwg_names(cls, v: dict[str, list[int]]) -> dict[str, list[int]]:
        for name in v:
            if not re.fullmatch(r"bwg[0-7]", name):
                raise ValueError(f"bandwidth group {name!r} must be named bwg0 .. bwg7")
        return v

    @field_validator("tclasses")
    @classmethod
    def _unique_pri(cls, v: list[TrafficClass]) -> list[TrafficClass]:
        pris = [t.pri for t in v]
        if len(set(pris)) != len(pris):
            raise ValueError("each traffic class 'pri' may appear once")
        return v


def _bare_pf(v: object) -> object:
    """A bare PCI string in `pciids` means: default MTU, no loopback, promiscuous on (as the original)."""
    return {"id": v, "promiscuous": True} if isinstance(v, str) else v


def _cpu_mask(v: object) -> object:
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    if not isinstance(v, str):
        return v
    text = v.strip().lower()
    try:
        value = int(text, 16) if text.startswith("0x") else int(text, 10)
    except ValueError:
        raise ValueError("cpu_mask must be a hex (\"0x04\") or decimal number") from None
    if value <= 0 or value & (value - 1):
        raise ValueError("cpu_mask must have exactly one bit set (vfd uses one core)")
    return f"0x{value:02x}"


def parse_cpu_alarm(v: object) -> object:
    """Fraction (1.05 = 105%) or a percentage string ("30%" or "30")."""
    if isinstance(v, str):
        text = v.strip().rstrip("%").strip()
        try:
            return float(text) / 100.0
        except ValueError:
            raise ValueError("cpu_alarm must be a fraction or a percentage such as \"30%\"") from None
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


def _numa_mem(v: object) -> object:
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, str) and not re.fullmatch(r"\d+(,\d+)*", v.replace(" ", "")):
        raise ValueError("numa_mem must be megabytes per NUMA socket, comma separated, e.g. \"64,64\"")
    return v.replace(" ", "") if isinstance(v, str) else v


def _listen(v: object) -> object:
    """"HOST:PORT" for the metrics endpoint: an IPv4/IPv6 address or name, and a port 1..65535."""
    if not isinstance(v, str):
        return v
    host, sep, port = v.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"metrics_listen must be \"HOST:PORT\" with a port 1..65535, e.g. \"127.0.0.1:9469\"; "
                         f"got {v!r}")
    return v


def split_listen(v: str) -> tuple[str, int]:
    host, _, port = v.rpartition(":")
    return (host[1:-1] if host.startswith("[") else host), int(port)


class MainConfig(StrictModel):
    log_dir: str = "/var/log/vfd"
    log_keep: int = 30
    log_level: int = Field(default=0, ge=0, le=5)
    init_log_level: int = Field(default=1, ge=0, le=5)
    dpdk_log_level: int = Field(default=0, ge=0, le=8)
    dpdk_init_log_level: int = Field(default=0, ge=0, le=8)
    config_dir: str = "/var/lib/vfd/config"
    fifo: str = "/var/lib/vfd/request"
    fifo_group: str | None = None
    # Unix stream socket beside the FIFO, where the kernel tells vfd who asks (SO_PEERCRED); in the
    # FIFO's directory; null = `<fifo>.sock`, false = none (docs/operations.md, Security).
    socket: str | Literal[False] | None = None
    # Unix stream socket where vfd executes CNI commands for the vfd-cni front end (root only);
    # null = DEFAULT_CNI_SOCKET when vfd runs as root (none otherwise), false = none (docs/kubernetes.md).
    cni_socket: str | Literal[False] | None = None
    pid_fname: str = "/var/run/vfd.pid"
    stats_path: str = "/var/lib/vfd/stats"
    cpu_mask: Annotated[str, BeforeValidator(_cpu_mask)] = "0x04"
    numa_mem: Annotated[str, BeforeValidator(_numa_mem)] = "64,64"
    huge_pages: bool = True
    enable_qos: bool = False
    enable_flowcontrol: bool = False
    default_mtu: int = Field(default=MAX_MTU, ge=68, le=MAX_MTU)
    mtu: int | None = Field(default=None, ge=68, le=MAX_MTU)  # legacy spelling of default_mtu
    delete_keep: bool = False
    cpu_alarm: Annotated[float, BeforeValidator(parse_cpu_alarm), Field(ge=0.05, allow_inf_nan=False)] = 0.10
    cpu_alarm_type: str = "WRN:"
    backend: Backend = "sim"
    dpdk_file_prefix: str = Field(default="vfd", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    sim_state_dir: str = "/var/lib/vfd/sim"
    reconcile_interval: float = Field(default=10.0, ge=RECONCILE_MIN, le=RECONCILE_MAX, allow_inf_nan=False)
    callback_timeout: float = Field(default=30.0, ge=CALLBACK_TIMEOUT_MIN, le=CALLBACK_TIMEOUT_MAX,
                                    allow_inf_nan=False)
    # Prometheus endpoint "HOST:PORT" serving /metrics; absent = none (docs/observability.md).
    metrics_listen: Annotated[str, BeforeValidator(_listen)] | None = None
    log_format: Literal["text", "json"] = "text"
    pciids: list[Annotated[PFConfig, BeforeValidator(_bare_pf)]] = Field(min_length=1)

    @model_validator(mode="after")
    def _checks(self) -> "MainConfig":
        if isinstance(self.cni_socket, str) and (not self.cni_socket.startswith("/") or "\0" in self.cni_socket):
            raise ValueError(f"cni_socket {self.cni_socket!r} must be an absolute path (or false: no CNI socket)")
        ids = [pf.id for pf in self.pciids]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"PF {sorted(dup)[0]!r} is listed more than once in pciids")
        for i, pf in enumerate(self.pciids):
            if pf.sim is not None and self.backend_of(pf) != "sim":
                raise ValueError(f"pciids[{i}] ({pf.id}): 'sim' settings only apply to the sim backend")
            if pf.eswitch_mode != "legacy" and self.backend_of(pf) != "kernel":
                raise ValueError(f"pciids[{i}] ({pf.id}): eswitch_mode {pf.eswitch_mode!r} only applies to the "
                                 f"kernel backend")
            # The kernel backend leaves pause frames and FCS handling to the PF's driver (ethtool -A/-K):
            # refused rather than accepted and ignored (docs/kernel.md).
            if self.backend_of(pf) == "kernel" and self.enable_flowcontrol:
                raise ValueError(f"pciids[{i}] ({pf.id}): enable_flowcontrol true is not supported by the kernel "
                                 f"backend (set pause frames with 'ethtool -A'); leave it false for kernel PFs")
            if self.backend_of(pf) == "kernel" and not pf.hw_strip_crc:
                raise ValueError(f"pciids[{i}] ({pf.id}): hw_strip_crc false is not supported by the kernel "
                                 f"backend (the driver strips the CRC; 'ethtool -K rx-fcs' is the driver's)")
        return self

    # ---- derived values -------------------------------------------------------------------
    def backend_of(self, pf: PFConfig) -> str:
        return pf.backend or self.backend

    def mtu_of(self, pf: PFConfig) -> int:
        if pf.mtu is not None:
            return pf.mtu
        return self.mtu if (self.mtu is not None and "default_mtu" not in self.model_fields_set) else self.default_mtu

    @property
    def socket_path(self) -> str | None:
        return None if self.socket is False else (self.socket or self.fifo + ".sock")

    @property
    def cni_socket_path(self) -> str | None:
        return None if self.cni_socket is False else (self.cni_socket or DEFAULT_CNI_SOCKET)

    @property
    def live_dir(self) -> str:
        return self.config_dir.rstrip("/") + "_live"

    def pf(self, pf_id: str) -> PFConfig | None:
        for pf in self.pciids:
            if pf.id == pf_id:
                return pf
        return None

    def pf_index(self, pf_id: str) -> int:
        return [pf.id for pf in self.pciids].index(pf_id)


def parse_main_config(text: str | bytes, source: str) -> MainConfig:
    data = strip_comments(load_json_object(text, source))
    try:
        return MainConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(source, describe_validation_error(err)) from None


def load_main_config(path: str) -> MainConfig:
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror}"]) from None
    return parse_main_config(text, path)
