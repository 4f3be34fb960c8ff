"""The wake-to-playable breakdown, read from a twin's events (used by `make demo` and
`make bench`): each step of a wake with the time it happened, from the first lookup on."""

from __future__ import annotations

from typing import Any

STEPS = [
    ("lookup", "player's first lookup (answer 0.0.0.0)"),
    ("query_log", "query-log line written"),
    ("wake_call", "wake function called (filter matched)"),
    ("capacity", "desired capacity 1 (SetDesiredCapacity returned)"),
    ("told", "players told it is waking (the webhook's post returned)"),
    ("launch", "instance launched (network up, systemd starts)"),
    ("user_data", "user-data starts (system booted)"),
    ("installed", "agent installed (sha256 ok), user-data done"),
    ("agent_up", "agent started"),
    ("dns", "DNS points at the instance"),
    ("resolved", "player's lookup gets the address"),
    ("connected", "player connected (the game answered)"),
    ("counted", "first player packets counted by the agent"),
]


def _first(events: list[dict], pred: Any, after: float) -> float | None:
    ts = [e["t"] for e in events if e["t"] >= after and pred(e)]
    return min(ts) if ts else None


def breakdown(events: list[dict], after: float = 0.0) -> list[tuple[str, str, float | None]]:
    """[(key, label, seconds since the first lookup or None)] for the first wake after `after`."""
    ev = sorted(events, key=lambda e: e["t"])
    t0 = _first(ev, lambda e: e["source"] == "player" and e["event"] == "lookup", after)
    if t0 is None:
        return [(k, label, None) for k, label in STEPS]
    woken = next((e for e in ev if e["t"] >= t0 and e["event"] == "wake_invoked" and e.get("result") == "woken"), None)
    launch = _first(ev, lambda e: e["event"] == "instance_started", t0)
    dns = _first(ev, lambda e: e["source"] == "agent" and e["event"] == "dns_updated", t0)
    marks = {
        "lookup": t0,
        "query_log": _first(ev, lambda e: e["event"] == "query_logged", t0),
        "wake_call": woken["t"] if woken else None,
        # The function prints "Woke" once SetDesiredCapacity returned, then tells the players.
        "capacity": _first(ev, lambda e: e["event"] == "function_printed" and e["line"].startswith("Woke "), t0)
        or (woken["t"] + woken["duration_ms"] / 1000 if woken else None),
        "told": _first(ev, lambda e: e["event"] == "function_printed" and e["line"].startswith("Told the players"), t0),
        "launch": launch,
        "user_data": _first(ev, lambda e: e["event"] == "user_data_output" and "running user-data" in e["message"], t0),
        "installed": _first(ev, lambda e: e["event"] == "user_data_output" and "exited with status 0" in e["message"], t0),
        "agent_up": _first(ev, lambda e: e["source"] == "agent" and e["event"] == "agent_started", t0),
        "dns": dns,
        "resolved": _first(ev, lambda e: e["source"] == "player" and e["event"] == "resolved", t0),
        "connected": _first(ev, lambda e: e["source"] == "player" and e["event"] == "connected", t0),
        "counted": _first(ev, lambda e: e["source"] == "agent" and e["event"] == "sample"
                          and int(e.get("packets", 0) or 0) > 0, dns or t0),
    }
    return [(k, label, None if marks[k] is None else marks[k] - t0) for k, label in STEPS]


def render(rows: list[tuple[str, str, float | None]]) -> list[str]:
    """The steps in the order they happened (the players' notice runs beside the boot)."""
    out, prev = [], 0.0
    for _, label, t in sorted(rows, key=lambda r: (r[2] is None, r[2] or 0.0)):
        if t is None:
            out.append(f"  {'-':>8}  {'':>8}  {label}")
            continue
        out.append(f"  {t:7.2f}s  {'+' + format(t - prev, '.2f'):>8}  {label}")
        prev = t
    return out
