"""A request's answer (`Reply`: lines for people, `data` for programs) and the helpers every part of the
manager builds answers with, so a refusal reads and carries data the same way from any part."""

from __future__ import annotations

import json
from dataclasses import dataclass

from vfd.errors import AdmissionError, ConfigError, NotLive, VfdError
from vfd.policy import authz
from vfd.text import escape


@dataclass
class Reply:
    ok: bool
    lines: list[str]
    data: dict | None = None     # the same answer for programs (docs/iplex.md); msg lines are for people

    def __post_init__(self):
        # one line stays one line, whatever a port name, file name or config value contained
        self.lines = [escape(line) for line in self.lines]


def ok_reply(*lines: str, data: dict | None = None) -> Reply:
    return Reply(True, list(lines), data)


def error_reply(*lines: str, data: dict | None = None) -> Reply:
    return Reply(False, list(lines), data)


def small_int(text: str, limit: int = 1 << 20) -> int | None:
    """A request's number: ASCII digits only (not '²'), and short enough never to reach int()'s limits."""
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        return None
    n = int(text)
    return n if n < limit else None


def request_name(filename: object) -> str:
    """A request's file name as the original's messages show it (escaped and bounded by Reply)."""
    text = filename if isinstance(filename, str) else repr(filename)
    return text if len(text) <= 200 else text[:197] + "..."


def json_safe(value: object) -> object:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def refusal_data(exc: Exception) -> dict | None:
    if isinstance(exc, AdmissionError):
        return {"rule": exc.rule, "field": exc.field, "value": json_safe(exc.value)}
    if isinstance(exc, ConfigError) and exc.first is not None:
        return {"rule": "vf_config", "field": exc.first["field"], "value": json_safe(exc.first["value"]),
                "why": exc.first["why"]}
    if isinstance(exc, authz.PermissionRefused):
        return {"rule": "permission", "action": exc.action, "requester_uid": exc.requester_uid}
    if isinstance(exc, NotLive):
        return {"rule": "not_live", "port": exc.port_id}
    return None


def describe(exc: BaseException) -> str:
    """A failure as one clear sentence: vfd's own errors carry their text; an OSError names the
    call's file and the reason (never "internal error ... [Errno 28]")."""
    if isinstance(exc, VfdError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return f"internal error: {type(exc).__name__}: {exc}"
