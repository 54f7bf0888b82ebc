"""Errors that carry what a user needs to fix a request: where, which field, which value, which rule."""

from __future__ import annotations


class VfdError(Exception):
    """Base of every error vfd reports to a requester."""


class ConfigError(VfdError):
    """A config file (main or VF) is unreadable or breaks the schema.

    `first`, for a VF config the model refused: its first problem as data, `{"field", "value", "why"}`,
    so a refusal's reply can name them (rule vf_config) for programs, as an admission refusal does."""

    def __init__(self, source: str, problems: list[str], first: dict | None = None):
        self.source = source
        self.problems = problems
        self.first = first
        super().__init__(f"{source}: " + "; ".join(problems))


class AdmissionError(VfdError):
    """A well-formed VF config that cannot be admitted next to what is already live.

    `rule` is the name of the admission rule that refused it (see docs/admission.md).
    """

    def __init__(self, rule: str, field: str, value: object, message: str):
        self.rule = rule
        self.field = field
        self.value = value
        super().__init__(f"{message} (field '{field}', value {value!r}, rule {rule})")


class CapabilityError(AdmissionError):
    """The PF's driver or backend cannot do what the config asks: refused, never dropped silently."""

    def __init__(self, feature: str, driver: str, backend: str, field: str, value: object, detail: str = ""):
        self.feature = feature
        self.driver = driver
        msg = f"{feature} is not supported by driver {driver} on the {backend} backend"
        if detail:
            msg += f": {detail}"
        super().__init__("driver_capability", field, value, msg)


class BackendError(VfdError):
    """The NIC refused or failed an operation while applying a program."""

    def __init__(self, pf: str, op: str, detail: str, vfid: int | None = None):
        self.pf = pf
        self.op = op
        where = f"pf {pf}" + (f" vf {vfid}" if vfid is not None else "")
        super().__init__(f"{where}: {op} failed: {detail}")


class RequestError(VfdError):
    """A request that names an unknown action, a bad file or a path outside vfd's directories."""


class NotLive(RequestError):
    """The request names a port that has no live config (`data.rule` "not_live" for programs)."""

    def __init__(self, port_id: str, hint: str = ""):
        self.port_id = port_id
        super().__init__(f"'{port_id}' is not a live VF config{hint}")
