"""The iplex <-> vfd wire format over named pipes, wire-compatible with the original VFd.

Request (one JSON object written to the request FIFO):
  {"action": "add", "params": {"filename": ..., "resource": ..., "loglevel": 0,
                               "r_fifo": "<reply fifo>", "vfd_rid": "..."}}
Reply (written to r_fifo): one JSON object, then a line "@eom@".
Unlike the original, every string is JSON-escaped, so replies are always valid JSON.
Kept free of heavy imports: iplex loads this on every run.
"""

from __future__ import annotations

import json
import re
from collections import namedtuple

from vfd.text import escape

EOM = "@eom@"
ACTIONS = ("add", "delete", "update", "status", "show", "ping", "verbose", "dump", "mirror", "export", "cpu_alarm",
           "clear_stats", "watch")
MAX_REQUEST_BYTES = 64 * 1024      # a request larger than this is garbage by definition
MAX_DEPTH = 32                      # nesting deeper than this is refused before any JSON parsing
PIPE_BUF = 4096                     # writes up to this size are atomic on a pipe
LOG_LEVELS = range(0, 6)            # the original's 0..5


def encode_request(action: str, r_fifo: str | None, **params) -> bytes:
    head = {"r_fifo": r_fifo} if r_fifo is not None else {}
    body = {"action": action, "params": {**head, **{k: v for k, v in params.items() if v is not None}}}
    return (json.dumps(body) + "\n\n").encode()


def encode_response(rid: str, ok: bool, lines: list[str], data: dict | None = None) -> bytes:
    """`msg` is prose for people (and the original's clients); `data`, when present, is the same
    answer as JSON for programs (docs/iplex.md): integrations read `data`, never `msg`."""
    head = f'{{"action": "response", "vfd_rid": {json.dumps(rid)}, "state": "{"OK" if ok else "ERROR"}"'
    msg = ",\n".join(json.dumps(line) for line in lines if line is not None)
    extra = f', "data": {json.dumps(data)}' if data is not None else ""
    return f'{head}, "msg": [\n{msg}\n]{extra}}}\n{EOM}\n'.encode()


_RESPONSE_START = re.compile(r'\{"action": "response"')


def decode_responses(text: str) -> list[dict]:
    """Every complete reply in what arrived on a reply FIFO (each one ends with an @eom@ line).
    A segment that is not a reply (or is spoiled by interleaved bytes) is skipped, not fatal: the
    caller picks its own reply by `vfd_rid`."""
    out = []
    for seg in text.split(f"\n{EOM}")[:-1]:
        seg = seg.strip()
        for start in [0] + [m.start() for m in _RESPONSE_START.finditer(seg, 1)]:
            try:
                data = json.loads(seg[start:])
            except ValueError:
                continue
            if isinstance(data, dict) and data.get("action") == "response":
                out.append(data)
                break
    return out


def decode_response(text: str) -> dict:
    """Parse one reply (everything before the @eom@ line)."""
    body = text.rsplit(EOM, 1)[0]
    data = json.loads(body)
    if not isinstance(data, dict) or data.get("action") != "response":
        raise ValueError("not a vfd response")
    return data


# ---- printing what came from outside ------------------------------------------------------------
def printable(text: object, limit: int | None = None) -> str:
    """`text` safe to put in one log or output line (the escaping rule of vfd/text.py)."""
    s = text if isinstance(text, str) else str(text)
    if limit is not None and len(s) > limit:
        s = s[:limit] + "..."
    return escape(s)


def printable_bytes(data: bytes, limit: int = 80) -> str:
    """The first bytes of a raw request, for the log (invalid UTF-8 shown as \\x..)."""
    head = data[:limit].decode("utf-8", "backslashreplace")
    return printable(head) + ("..." if len(data) > limit else "")


# ---- framing the request FIFO's byte stream ----------------------------------------------------
# Requests from many clients arrive back to back on one pipe (each written atomically), with or
# without separators, possibly pretty-printed. A request is one balanced {...} of at most
# MAX_REQUEST_BYTES, nested at most MAX_DEPTH deep; anything else is refused and the framer moves
# on to the next thing that starts like a request.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]]|"', re.S)
_REQUEST_START = re.compile(r'\{\s*"(?:action|params)"\s*:')
_WS = " \t\r\n\0"
_DONE, _MORE, _DEEP, _BIG = "done", "more", "deep", "big"
_RESYNC_TRIES = 64


