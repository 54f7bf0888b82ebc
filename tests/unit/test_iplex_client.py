"""iplex's client side (vfd/iplex.py), where it matters beyond the iplex process."""

from __future__ import annotations

import os


def test_reply_wait_takes_descriptors_above_fd_setsize():
    """iplex's reply wait runs inside the daemon too (CNI commands), whose descriptor limit is raised:
    a reply on descriptor 1024 or above is still read (select.select cannot take it)."""
    import resource
    from vfd import iplex
    from vfd.protocol import encode_response

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1200:
        import pytest
        pytest.skip(f"descriptor limit {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    r, w = os.pipe()
    high_r = os.dup2(r, 1100)
    try:
        os.write(w, encode_response("rid-1", True, ["fine"]))
        reply = iplex._read_reply(high_r, "rid-1", 5)
        assert reply["state"] == "OK" and reply["msg"] == ["fine"]
    finally:
        for fd in (r, w, high_r):
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
