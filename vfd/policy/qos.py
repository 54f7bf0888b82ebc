"""Per-traffic-class queue shares: what the NIC is given once admission has accepted them.

The original normalised, after every VF change on a QoS PF, each TC's shares over the live VFs so
that they total exactly 100: scale by 100/sum, truncate, then add 1 to VFs in slot order until the
total is 100 (reference 8.1). With oversubscription allowed this is what turns 50 + 50 + 20 into
42 + 42 + 16.
"""

from __future__ import annotations


def normalise_shares(requested: dict[int, dict[int, int]], tcs: list[int]) -> dict[int, dict[int, int]]:
    """`requested[vfid][tc]` -> `normalised[vfid][tc]`, each TC summing to 100 over the VFs."""
    out: dict[int, dict[int, int]] = {vfid: {} for vfid in requested}
    order = sorted(requested)
    for tc in tcs:
        total = sum(requested[v].get(tc, 0) for v in order)
        if total <= 0:
            for v in order:
                out[v][tc] = 0
            continue
        scaled = {v: requested[v].get(tc, 0) * 100 // total for v in order}
        missing = 100 - sum(scaled.values())
        for v in order:
            if missing <= 0:
                break
            if requested[v].get(tc, 0) > 0:
                scaled[v] += 1
                missing -= 1
        for v in order:
            out[v][tc] = scaled[v]
    return out
