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


def describe_validation_error(err: ValidationError) -> list[str]:
    """Turn pydantic's errors into "field 'x': value V: rule" lines."""
    lines = []
    for e in err.errors(include_url=False):
        msg = e["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        ctx = e.get("ctx") or {}
        if e["type"] == "too_short":
            msg = f"must have at least {ctx.get('min_length')} item(s)"
        elif e["type"] == "too_long":
            msg = f"must have at most {ctx.get('max_length')} items"
        msg = msg.replace("Input should be", "must be")
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown field '{_loc(e['loc'])}' (not part of the format; check the spelling)")
            continue
        if e["type"] == "missing":
            lines.append(f"field '{_loc(e['loc'])}' is required")
            continue
        try:
            value = _short(e.get("input"))
        except (TypeError, ValueError):
            value = repr(e.get("input"))
        lines.append(f"field '{_loc(e['loc'])}': value {value}: {msg}")
    return lines


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
