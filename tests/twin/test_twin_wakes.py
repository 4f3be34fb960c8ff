"""Wakes that nobody uses (issue 36): a lookup no player follows (a bot, a link preview) ends
within the stack's UnusedMinutes after the game is up, not BootGraceMinutes plus IdleMinutes.

Here UnusedMinutes is 1, and BootGraceMinutes 10 and IdleMinutes 7 are the stack's defaults, so
only the new rule can end the wake early.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from twin import AGENT, RECORD, Twin  # noqa: E402

pytestmark = pytest.mark.skipif(not AGENT.exists(), reason=f"build the agent first: {AGENT} is missing")

BOOT = 180  # seconds a wake may take, lookup to playable, on a loaded 2-core machine
UNUSED = 60  # the stack's UnusedMinutes 1
DEFAULTS = {"IdleMinutes": "7", "BootGraceMinutes": "10", "UnusedMinutes": "1"}


def test_a_lookup_nobody_follows_ends_within_unused_after_plus_the_save():
    with Twin(overrides=DEFAULTS) as tw:
        tw.alert_queue()
        tw.player("--lookups-only", "1")  # a bot: one lookup, no game packet ever
        launched = tw.wait_for("instance_launching", BOOT)
        (inst,) = tw.active()
        scale = tw.wait_for("scale_in_requested", BOOT + UNUSED, source="agent")
        assert scale["reason"] == "unused", scale
        tw.wait_instances(0, 150)
        took = time.time() - launched["t"]
        print(f"one unused wake, launch to zero instances: {took:.1f} s "
              f"(before: BootGraceMinutes + IdleMinutes = {(10 + 7) * 60} s at least)")
        assert took < BOOT + UNUSED + 60, "within the boot, unused_after and the save"
        assert tw.record_values() == ["0.0.0.0"] and tw.desired() == 0
        alerts = tw.alerts()
        assert len(alerts) == 1 and "nobody came" in alerts[0]["subject"], alerts
        assert "The world was saved" in alerts[0]["message"], alerts[0]
        posts = [p for p in tw.package.posts if p["client"] == inst.ip]
        titles = [p["body"]["embeds"][0]["title"] for p in posts]
        assert titles == [f"{RECORD} is up", f"{RECORD} stopped: nobody came"], titles


def test_a_player_who_comes_keeps_the_wake_past_unused_after():
    with Twin(overrides=DEFAULTS) as tw:
        tw.player("--play-seconds", "5", "--rate", "5")  # plays a little, then leaves
        tw.wait_for("connected", BOOT, source="player")
        left = tw.wait_for("left", 60, source="player")
        time.sleep(UNUSED + 15)  # past unused_after since the game was up, and since they left
        assert not tw.named("scale_in_requested", "agent"), "a wake with a player is not unused"
        assert tw.desired() == 1 and len(tw.active()) == 1
        print(f"still up {time.time() - left['t']:.0f} s after the player left")
        tw.sleep_now()
        tw.wait_instances(0, 150)
