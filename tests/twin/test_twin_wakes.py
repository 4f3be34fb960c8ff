"""Wakes that nobody uses (issue 36): a lookup no player follows (a bot, a link preview) ends
within the stack's UnusedMinutes after the game is up, not BootGraceMinutes plus IdleMinutes.

Here UnusedMinutes is 1, and BootGraceMinutes 10 and IdleMinutes 7 are the stack's defaults, so
only the new rule can end the wake early.
"""

from __future__ import annotations

import json
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
        # The wake's outcome outlives the instance: the operator's status lists it.
        shown = tw.cm("status", "--json")
        assert shown.returncode == 0, shown.stderr
        (wake,) = json.loads(shown.stdout)["wakes_last_day"]
        assert wake["players_came"] is False and 0 <= wake["minutes_up"] <= (BOOT + UNUSED) // 60 + 2, wake
        assert "wakes in the last day: 1, 0 with players" in tw.cm("status").stdout


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


def ledger(tw: Twin) -> str:
    (group,) = tw.client("autoscaling", direct=True).describe_auto_scaling_groups(
        AutoScalingGroupNames=[tw.deployed.group])["AutoScalingGroups"]
    return next((t["Value"] for t in group.get("Tags", []) if t["Key"] == "container-manager:unused-wakes"), "")


def test_lookups_stop_waking_once_the_budget_is_spent_and_a_players_wake_resets_it():
    with Twin(overrides={**DEFAULTS, "UnusedWakesPerDay": "1"}) as tw:
        tw.alert_queue()
        # A bot's lookup: the one wake nobody joins that the budget allows.
        tw.player("--lookups-only", "1")
        tw.wait_for("instance_launching", BOOT)
        scale = tw.wait_for("scale_in_requested", BOOT + UNUSED, source="agent")
        assert scale["reason"] == "unused", scale
        tw.wait_instances(0, 150)
        assert len(ledger(tw).split()) == 1, ledger(tw)
        alerts = tw.alerts()
        told = [a for a in alerts if "no longer wake the server" in a["subject"]]
        assert len(told) == 1 and "set-desired-capacity" in told[0]["message"], alerts
        # Lookups every second for 30 s: none wakes the server.
        spent = time.time()
        bot = tw.player("--lookups-only", "30")
        bot.wait(90)
        results = [e["result"] for e in tw.named("wake_invoked") if e["t"] >= spent]
        assert results and set(results) == {"budget spent"}, results
        assert tw.desired() == 0 and not tw.active()
        assert [a for a in tw.alerts() if "no longer wake" in a["subject"]] == [], "told once"
        # The operator wakes it anyway; a player comes: the budget starts again.
        tw.client("autoscaling").set_desired_capacity(
            AutoScalingGroupName=tw.deployed.group, DesiredCapacity=1, HonorCooldown=False)
        tw.player("--play-seconds", "5", "--rate", "5")
        tw.wait_for("connected", BOOT, source="player", after=spent)
        tw.wait_for("wake_recorded", 30, source="agent", pred=lambda e: e.get("joined") in (True, "true"))
        assert ledger(tw) == ""
        tw.sleep_now()
        tw.wait_instances(0, 150)
        # A lookup wakes it again.
        again = time.time()
        tw.player("--lookups-only", "1")
        woke = tw.wait_for("wake_invoked", 30, after=again, pred=lambda e: e["result"] == "woken")
        print(f"woken again {woke['t'] - again:.1f} s after the lookup, once a player had come")
        tw.wait_for("instance_launching", BOOT, after=again)
