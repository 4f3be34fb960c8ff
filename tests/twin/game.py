#!/usr/bin/env python3
"""The cloud twin's game server: a small stand-in for a dedicated server such as Valheim's.

It runs as the task definition's container (host networking, so in the instance's network
namespace) and behaves as the stories need a game to behave:

- it loads its world from the data volume (DATA_DIR, the task's EFS mount), and says which
  save it loaded;
- it answers players on the game port (UDP GAME_PORT): every datagram gets a reply, so a
  player knows the server is playable;
- it answers Steam A2S_INFO on the query port (UDP QUERY_PORT) with the challenge step; the
  player count is the number of addresses heard from in the last PLAYER_SECONDS seconds;
- on SIGTERM it saves the world (one more session in the save file), which takes SAVE_SECONDS,
  and exits 0;
- when the file `crash-now` appears in the data folder (the stories' way to plant a bug), it
  removes it, prints a fatal error and exits with status 3 without saving;
- with START_SECONDS, it loads for that long before it listens, printing its progress each
  second (a slow first start).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import sys
import time

DATA = os.environ.get("DATA_DIR", "/config")
GAME_PORT = int(os.environ.get("GAME_PORT", "2456"))
QUERY_PORT = int(os.environ.get("QUERY_PORT", "2457"))
PLAYER_SECONDS = float(os.environ.get("PLAYER_SECONDS", "3"))
SAVE_SECONDS = float(os.environ.get("SAVE_SECONDS", "0"))  # how long a save takes
# How long the server loads before it listens, logging its progress every second (a first boot
# that downloads its files, a modded server that listens only once loaded).
START_SECONDS = float(os.environ.get("START_SECONDS", "0"))
NAME = os.environ.get("SERVER_NAME", "twin game")
WORLD = os.environ.get("WORLD_NAME", "world")
SAVE = os.path.join(DATA, "worlds", f"{WORLD}.json")
CHALLENGE = b"\x51\x52\x53\x54"
A2S_INFO = b"\xff\xff\xff\xffTSource Engine Query\x00"


def say(text: str) -> None:
    print(text, flush=True)


def load() -> dict:
    try:
        with open(SAVE) as f:
            world = json.load(f)
        say(f"loaded save {SAVE}: sessions={world['sessions']} saved_at={world['saved_at']}")
        return world
    except FileNotFoundError:
        say(f"no save at {SAVE}: a new world")
        return {"sessions": 0, "saved_at": None, "players_seen": 0}


def save(world: dict) -> None:
    os.makedirs(os.path.dirname(SAVE), exist_ok=True)
    world["sessions"] += 1
    world["saved_at"] = time.time()
    tmp = SAVE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(world, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, SAVE)
    say(f"world saved: sessions={world['sessions']}")


def a2s_reply(players: int) -> bytes:
    body = b"\xff\xff\xff\xffI\x11" + b"\x00".join([NAME.encode(), WORLD.encode(), b"valheim", b"Valheim", b""])
    # id, players, max players, bots, type (dedicated), environment (linux), visibility, VAC
    body += struct.pack("<H", 0)
    body += bytes([min(players, 255), 10, 0]) + b"dl\x00\x00" + b"0.220.5\x00\x00"
    return body


def main() -> int:
    world = load()
    crash_file = os.path.join(DATA, "crash-now")
    stop = {"term": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("term", True))
    signal.signal(signal.SIGINT, lambda *_: stop.__setitem__("term", True))
    loading_until = time.time() + START_SECONDS
    while time.time() < loading_until and not stop["term"]:
        left = loading_until - time.time()
        say(f"loading: {100 * (1 - left / START_SECONDS):.0f}% ({left:.0f} s left)")
        time.sleep(min(1.0, max(left, 0.0)))

    # Dual stack, as a game server binds: IPv4 players arrive as ::ffff:a.b.c.d, IPv6 players as
    # themselves (the stack's IPv6 mode). IPv4 only where the kernel has no IPv6.
    try:
        game = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        game.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        game.bind(("::", GAME_PORT))
    except OSError:
        game = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        game.bind(("0.0.0.0", GAME_PORT))
    query = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    query.bind(("0.0.0.0", QUERY_PORT))
    seen: dict[str, float] = {}
    say(f"server {NAME!r} listening on udp:{GAME_PORT} (query udp:{QUERY_PORT}); players can join")
    while not stop["term"]:
        if os.path.exists(crash_file):
            os.remove(crash_file)
            say("fatal: corrupted chunk at 12,-4")
            return 3
        try:
            ready, _, _ = select.select([game, query], [], [], 0.2)
        except InterruptedError:
            continue
        now = time.time()
        for sock in ready:
            try:
                data, peer = sock.recvfrom(1500)
            except OSError:
                continue
            if sock is game:
                who = peer[0].removeprefix("::ffff:")
                if who not in seen:
                    world["players_seen"] = world.get("players_seen", 0) + 1
                    say(f"player {who} joined")
                seen[who] = now
                sock.sendto(b"welcome " + data[:64], peer)
            elif data.startswith(A2S_INFO):
                if data[len(A2S_INFO):] != CHALLENGE:
                    sock.sendto(b"\xff\xff\xff\xffA" + CHALLENGE, peer)
                else:
                    players = sum(1 for t in seen.values() if now - t <= PLAYER_SECONDS)
                    sock.sendto(a2s_reply(players), peer)
    say("SIGTERM: saving the world")
    time.sleep(SAVE_SECONDS)
    save(world)
    return 0


if __name__ == "__main__":
    sys.exit(main())
