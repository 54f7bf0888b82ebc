"""MAC address parsing: strict, case-insensitive, one canonical spelling (lowercase, colons)."""

from __future__ import annotations

import random
import re

_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")


def parse_mac(text: str) -> str:
    """Return the canonical form of `text` or raise ValueError saying what is wrong.

    Accepts `aa:bb:cc:dd:ee:ff` and `aa-bb-cc-dd-ee-ff` (OpenStack allowed both), any case.
    """
    if not isinstance(text, str) or not _MAC_RE.match(text):
        raise ValueError("a MAC address must be six two-digit hex groups separated by ':' or '-'")
    return text.replace("-", ":").lower()


def is_unicast(mac: str) -> bool:
    return int(mac[0:2], 16) & 1 == 0


def is_zero(mac: str) -> bool:
    return mac == "00:00:00:00:00:00"


def parse_unicast_mac(text: str) -> str:
    mac = parse_mac(text)
    if not is_unicast(mac):
        raise ValueError("must be a unicast MAC (the first octet's lowest bit must be 0)")
    if is_zero(mac):
        raise ValueError("must not be the all-zero MAC")
    return mac


def random_local_mac(rng: random.Random | None = None) -> str:
    """A random locally administered unicast MAC, as given to a VF when its config is deleted."""
    r = rng or random.SystemRandom()
    octets = [r.randrange(256) for _ in range(6)]
    octets[0] = (octets[0] & 0xFC) | 0x02
    return ":".join(f"{o:02x}" for o in octets)
