"""Text that came from outside vfd, made safe to print: one escaping rule for replies and logs.

A reply or log line is one line: a control character (newline, carriage return, escape) or a
Unicode line separator in a port name, a file name or a config value must not start a forged
line or move a terminal's cursor. Such characters are shown as Python escapes (\\n, \\x1b, \\u2028).
"""

from __future__ import annotations


def escape(text: str) -> str:
    """`text` with every non-printable character (except the space) written as an escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def shown(value: object, limit: int = 80) -> str:
    """A request's value as it appears in a message: quoted, escaped, and cut at `limit` characters."""
    text = repr(value) if not isinstance(value, str) else "'" + escape(value) + "'"
    return text if len(text) <= limit else text[:limit - 4] + "...'"
