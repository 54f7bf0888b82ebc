"""The protocol floor: the smallest Python process that answers vfd's FIFO protocol.

It reads requests from a FIFO and answers every one with a fixed OK reply on the client's FIFO:
no config, no validation, no state. Latency measured against it is what any Python daemon pays
for the process, the pipes and the JSON; vfd's latency is compared to it in the same run.
"""

import json
import os
import sys

fifo = sys.argv[1]
if not os.path.exists(fifo):
    os.mkfifo(fifo, 0o620)
rfd = os.open(fifo, os.O_RDONLY)
keep = os.open(fifo, os.O_WRONLY)
dec = json.JSONDecoder()
buf = ""
while True:
    buf += os.read(rfd, 65536).decode()
    while buf.strip():
        try:
            req, end = dec.raw_decode(buf.lstrip())
        except ValueError:
            break
        buf = buf.lstrip()[end:]
        p = req["params"]
        body = json.dumps({"action": "response", "vfd_rid": p.get("vfd_rid", "not-supplied"), "state": "OK",
                           "msg": ["pong"]})
        fd = os.open(p["r_fifo"], os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, (body + "\n@eom@\n").encode())
        os.close(fd)
