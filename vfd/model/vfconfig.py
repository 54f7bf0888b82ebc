"""The per-VF config file (`<config_dir>/<port-id>.json`), with the original VFd's field names.

Every rule that can be checked on one file alone lives here; rules that need the rest of the host
(other VFs, the PF, the driver) are admission rules in `vfd.policy.admission`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from vfd.errors import ConfigError
from vfd.macaddr import parse_unicast_mac
from vfd.model.common import (StrictModel, describe_validation_error, first_problem, load_json_object,
                               strip_comments)

MAX_VLANS_PER_VF = 64
MAX_MACS_PER_VF = 64
# Characters that would mean something to a shell; callbacks are run without one, and refused if
# they carry any of these (the original only refused ';').
SHELL_META = re.compile(r"[;&|`$<>\\\n\r(){}*?!~#]")


def _lower(v: object) -> object:
    return v.lower() if isinstance(v, str) else v


LinkStatus = Annotated[Literal["on", "off", "auto"], BeforeValidator(_lower)]
VlanProto = Annotated[Literal["802.1q", "802.1ad"], BeforeValidator(_lower)]
Direction = Annotated[Literal["in", "out", "all", "both", "off"], BeforeValidator(_lower)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


def _share(v: object) -> object:
    """Queue shares are "N%" strings in the original; a plain number is accepted too."""
    if isinstance(v, str):
        text = v.strip()
        if text.endswith("%"):
            text = text[:-1].strip()
        if not text.isdigit():
            raise ValueError("a share must be a whole percentage such as \"10%\"")
        return int(text)
    return v


class QueueShare(StrictModel):
    priority: int = Field(ge=0, le=7)
    share: Annotated[int, BeforeValidator(_share), Field(ge=1, le=100)]


class MirrorSpec(StrictModel):
    target: int = Field(ge=0)
    direction: Direction = "all"

    @property
    def mode(self) -> str:
        return "all" if self.direction == "both" else self.direction


class VFConfig(StrictModel):
    name: str = "unnamed"
    pciid: str = Field(min_length=1)
    vfid: int = Field(ge=0)
    strip_stag: bool = False
    strip_ctag: bool = False
    insert_stag: bool | None = None
    allow_bcast: bool = True
    allow_mcast: bool = True
    allow_un_ucast: bool = False
    allow_untagged: bool = False
    mac_anti_spoof: bool | None = None
    vlan_anti_spoof: bool = True
    link_status: LinkStatus = "auto"
    start_cb: str | None = None
    stop_cb: str | None = None
    vlans: list[Annotated[int, Field(ge=1, le=4095)]] = Field(min_length=1, max_length=MAX_VLANS_PER_VF)
    macs: list[str] = Field(default_factory=list, max_length=MAX_MACS_PER_VF)
    mac: str | None = None
    vm_mac: str | None = None
    rate: Fraction = 0.0
    min_rate: Fraction = 0.0
    queues: list[QueueShare] = Field(default_factory=list, max_length=8)
    mirror: MirrorSpec | None = None
    vlan_proto: VlanProto = "802.1q"

    @field_validator("vlans")
    @classmethod
    def _no_duplicate_vlans(cls, v: list[int]) -> list[int]:
        seen = set()
        for vid in v:
            if vid in seen:
                raise ValueError(f"duplicate VLAN {vid} in the list (each VLAN id may appear once)")
            seen.add(vid)
        return v

    @field_validator("macs")
    @classmethod
    def _parse_macs(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for i, text in enumerate(v):
            try:
                mac = parse_unicast_mac(text)
            except ValueError as exc:
                raise ValueError(f"macs[{i}] {text!r}: {exc}") from None
            if mac in out:
                raise ValueError(f"macs[{i}] {text!r}: duplicate MAC in the list (compared case-insensitively)")
            out.append(mac)
        return out

    @field_validator("mac", "vm_mac")
    @classmethod
    def _parse_mac(cls, v: str | None) -> str | None:
        return None if v is None else parse_unicast_mac(v)

    @field_validator("start_cb", "stop_cb")
    @classmethod
    def _no_shell(cls, v: str | None) -> str | None:
        if v is not None:
            if not v.strip():
                raise ValueError("a callback must not be empty")
            bad = SHELL_META.search(v)
            if bad:
                raise ValueError(f"contains the shell metacharacter {bad.group()!r}; callbacks run without a shell")
        return v

    @field_validator("queues")
    @classmethod
    def _unique_priorities(cls, v: list[QueueShare]) -> list[QueueShare]:
        prios = [q.priority for q in v]
        if len(set(prios)) != len(prios):
            raise ValueError("each traffic class priority may appear once in 'queues'")
        return v

    @model_validator(mode="after")
    def _cross_field(self) -> "VFConfig":
        if self.rate and self.min_rate and self.min_rate > self.rate:
            raise ValueError(f"min_rate {self.min_rate} is above rate {self.rate} (min_rate must be <= rate)")
        if self.mac is not None and self.macs and self.mac not in self.macs:
            raise ValueError("give either 'macs' or 'mac'; when both are given 'mac' must be in 'macs'")
        if self.mirror is not None and self.mirror.target == self.vfid and self.mirror.mode != "off":
            _field_error(("mirror", "target"), self.mirror.target,
                         f"is this VF itself (vfid {self.vfid}); a VF cannot mirror to itself (rule mirror_target)")
        if self.insert_stag and len(self.vlans) > 1:
            _field_error(("insert_stag",), True,
                         f"needs exactly one VLAN, found {len(self.vlans)} in 'vlans': with several VLANs the guest "
                         f"tags its frames (rule insert_stag_one_vlan)")
        return self

    # ---- derived values -------------------------------------------------------------------
    @property
    def mac_list(self) -> list[str]:
        """Default MAC first, then the allow-list."""
        out = list(self.macs) if self.macs else ([self.mac] if self.mac else [])
        if self.vm_mac:
            out = [self.vm_mac] + [m for m in out if m != self.vm_mac]
        return out

    @property
    def insert(self) -> bool:
        """insert_stag defaults to strip_stag (the original had no separate key)."""
        return self.strip_stag if self.insert_stag is None else self.insert_stag

    def explicit(self, field: str) -> bool:
        return field in self.model_fields_set


def _field_error(loc: tuple, value: object, rule_text: str) -> None:
    """A rule across fields, reported against the field that breaks it (not '(top level)')."""
    raise ValidationError.from_exception_data("VFConfig", [InitErrorDetails(
        type=PydanticCustomError("vfd_rule", rule_text), loc=loc, input=value)])


def parse_vf_config(text: str | bytes, source: str) -> VFConfig:
    """Parse and validate one VF config; raise ConfigError naming the file, field, value and rule."""
    data = strip_comments(load_json_object(text, source))
    try:
        return VFConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(source, describe_validation_error(err), first_problem(err)) from None