class Framed(namedtuple("Framed", "raw request error", defaults=(None, None))):
    """One unit cut from the stream: `raw` bytes, and the request (a dict) or why they were refused
    (`error`). Not a dataclass: iplex (and vfd-cni through it) would import dataclasses, inspect,
    ast, dis and tokenize for this one class (each a few file operations, milliseconds each under emulation)."""
    __slots__ = ()


def _scan(t: str, i: int) -> tuple[str, int]:
    """Find the end of the object starting at t[i] == "{" without parsing it (so a deep bomb
    never reaches the JSON parser's recursion)."""
    depth = 0
    stop = min(len(t), i + MAX_REQUEST_BYTES)
    for m in _TOKEN.finditer(t, i, stop):
        c = m.group()
        if c == '"':                        # a string not closed (yet)
            break
        if len(c) > 1:
            continue
        if c in "{[":
            depth += 1
            if depth > MAX_DEPTH:
                return _DEEP, m.end()
        else:
            depth -= 1
            if depth == 0:
                return _DONE, m.end()
    return (_BIG if len(t) - i > MAX_REQUEST_BYTES else _MORE), stop


_DECODER = json.JSONDecoder()


def _whole(t: str, i: int, ascii_only: bool) -> tuple[dict, int] | None:
    """The common case in one pass of the C parser: an ASCII stream with too few brackets for any
    nesting past MAX_DEPTH, holding a complete object at t[i]: (the object, its end). None sends the
    bytes through _scan and _parse, which say exactly what is wrong with them."""
    if not ascii_only or t.count("{", i) + t.count("[", i) > MAX_DEPTH:
        return None
    try:
        obj, end = _DECODER.raw_decode(t, i)
    except ValueError:
        return None
    return (obj, end) if isinstance(obj, dict) else None


def _parse(raw: bytes) -> Framed:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Framed(raw, error=f"not valid UTF-8 (byte {exc.start})")
    try:
        obj = json.loads(text)
    except ValueError as exc:
        return Framed(raw, error=f"not valid JSON: {getattr(exc, 'msg', exc)}")
    if not isinstance(obj, dict):
        return Framed(raw, error="not a JSON object")
    return Framed(raw, request=obj)


def _next_request(t: str, start: int) -> int | None:
    """Where the next complete request begins after `start` (None: none yet)."""
    for n, m in enumerate(_REQUEST_START.finditer(t, start)):
        if n >= _RESYNC_TRIES:
            break
        status, end = _scan(t, m.start())
        if status == _DONE:
            try:
                obj = json.loads(t[m.start():end])
            except ValueError:
                continue
            if isinstance(obj, dict) and "action" in obj:
                return m.start()
    return None


def frame(buf: bytes) -> tuple[list[Framed], bytes]:
    """Cut `buf` into requests and refused pieces; returns them and the unfinished rest.

    The rest is an unfinished request with nothing complete after it: the caller waits for more
    bytes and drops it (`drop_unfinished`) when none come."""
    t = buf.decode("latin-1")           # one char per byte: positions in t are byte offsets
    ascii_only = buf.isascii()          # then t is also the UTF-8 text
    out: list[Framed] = []
    i, n = 0, len(t)
    while True:
        while i < n and t[i] in _WS:
            i += 1
        if i >= n:
            break
        if t[i] != "{":
            j = t.find("{", i)
            j = n if j < 0 else j
            out.append(Framed(buf[i:j], error="not a JSON object"))
            i = j
            continue
        whole = _whole(t, i, ascii_only) if n - i <= MAX_REQUEST_BYTES else None
        if whole is not None:
            out.append(Framed(buf[i:whole[1]], request=whole[0]))
            i = whole[1]
            continue
        status, end = _scan(t, i)
        if status == _DONE:
            out.append(_parse(buf[i:end]))
            i = end
            continue
        k = _next_request(t, i + 1)
        reason = {_DEEP: f"nested deeper than {MAX_DEPTH} levels",
                  _BIG: f"larger than {MAX_REQUEST_BYTES} bytes",
                  _MORE: "unfinished (another request follows it)"}[status]
        if k is not None:
            out.append(Framed(buf[i:k], error=reason))
            i = k
            continue
        if status == _MORE:
            break                       # maybe still being written
        out.append(Framed(buf[i:], error=reason))
        i = n
    return out, buf[i:]


def drop_unfinished(buf: bytes) -> tuple[Framed, bytes]:
    """An unfinished request that got no more bytes in time: refuse it, keep what may follow it."""
    t = buf.decode("latin-1")
    m = _REQUEST_START.search(t, 1)
    cut = m.start() if m else len(buf)
    return Framed(buf[:cut], error="unfinished (no more bytes came)"), buf[cut:]
