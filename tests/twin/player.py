#!/usr/bin/env python3
"""A player, run inside the twin's player network namespace (tests/twin/twin.py starts it).

It does what a game client does with a server name: it resolves the name through the twin's DNS
server (as its own resolver, so every lookup reaches the authoritative server), retries every
second while the answer is the placeholder 0.0.0.0, then sends game packets to the address until
the server answers ("connected"), and plays for a while. Every step is one JSON line on stdout.

Everything is bounded: at most --give-up seconds of lookups and connecting, at most
--play-seconds of playing at --rate packets per second, all to the address the twin's DNS gave.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import time

from dnslib import QTYPE, DNSRecord


def emit(event: str, t: float | None = None, **fields: object) -> None:
    print(json.dumps({"event": event, "t": time.time() if t is None else t, **fields}), flush=True)


def mixed_case(name: str) -> str:
    """DNS 0x20: a random letter case, as large public resolvers send (docs/aws-sources.md)."""
    rng = random.Random()
    out = "".join(c.upper() if c.isalpha() and rng.random() < 0.5 else c.lower() for c in name)
    if out == name.lower() and any(c.isalpha() for c in name):
        i = next(i for i, c in enumerate(name) if c.isalpha())
        out = out[:i] + out[i].upper() + out[i + 1:]
    return out


def lookup(server: str, name: str, qtype: str, timeout: float) -> tuple[str, list[str]]:
    q = DNSRecord.question(name, qtype)
    raw = q.send(server, 53, timeout=timeout)
    reply = DNSRecord.parse(raw)
    values = [str(rr.rdata) for rr in reply.rr if QTYPE[rr.rtype] == qtype]
    return str(reply.q.qname).rstrip("."), values


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dns", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--qtype", default="A", choices=["A", "AAAA"])
    ap.add_argument("--mix-case", action="store_true")
    ap.add_argument("--port", type=int, default=2456)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--play-seconds", type=float, default=10.0)
    ap.add_argument("--give-up", type=float, default=240.0)
    ap.add_argument("--lookups-only", type=int, default=0, help="make N lookups, then stop")
    args = ap.parse_args()

    start = time.time()
    address = None
    n = 0
    while time.time() - start < args.give_up:
        name = mixed_case(args.name) if args.mix_case else args.name
        n += 1
        sent = time.time()  # a lookup's time is when the question left
        try:
            echoed, values = lookup(args.dns, name, args.qtype, timeout=2.0)
            emit("lookup", t=sent, name=name, echoed=echoed, qtype=args.qtype, answer=values,
                 rtt_ms=round((time.time() - sent) * 1000, 1))
        except (OSError, ValueError) as e:
            emit("lookup_failed", t=sent, name=name, error=str(e))
            values = []
        real = [v for v in values if v not in ("0.0.0.0", "::")]
        if args.lookups_only and n >= args.lookups_only:
            return 0
        if real and not args.lookups_only:
            address = real[0]
            emit("resolved", address=address, after_s=round(time.time() - start, 3))
            break
        time.sleep(1.0)
    if address is None:
        emit("gave_up", after_s=round(time.time() - start, 3))
        return 1

    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0 / args.rate)
    connected = False
    sent = 0
    play_until = None
    deadline = time.time() + args.give_up
    while time.time() < deadline:
        if play_until is not None and time.time() >= play_until:
            break
        sock.sendto(b"player-input %d" % sent, (address, args.port))
        sent += 1
        try:
            data, _ = sock.recvfrom(1500)
            if not connected and data.startswith(b"welcome"):
                connected = True
                play_until = time.time() + args.play_seconds
                emit("connected", address=address, after_s=round(time.time() - start, 3), packets_sent=sent)
        except (socket.timeout, ConnectionRefusedError):
            pass
        time.sleep(max(0.0, 1.0 / args.rate - 0.001))
    emit("left", packets_sent=sent, connected=connected)
    return 0 if connected else 1


if __name__ == "__main__":
    sys.exit(main())
