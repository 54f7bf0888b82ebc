"""Attack tests of the request boundary: a real root daemon on sim PFs, attacked by `nobody`, a
member of its fifo_group (`nogroup`), as in docs/openstack.md. The suite runs as root; the agent's
steps run in a subprocess that has switched user (setpriv)."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.vfdlab import VfdProcess

AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--init-groups"]


def agent(code: str, *args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run Python `code` as nobody:nogroup (argv[1:] = args)."""
    return subprocess.run(AS_NOBODY + [sys.executable, "-c", code, *args], input=input, capture_output=True,
                          timeout=timeout)


WRITE = """
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
data = sys.stdin.buffer.read()
while data:
    data = data[os.write(fd, data):]
"""


def agent_write(path, payload: bytes) -> None:
    """The agent writes raw bytes to the request FIFO (it may: group nogroup, mode 0620)."""
    r = agent(WRITE, str(path), input=payload)
    assert r.returncode == 0, r.stderr.decode()


@pytest.fixture
def lab():
    """Factory: a daemon with fifo_group nogroup in a directory nobody can traverse; stopped at teardown."""
    if os.geteuid() != 0:
        pytest.skip("the attack tests switch user: run as root")
    made = []
    bases = []

    def make(start=True, **extra):
        base = Path(tempfile.mkdtemp(prefix="vfdsec-"))
        os.chmod(base, 0o755)
        bases.append(base)
        d = VfdProcess(base, **{"fifo_group": "nogroup", **extra})
        made.append(d)
        return d.start() if start else d
    yield make
    for d in made:
        d.stop()
    for b in bases:
        shutil.rmtree(b, ignore_errors=True)
