"""Logging: the original's line shape, a file per day in log_dir, or stderr."""

import logging
import logging.handlers
import re

from vfd.daemon.logsetup import level_for, setup_logging


def test_file_logging_shape_and_rotation_policy(tmp_path):
    handler = setup_logging(str(tmp_path), 7, 1)
    try:
        assert isinstance(handler, logging.handlers.TimedRotatingFileHandler)
        assert handler.backupCount == 7 and handler.when == "MIDNIGHT" and handler.utc
        logging.getLogger("vfd.test").info("hello %s", "world")
        handler.flush()
        line = (tmp_path / "vfd.log").read_text().strip()
        assert re.fullmatch(r"\d{10} \d{4}/\d\d/\d\d \d\d:\d\d:\d\dZ \[INFO\] hello world", line), line
        logging.getLogger("vfd.test").debug("hidden at level 1")
        handler.flush()
        assert "hidden" not in (tmp_path / "vfd.log").read_text()
    finally:
        setup_logging("stderr", 0, 0)


def test_levels():
    assert [level_for(n) for n in (0, 1, 2, 5)] == [logging.WARNING, logging.INFO, logging.DEBUG, logging.DEBUG]
    assert isinstance(setup_logging("stderr", 0, 0), logging.StreamHandler)


def test_the_time_part_follows_each_records_own_second():
    """The stamp is formatted once a second and reused: a record of another second (later or,
    from another thread, earlier) still carries its own time."""
    from vfd.daemon.logsetup import build_handler
    fmt = build_handler("stderr", 0).formatter
    lines = []
    for created in (1796177969.2, 1796177969.9, 1796177970.1, 1796177969.5):
        rec = logging.LogRecord("vfd.test", logging.INFO, __file__, 1, "m %d", (int(created * 10) % 10,), None)
        rec.created = created
        lines.append(fmt.format(rec))
    assert lines == ["1796177969 2026/12/02 02:19:29Z [INFO] m 2", "1796177969 2026/12/02 02:19:29Z [INFO] m 9",
                     "1796177970 2026/12/02 02:19:30Z [INFO] m 1", "1796177969 2026/12/02 02:19:29Z [INFO] m 5"]
