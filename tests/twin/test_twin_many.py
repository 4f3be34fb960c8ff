"""Many servers under one domain (issue 38, docs/many-servers.md): one base, deployed with the
deploy command (its network, and its one wake path: the zone's query logging and one wake
function for every game), and three game stacks in it, each deployed with the deploy command
and BaseName. The twin's one DNS server answers the three names from one zone; its query log
goes to the base's one filter and function, which finds each game by the tags on its group.

One story, in order: a name no game has wakes nothing; a lookup of one game's name wakes only
that game; two games play at once, and the one whose player leaves goes to sleep while the other
plays on; deleting a game's stack leaves the others waking, and a lookup of its name wakes nothing;
a lookup of the third in random letter case (DNS 0x20) wakes it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from twin import AGENT, RECORD, ZONE, Twin  # noqa: E402

pytestmark = pytest.mark.skipif(not AGENT.exists(), reason=f"build the agent first: {AGENT} is missing")

BOOT = 180  # seconds a wake may take, lookup to playable, on a loaded 2-core machine


def game(name: str) -> dict[str, str]:
    """Another server of the Valheim example, named `name`, its secret under its own name."""
    return {"ServerName": name, "RecordName": f"{name}.{ZONE}",
            "Secret1": f"SERVER_PASS=/container-manager/{name}/server-pass"}


def lookups(tw: Twin, name: str, n: int = 3) -> None:
    """`n` lookups of `name` from the player's network, and nothing more."""
    p = tw.player("--lookups-only", str(n), name=name)
    p.wait(30)


def desired(*twins: Twin) -> list[int]:
    return [t.desired() for t in twins]


def test_three_games_in_one_base_each_lookup_wakes_only_its_game_and_a_deleted_one_wakes_nothing():
    with Twin(base="community") as first, Twin(site=first, overrides=game("second")) as second, \
            Twin(site=first, overrides=game("third")) as third:
        games = (first, second, third)
        names = [t.params["RecordName"] for t in games]
        assert names == [RECORD, f"second.{ZONE}", f"third.{ZONE}"]
        # One wake path: the base's filter and function; no game made a wake chain of its own.
        assert [s.function_logical_id for s in first.base.subscriptions] == ["WakeFunction"]
        assert all(not t.deployed.subscriptions for t in games)
        assert all("Vpc" not in t.deployed.physical for t in games)
        assert desired(*games) == [0, 0, 0]

        # A name no game has: the function finds no game and wakes nothing.
        lookups(first, f"nobody.{ZONE}")
        nobody = first.wait_for("wake_invoked", 15)
        assert nobody["result"] == "ignored" and nobody["error"] is None, nobody
        time.sleep(1)
        assert desired(*games) == [0, 0, 0]

        # A lookup of the second's name wakes the second only; its player plays on.
        second.player("--play-seconds", "900", "--give-up", "900", "--rate", "10")
        first.wait_for("wake_invoked", 15, pred=lambda e: e["result"] == "woken")
        assert desired(*games) == [0, 1, 0]
        second.wait_for("connected", BOOT, source="player")
        assert [len(t.active()) for t in games] == [0, 1, 0]

        # The first's player comes for 10 s: two games up at once, each counting its own player.
        joined = time.time()
        first.player("--play-seconds", "10", "--rate", "10")
        first.wait_for("connected", BOOT, source="player")
        assert desired(*games) == [1, 1, 0]
        for t in (first, second):
            t.wait_for("sample", 60, source="agent", after=joined, pred=lambda e: int(e.get("players") or 0) >= 1)
        # The first's player leaves: the first saves and sleeps; the second plays on.
        first.wait_for("instance_terminated", 240, source="asg")
        assert desired(*games) == [0, 1, 0]
        assert second.wait_for("sample", 30, source="agent", after=time.time(),
                               pred=lambda e: int(e.get("players") or 0) >= 1)

        # Deleting the first's stack (the deploy command's destroy) takes its group, and with it
        # its entry in the wake path: a lookup of its name now wakes nothing.
        world = first.deployed.physical["DataFileSystem"]
        gone = first.destroy()
        assert gone.returncode == 0, gone.stderr
        # Its record goes with it; its world stays, as for any server; the other games are as they were.
        assert first.record_values() is None, "the first's record goes with its stack"
        assert second.record_values() == [second.active()[0].ip] and third.record_values() == ["0.0.0.0"]
        (kept,) = first.client("efs", direct=True).describe_file_systems(FileSystemId=world)["FileSystems"]
        assert kept["LifeCycleState"] == "available"
        assert [len(second.active()), len(third.active())] == [1, 0]
        asked = time.time()
        lookups(first, names[0])
        first.wait_for("wake_invoked", 15, after=asked, pred=lambda e: "ignored" in (e["result"] or "").split())
        time.sleep(2)
        since = [e["result"] for e in first.named("wake_invoked") if e["t"] >= asked]
        assert not [r for r in since if "woken" in (r or "").split()], since
        assert [second.desired(), third.desired()] == [1, 0]

        # The third, looked up in random letter case (DNS 0x20), still wakes, and only it.
        asked = time.time()
        third.player("--mix-case", "--play-seconds", "5", "--rate", "10")
        woke = first.wait_for("wake_invoked", 15, after=asked, pred=lambda e: "woken" in (e["result"] or "").split())
        line = next(e["line"] for e in first.named("query_logged", source="dns")
                    if e["t"] >= asked and e["line"].split()[3].lower() == names[2])
        assert line.split()[3] != names[2], f"asked in random letter case: {line}"
        assert [second.desired(), third.desired()] == [1, 1]
        third.wait_for("connected", BOOT, source="player")
        print(f"second woke, played on through the first's wake and sleep; third woke {woke['t'] - asked:.1f} s "
              "after its lookup")
