"""Many clients at once through the real request FIFO (issue 3): nothing lost, nothing crossed."""

import json
import subprocess
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from tests.vfdlab import BIN, sim_pf, vf_config

PFS = [f"0000:{0x10 + i:02x}:00.0" for i in range(2)]


def test_64_clients_add_64_vfs_at_once(make_vfd):
    d = make_vfd([sim_pf(pf, 32, "i40e") for pf in PFS])
    ports = []
    for n in range(64):
        pf, vf = PFS[n // 32], n % 32
        port = f"port{n}"
        d.drop(port, vf_config(pf, vf, vlans=[100 + n], macs=[f"02:00:00:00:{n // 256:02x}:{n % 256:02x}"],
                               name=port))
        ports.append(port)
    procs = [subprocess.Popen([str(BIN / "iplex"), "--conf", str(d.conf), "add", p], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for p in ports]
    results = [(p.wait(60), p.stdout.read(), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _, _ in results), [r for r in results if r[0]]
    assert sorted(out.strip() for _, out, _ in results) == sorted(f"vf added successfully: {p}" for p in ports)
    assert len(d.live()) == 64
    for n in range(64):
        vf = d.vf_state(n % 32, PFS[n // 32])
        assert vf["vlans"] == [100 + n] and vf["mac"] == f"02:00:00:00:{n // 256:02x}:{n % 256:02x}"


def test_16_clients_race_for_one_mac_exactly_one_wins(make_vfd):
    d = make_vfd([sim_pf(PFS[0], 16, "i40e")])
    for n in range(16):
        d.drop(f"p{n}", vf_config(PFS[0], n, macs=["02:aa:bb:cc:dd:ee"], name=f"p{n}"))
    procs = [subprocess.Popen([str(BIN / "iplex"), "--conf", str(d.conf), "add", f"p{n}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in range(16)]
    codes = [p.wait(60) for p in procs]
    errs = [p.stderr.read() for p in procs]
    assert codes.count(0) == 1 and codes.count(1) == 15
    assert all("rule mac_unique" in e for e, c in zip(errs, codes) if c == 1)
    owners = [n for n in range(16) if d.vf_state(n, PFS[0])["mac"] == "02:aa:bb:cc:dd:ee"]
    assert len(owners) == 1 and len(d.live()) == 1


def test_readers_get_their_own_answers_while_adds_run(make_vfd):
    d = make_vfd([sim_pf(PFS[0], 32, "i40e")])
    for n in range(32):
        d.drop(f"p{n}", vf_config(PFS[0], n, vlans=[n + 1], name=f"p{n}"))
    errors: list[str] = []
    lock = threading.Lock()

    def reader(kind: int) -> None:
        for i in range(15):
            rid = uuid.uuid4().hex
            action = "ping" if (kind + i) % 2 else "show"
            try:
                reply = d.request(action, timeout=20, reply_tag=f"r{kind}-{i}", vfd_rid=rid, resource="all")
            except Exception as exc:  # noqa: BLE001
                with lock:
                    errors.append(f"{action}: {exc}")
                continue
            ok = reply["vfd_rid"] == rid and reply["state"] == "OK" and (
                reply["msg"][0].startswith("pong") if action == "ping" else reply["msg"][0].startswith("PF/VF"))
            if not ok:
                with lock:
                    errors.append(f"{action} got {json.dumps(reply)[:200]}")

    def adder(n: int) -> None:
        reply = d.request("add", timeout=20, reply_tag=f"a{n}", filename=f"p{n}", vfd_rid=f"add-{n}")
        if reply["vfd_rid"] != f"add-{n}" or reply["state"] != "OK" or reply["msg"] != [f"vf added successfully: p{n}"]:
            with lock:
                errors.append(f"add p{n}: {reply}")

    with ThreadPoolExecutor(max_workers=48) as pool:
        futures = [pool.submit(reader, k) for k in range(16)] + [pool.submit(adder, n) for n in range(32)]
        for f in futures:
            f.result(timeout=120)
    assert errors == []
    assert len(d.live()) == 32


def test_client_that_never_reads_a_large_reply_does_not_block_others(make_vfd):
    """A reply larger than the pipe buffer (64 KiB) to a client that never reads: the daemon keeps
    serving everyone else and drops that reply after its deadline."""
    import os
    import time
    d = make_vfd([sim_pf(f"0000:{0x50 + i:02x}:00.0", 128, "i40e") for i in range(20)])  # ~110 KB reply
    stuck = d.fifo.parent / "stuck_reader"
    os.mkfifo(stuck)
    rfd = os.open(stuck, os.O_RDONLY | os.O_NONBLOCK)          # open, but never read
    try:
        fd = os.open(d.fifo, os.O_WRONLY)
        os.write(fd, json.dumps({"action": "show", "params": {"r_fifo": str(stuck), "resource": "pci"}}).encode())
        os.close(fd)
        t = time.monotonic()
        for _ in range(5):
            assert d.request("ping", timeout=5)["state"] == "OK"
        assert time.monotonic() - t < 3
        time.sleep(5.5)
        assert "not read within" in d.log_text()
        assert d.request("ping", timeout=5)["state"] == "OK"
    finally:
        os.close(rfd)
