"""Shared pieces of the config models: strict base model, JSON loading and readable error messages."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from vfd.errors import ConfigError

# Keys the original ignored so that files could carry notes; still accepted, still ignored.
COMMENT_KEYS = ("comment", "comments")


class StrictModel(BaseModel):
    """No coercion ("true" is not a bool, 1 is not True) and no unknown keys: a typo is an error."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=True)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # pydantic tags union branches and validators; they are not field names
            if part in ("function-after", "function-before", "function-plain") or "[" in str(part):
                continue
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problem(e: dict) -> tuple[str, Any, str, str]:
    """One pydantic error as (field, value, what the rule says, the line "field 'x': value V: rule")."""
    field = _loc(e["loc"])
    if e["type"] == "extra_forbidden":
        why = "is not part of the format; check the spelling"
        return field, e.get("input"), why, f"unknown field '{field}' (not part of the format; check the spelling)"
    if e["type"] == "missing":
        return field, None, "is required", f"field '{field}' is required"
    msg = e["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    ctx = e.get("ctx") or {}
    if e["type"] == "too_short":
        msg = f"must have at least {ctx.get('min_length')} item(s)"
    elif e["type"] == "too_long":
        msg = f"must have at most {ctx.get('max_length')} items"
    msg = msg.replace("Input should be", "must be")
    try:
        value = _short(e.get("input"))
    except (TypeError, ValueError):
        value = repr(e.get("input"))
    return field, e.get("input"), msg, f"field '{field}': value {value}: {msg}"


def describe_validation_error(err: ValidationError) -> list[str]:
    """Turn pydantic's errors into "field 'x': value V: rule" lines."""
    return [_problem(e)[3] for e in err.errors(include_url=False)]


def first_problem(err: ValidationError) -> dict:
    """The first problem as data, `{"field", "value", "why"}` (for a refusal's reply data)."""
    field, value, why, _ = _problem(err.errors(include_url=False)[0])
    return {"field": field, "value": value, "why": why}


def load_json_object(text: str | bytes, source: str) -> dict:
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(source, [f"not valid JSON: {exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(source, [f"must be a JSON object, found {type(data).__name__}"])
    return data


def strip_comments(data: dict) -> dict:
    return {k: v for k, v in data.items() if k not in COMMENT_KEYS}
