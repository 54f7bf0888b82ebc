"""Logging through the standard `logging` module: daily files in log_dir (kept log_keep days) or stderr."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import time

# The original's verbosity numbers: 0 errors and warnings, 1 normal, 2 detail, 3-5 debug.
LEVELS = {0: logging.WARNING, 1: logging.INFO}


def level_for(n: int) -> int:
    return LEVELS.get(n, logging.DEBUG if n >= 2 else logging.WARNING)


class _Formatter(logging.Formatter):
    """The original's line shape: "<unix seconds> <YYYY/MM/DD HH:MM:SS>Z [level] message". The time
    part changes once a second and is formatted once a second (gmtime + strftime per line were a
    tenth of a change's logging)."""

    def __init__(self) -> None:
        super().__init__()
        self._second, self._stamp = -1, ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, f"{second} {time.strftime('%Y/%m/%d %H:%M:%S', time.gmtime(second))}Z"
        return f"{self._stamp} [{record.levelname}] {record.getMessage()}" + \
            (("\n" + self.formatException(record.exc_info)) if record.exc_info else "")


class JsonFormatter(logging.Formatter):
    """log_format "json": one object per line; pf, vf, port and rule given through `extra=` are keys."""

    def format(self, record: logging.LogRecord) -> str:
        from vfd.daemon.events import STRUCTURED
        out = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        out.update({k: getattr(record, k) for k in STRUCTURED if hasattr(record, k)})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def build_handler(log_dir: str, log_keep: int, log_format: str = "text") -> logging.Handler:
    """The handler for these settings; raises OSError when log_dir cannot be used (nothing changed)."""
    if log_dir.strip() == "stderr":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    else:
        os.makedirs(log_dir.strip(), exist_ok=True)
        handler = logging.handlers.TimedRotatingFileHandler(
            os.path.join(log_dir.strip(), "vfd.log"), when="midnight", utc=True,
            backupCount=log_keep if log_keep > 0 else 0)
    handler.setFormatter(JsonFormatter() if log_format == "json" else _Formatter())
    return handler


def skip_unused_record_fields() -> None:
    """vfd's lines carry time, level, logger and message only. The standard module otherwise walks
    the stack for the caller's file and line and looks up thread and process names for every
    record: a third of a line's cost, and two log lines are part of every change (the Python
    documentation's "Optimization" section of the logging HOWTO names these switches)."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def setup_logging(log_dir: str, log_keep: int, level: int, log_format: str = "text") -> logging.Handler:
    """Swap the "vfd" logger to a new handler. The new one is built first: when log_dir is unusable
    this raises OSError and the old handlers stay (a SIGHUP must never leave vfd without its log)."""
    handler = build_handler(log_dir, log_keep, log_format)
    skip_unused_record_fields()
    root = logging.getLogger("vfd")
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.addHandler(handler)
    root.setLevel(level_for(level))
    root.propagate = False
    return handler
