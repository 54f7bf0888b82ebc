"""The iplex <-> vfd wire format over named pipes, wire-compatible with the original VFd.

Request (one JSON object written to the request FIFO):
  {"action": "add", "params": {"filename": ..., "resource": ..., "output": ..., "loglevel": 0,
                               "r_fifo": "<reply fifo>", "vfd_rid": "..."}}
Reply (written to r_fifo): one JSON object, then a line "@eom@".
Unlike the original, every string is JSON-escaped, so replies are always valid JSON.
Kept free of heavy imports: iplex loads this on every run.
"""

from __future__ import annotations

import json

EOM = "@eom@"
ACTIONS = ("add", "delete", "update", "status", "show", "ping", "verbose", "dump", "mirror", "export", "cpu_alarm",
           "clear_stats")
MAX_REQUEST_BYTES = 64 * 1024      # a request larger than this is garbage by definition
PIPE_BUF = 4096                     # writes up to this size are atomic on a pipe


def encode_request(action: str, r_fifo: str, **params) -> bytes:
    body = {"action": action, "params": {"r_fifo": r_fifo, **{k: v for k, v in params.items() if v is not None}}}
    return (json.dumps(body) + "\n\n").encode()


def encode_response(rid: str, ok: bool, lines: list[str], data: dict | None = None) -> bytes:
    """`msg` is prose for people (and the original's clients); `data`, when present, is the same
    answer as JSON for programs (docs/iplex.md): integrations read `data`, never `msg`."""
    head = json.dumps({"action": "response", "vfd_rid": rid, "state": "OK" if ok else "ERROR"})[:-1]
    msg = ",\n".join(json.dumps(line) for line in lines if line is not None)
    extra = f', "data": {json.dumps(data)}' if data is not None else ""
    return f'{head}, "msg": [\n{msg}\n]{extra}}}\n{EOM}\n'.encode()


def decode_response(text: str) -> dict:
    """Parse what arrived on a reply FIFO (everything before the @eom@ line)."""
    body = text.rsplit(EOM, 1)[0]
    data = json.loads(body)
    if not isinstance(data, dict) or data.get("action") != "response":
        raise ValueError("not a vfd response")
    return data
