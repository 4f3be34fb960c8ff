"""The quick tier's one story from the real stack (`make check`): a lookup wakes the sleeping
server and the agent counts the player who joins. The longer stories (sleep, save, crash, the
world's files) are in the other test_twin_*.py files, which `make test` runs."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from twin import AGENT, RECORD, Twin  # noqa: E402

pytestmark = pytest.mark.skipif(not AGENT.exists(), reason=f"build the agent first: {AGENT} is missing")

BOOT = 180  # seconds a wake may take, lookup to playable, on a loaded 2-core machine


def test_smoke_a_lookup_wakes_the_server_and_the_player_is_counted():
    with Twin() as tw:
        assert tw.desired() == 0 and tw.active() == []
        assert tw.record_values() == ["0.0.0.0"], "asleep: the record is at the placeholder"
        tw.player("--play-seconds", "8", "--rate", "10")
        first = tw.wait_for("lookup", 10, source="player")
        assert first["answer"] == ["0.0.0.0"]
        tw.wait_for("wake_invoked", 15, pred=lambda e: e["result"] == "woken")
        assert tw.desired() == 1
        resolved = tw.wait_for("resolved", BOOT, source="player")
        (inst,) = tw.active()
        assert resolved["address"] == inst.ip and tw.record_values() == [inst.ip]
        # The instance's own boot clock: the agent reads /proc/uptime for max_uptime, and it
        # counts from this instance's boot, not from the host's (hours on a reused CI machine).
        launched = tw.wait_for("instance_launching", 1, source="asg")
        uptime = tw.uptime(inst)
        assert 0 < uptime <= time.time() - launched["t"] + 1, (uptime, time.time() - launched["t"])
        connected = tw.wait_for("connected", 30, source="player")
        # Counted twice over: the game's own player count (A2S) and its packets on the game port.
        counted = tw.wait_for("sample", 30, source="agent", after=connected["t"] - 1,
                              pred=lambda e: int(e.get("players") or 0) >= 1)
        assert int(counted.get("packets") or 0) > 0, counted
        # The instance's own Docker daemon, and the game image loaded into it (a first boot).
        dockerd = tw.wait_for("instance_dockerd_up", 1, source="asg")
        loaded = tw.wait_for("image_loaded", 1, source="asg")
        assert inst.dockercmd("image", "inspect", tw.game_image, check=False).returncode == 0
        print(f"instance dockerd up in {dockerd['seconds']:.2f} s, game image loaded in {loaded['seconds']:.1f} s")
        print(f"instance uptime {uptime:.1f} s; lookup to playable: {resolved['t'] - first['t']:.1f} s; player counted "
              f"{counted['t'] - connected['t']:.1f} s after joining ({RECORD})")
