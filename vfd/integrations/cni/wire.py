"""The framing of vfd's CNI socket: what the static front end (tools/cni-frontend/vfd-cni.c) sends to the
daemon and what it gets back (docs/kubernetes.md, "The CNI socket"). Binary and length-prefixed, so
that the front end needs no JSON parser; every size is bounded on both sides.

    request  "VCQ1" u32 len | u32 count | count x (u32 n, n bytes "NAME=value") | u32 n, n bytes stdin
    reply    "VCR1" u32 len | i32 exit code | u32 n, n bytes stdout | u32 n, n bytes stderr

Integers are big-endian; `len` counts the bytes after the 8-byte header. The environment carries
only ENV_NAMES (the CNI variables and the few of vfd's the plugin honours), each at most once.
"""

from __future__ import annotations

import struct

from vfd.integrations.cni.errors import INVALID_ENV, INVALID_NETCONF

REQUEST_MAGIC = b"VCQ1"
REPLY_MAGIC = b"VCR1"
HEADER = struct.Struct(">4sI")
ENV_NAMES = ("CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH",
             "VFD_CONF", "VFD_CNI_SYSFS")
MAX_VAR = 16 << 10              # one "NAME=value"
MAX_STDIN = 1 << 20             # the netconf (with a prevResult)
MAX_REQUEST = MAX_STDIN + len(ENV_NAMES) * (4 + MAX_VAR) + 8
MAX_STDOUT = 1 << 20
MAX_STDERR = 64 << 10
MAX_REPLY = MAX_STDOUT + MAX_STDERR + 12


class WireError(Exception):
    """A request that cannot be served: `code` is the CNI error code it is answered with."""

    def __init__(self, code: int, msg: str):
        super().__init__(msg)
        self.code = code
        self.msg = msg


def encode_request(environ: dict, stdin: bytes) -> bytes:
    env = [f"{k}={v}".encode() for k, v in environ.items() if k in ENV_NAMES]
    body = struct.pack(">I", len(env)) + b"".join(struct.pack(">I", len(e)) + e for e in env)
    body += struct.pack(">I", len(stdin)) + stdin
    return HEADER.pack(REQUEST_MAGIC, len(body)) + body


def check_header(head: bytes) -> int:
    """The payload length announced by a request's 8-byte header; WireError if it is not one of ours."""
    magic, length = HEADER.unpack(head)
    if magic != REQUEST_MAGIC:
        raise WireError(INVALID_ENV, f"not a vfd-cni request (starts with {magic!r}, expected {REQUEST_MAGIC!r}): "
                                     "use the vfd-cni front end of the same vfd version")
    if length > MAX_REQUEST:
        raise WireError(INVALID_NETCONF, f"request of {length} bytes is over the limit of {MAX_REQUEST} "
                                         f"(the network configuration may be at most {MAX_STDIN} bytes)")
    return length


def decode_request(body: bytes) -> tuple[dict, bytes]:
    """(environment, stdin) of a request's payload; WireError naming what is wrong."""
    off = 0

    def take(n: int, what: str) -> bytes:
        nonlocal off
        if off + n > len(body):
            raise WireError(INVALID_ENV, f"truncated request: {what} needs {n} bytes at offset {off}, "
                                         f"the request has {len(body)}")
        off += n
        return body[off - n:off]

    (count,) = struct.unpack(">I", take(4, "the variable count"))
    if count > len(ENV_NAMES):
        raise WireError(INVALID_ENV, f"request carries {count} environment variables; at most {len(ENV_NAMES)} "
                                     f"({', '.join(ENV_NAMES)})")
    env: dict[str, str] = {}
    for i in range(count):
        (n,) = struct.unpack(">I", take(4, f"the length of variable {i}"))
        if n > MAX_VAR:
            raise WireError(INVALID_ENV, f"environment variable {i} is {n} bytes; at most {MAX_VAR}")
        raw = take(n, f"variable {i}")
        try:
            name, sep, value = raw.decode().partition("=")
        except UnicodeDecodeError:
            raise WireError(INVALID_ENV, f"environment variable {i} is not valid UTF-8") from None
        if not sep or name not in ENV_NAMES:
            raise WireError(INVALID_ENV, f"environment variable {name[:40]!r} is not one vfd-cni passes "
                                         f"({', '.join(ENV_NAMES)})")
        if name in env:
            raise WireError(INVALID_ENV, f"environment variable {name} is given twice")
        if "\0" in value:
            raise WireError(INVALID_ENV, f"environment variable {name} contains a NUL byte")
        env[name] = value
    (n,) = struct.unpack(">I", take(4, "the length of stdin"))
    if n > MAX_STDIN:
        raise WireError(INVALID_NETCONF, f"the network configuration is {n} bytes; at most {MAX_STDIN}")
    stdin = take(n, "stdin")
    if off != len(body):
        raise WireError(INVALID_ENV, f"{len(body) - off} bytes after the request's end")
    return env, stdin


def encode_reply(rc: int, stdout: bytes, stderr: bytes) -> bytes:
    body = struct.pack(">iI", rc, len(stdout)) + stdout + struct.pack(">I", len(stderr)) + stderr
    return HEADER.pack(REPLY_MAGIC, len(body)) + body


def decode_reply(data: bytes) -> tuple[int, bytes, bytes]:
    """(exit code, stdout, stderr) of a whole reply (tests' client; the front end parses it in C)."""
    magic, length = HEADER.unpack_from(data)
    if magic != REPLY_MAGIC or length != len(data) - HEADER.size:
        raise ValueError(f"not a whole vfd-cni reply: {data[:16]!r}... ({len(data)} bytes)")
    rc, n = struct.unpack_from(">iI", data, 8)
    out = data[16:16 + n]
    (m,) = struct.unpack_from(">I", data, 16 + n)
    return rc, out, data[20 + n:20 + n + m]
