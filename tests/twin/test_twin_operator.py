"""The operator's one command (issue 35): `cloud/cm status|wake|sleep` against the deployed stack,
as a user runs it with the AWS CLI's credentials. `status` reads only: the Auto Scaling group
(its capacity, its instances' lifecycle states, and the tags the agent keeps on it: the last
stop's reason and when the game was last up), the record, and the agent's metrics.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from twin import AGENT, Twin  # noqa: E402

pytestmark = pytest.mark.skipif(not AGENT.exists(), reason=f"build the agent first: {AGENT} is missing")

BOOT = 180


def status(tw: Twin) -> dict:
    run = tw.cm("status", "--json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def wait_state(tw: Twin, state: str, timeout: float, pred=lambda s: True) -> dict:
    end, seen = time.time() + timeout, None
    while time.time() < end:
        seen = status(tw)
        if seen["state"] == state and pred(seen):
            return seen
        time.sleep(1)
    told = [(e["event"], e.get("alert"), round(e["t"] - time.time())) for e in tw.events
            if e.get("source") == "agent" and e["event"] in ("online_recorded", "alert_sent", "dns_updated")]
    raise AssertionError(f"status never {state} within {timeout}s; last: {seen}; the agent: {told}")


def test_status_through_every_state_with_wake_and_sleep_through_the_command():
    with Twin() as tw:
        s = status(tw)
        assert (s["state"], s["why"], s["desired_capacity"]) == ("asleep", "no stop recorded yet", 0), s
        bad = tw.cm("status", "--stack", "no-such-stack")
        assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
            "cm: no stack no-such-stack in us-east-1: deploy it first (cloud/cm deploy PARAMS.json)"], bad.stderr
        assert not tw.active(), "status never wakes the server"

        woke = tw.cm("wake", "--json")
        assert woke.returncode == 0 and json.loads(woke.stdout)["result"] == "waking", woke
        # The players' Discord heard it was coming, as after a lookup's wake.
        assert json.loads(woke.stdout)["players_told"] == "yes", woke.stdout
        (told,) = [p for p in tw.package.posts if "waking up" in p["body"]["embeds"][0]["title"]]
        assert told["status"] == 204 and told["body"]["embeds"][0]["description"] == "Usually ready in about 4 minutes."
        s = status(tw)
        assert s["state"] == "waking" and s["seconds_since_wake"] is not None, s
        tw.player("--play-seconds", "150", "--rate", "5")
        (inst,) = [i for i in tw.active()]
        # Up once the game answers; the player count arrives with the agent's first metrics (60 s).
        s = wait_state(tw, "up", BOOT, lambda s: s.get("players") == 1)
        assert s["address"] == inst.ip and s["instance"] == inst.iid, s
        assert s["uptime_seconds"] >= 0 and 0 <= s["idle_countdown_seconds"] <= 60, s
        print("status while up:\n" + tw.cm("status").stdout)

        refused = tw.cm("sleep")
        assert refused.returncode == 2 and "1 player(s) online" in refused.stderr, refused
        assert tw.desired() == 1 and tw.active() == [inst]
        forced = tw.cm("sleep", "--force", "--json")
        assert forced.returncode == 0 and json.loads(forced.stdout)["result"] == "going to sleep", forced
        s = status(tw)
        assert s["state"] == "stopping" and "cloud/cm sleep --force" in s["why"], s
        tw.wait_instances(0, 150)
        assert tw.record_values() == ["0.0.0.0"], "the same save path as idle: DNS back"
        stop = tw.wait_for("graceful_stop_done", 5, source="agent")
        assert stop["exit_code"] in (0, "0") and stop["exited_on_its_own"] in (True, "true"), stop
        s = status(tw)
        assert s["state"] == "asleep" and s["last_stop"]["reason"] == "operator", s
        # The record keeps the players online then and the uptime.
        assert s["last_stop"]["players"] == 1 and s["last_stop"]["minutes_up"] >= 0, s
        assert "1 player(s) online then, up " in tw.cm("status").stdout
        # The wake is kept with its outcome: a player came.
        (wake,) = s["wakes_last_day"]
        assert wake["players_came"] is True and wake["minutes_up"] >= 1, wake
        assert "wakes in the last day: 1, 1 with players" in tw.cm("status").stdout


def test_after_a_crash_and_a_fresh_instance_status_still_shows_why_it_stopped():
    with Twin() as tw:
        tw.player("--play-seconds", "3")
        tw.wait_for("connected", BOOT, source="player")
        tw.wait_game_up(30)
        (first,) = tw.active()
        tw.plant_crash()
        tw.wait_for("scale_in_requested", 30, source="agent")
        tw.wait_instances(0, 150)
        s = wait_state(tw, "asleep", 30, lambda s: s["last_stop"] is not None)
        assert s["last_stop"]["reason"] == "crash" and "exit code 3" in s["why"], s
        # The agent's record: the players its probe last counted, and the minutes up.
        assert s["last_stop"]["players"] in (0, 1) and isinstance(s["last_stop"]["minutes_up"], int), s
        crashed_at = s["last_stop"]["at"]
        # A fresh instance: the record of the last stop is not on it, and status still shows it.
        tw.player("--play-seconds", "30", "--rate", "5")
        s = wait_state(tw, "up", BOOT)
        assert s["last_stop"]["at"] == crashed_at and s["last_stop"]["reason"] == "crash", s
        assert "last stop: the game crashed with exit code 3" in tw.cm("status").stdout
        # What outlives both instances, in one place: the records and the wake function's log.
        shown = tw.cm("logs", "--json")
        assert shown.returncode == 0, shown.stderr
        out = json.loads(shown.stdout)
        woke = [e for e in out["wake_path"]["lines"] if e["message"].startswith("Woke ")]
        assert len(woke) == 2, out["wake_path"]
        assert out["last_stop"]["reason"] == "crash" and len(out["wakes_last_day"]) == 1, out
        # The agent's decision lines outlive the instance that logged them: the crashed one's
        # stream has its start, the crash and the stop, in order (sent at its end).
        mine = [e["message"] for e in out["agent"]["lines"] if e["stream"] == first.iid]
        at = lambda what: next((i for i, m in enumerate(mine) if what in m), None)  # noqa: E731
        assert None not in (at("agent_started:"), at("container_exited:"), at("scale_in_requested:")), mine
        assert at("agent_started:") < at("container_exited:") < at("scale_in_requested:"), mine
        assert "reason=crash" in mine[at("scale_in_requested:")], mine
        assert not any(" sample: " in m for m in mine), mine
        print(f"decision lines kept of the crashed instance: {len(mine)} lines, {sum(map(len, mine))} bytes")
        human = tw.cm("logs").stdout
        assert f"{first.iid}  INFO scale_in_requested: Scaling to zero: " in human, human
