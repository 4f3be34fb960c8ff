"""A game that never starts (issue 34): one alert with the reason from its real source, the
record back to the placeholder and zero instances within a bound; and a game that is only slow
to start is left to start.

The stack's StartWithinMinutes is 1 here (10 by default). The bound the stories hold is
StartWithinMinutes, plus the agent's look at the image (a pull that fails at once here), plus
the stop (no game to save) and the termination: 150 s from the instance going into service.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from twin import AGENT, Twin  # noqa: E402

pytestmark = pytest.mark.skipif(not AGENT.exists(), reason=f"build the agent first: {AGENT} is missing")

BOOT = 180  # seconds a wake may take, lookup to playable, on a loaded 2-core machine
START_WITHIN = 60  # the stack's StartWithinMinutes 1
BOUND = START_WITHIN + 90  # + the look at the image, the stop with no game, the termination
# An image nobody can pull: a registry on the instance's own loopback where nothing listens, so
# the pull fails at once and no packet leaves the instance.
MISSING = "127.0.0.1:5999/nobody/missing-game:1"


def test_an_image_that_cannot_be_pulled_alerts_once_with_the_pull_error_and_sleeps():
    with Twin(overrides={"ContainerImage": MISSING, "StartWithinMinutes": "1"}) as tw:
        tw.alert_queue()
        tw.player("--play-seconds", "2")
        launched = tw.wait_for("instance_launching", BOOT)
        (inst,) = tw.active()
        failed = tw.wait_for("task_failed", BOOT, source="ecs")
        assert failed["error"].startswith("CannotPullContainerError"), failed
        diagnosed = tw.wait_for("start_diagnosed", START_WITHIN + 60, source="agent")
        assert "cannot be pulled" in diagnosed["why"] and MISSING in diagnosed["why"], diagnosed
        scale = tw.wait_for("scale_in_requested", 10, source="agent")
        assert scale["reason"] == "never_started", scale
        tw.wait_instances(0, BOUND)
        took = time.time() - launched["t"]
        print(f"launch to zero instances: {took:.1f} s (start_within {START_WITHIN} s)")
        assert tw.record_values() == ["0.0.0.0"] and tw.desired() == 0
        alerts = tw.alerts()
        assert len(alerts) == 1, alerts
        assert "never started" in alerts[0]["subject"], alerts[0]
        assert "cannot be pulled" in alerts[0]["message"] and MISSING in alerts[0]["message"], alerts[0]
        # The players' channel heard it too (the stack's default webhook events).
        posts = [p for p in tw.package.posts if p["client"] == inst.ip]
        footers = [p["body"]["embeds"][0]["footer"]["text"] for p in posts]
        assert footers == ["container-manager · never_started"], footers
        assert not tw.named("container_running", "agent"), "no game ever ran"


def test_a_container_that_exits_before_the_game_is_up_alerts_never_started_with_its_exit_code():
    with Twin(overrides={"StartWithinMinutes": "1"}) as tw:
        tw.alert_queue()
        # A save the game cannot read: it exits with 1 at every start, before it listens (ECS
        # starts it again each time; the agent may miss the first exit, before it runs).
        tw.save_file().parent.mkdir(parents=True, exist_ok=True)
        tw.save_file().write_text("{not a world")
        tw.player("--play-seconds", "2")
        launched = tw.wait_for("instance_launching", BOOT)
        exited = tw.wait_for("container_exited", BOOT, source="agent")
        assert exited["exit_code"] in (1, "1"), exited
        scale = tw.wait_for("scale_in_requested", 10, source="agent")
        assert scale["reason"] == "never_started", scale
        tw.wait_instances(0, BOUND)
        print(f"launch to zero instances: {time.time() - launched['t']:.1f} s")
        assert tw.record_values() == ["0.0.0.0"] and tw.desired() == 0
        alerts = tw.alerts()
        assert len(alerts) == 1, alerts
        assert "never started" in alerts[0]["subject"], alerts[0]
        assert "exited with code 1 before the game was up" in alerts[0]["message"], alerts[0]
        assert "JSONDecodeError" in alerts[0]["message"], alerts[0]  # the log tail
        assert not tw.named("start_check", "agent"), "a container ran: nothing to ask Docker"


def test_a_game_slow_to_listen_that_keeps_logging_is_not_stopped():
    # It loads for 75 s, past StartWithinMinutes (60 s), printing its progress; boot grace (2 min)
    # keeps the idle rule off while it loads, as it would for a real first boot.
    overrides = {"StartWithinMinutes": "1", "BootGraceMinutes": "2", "Env5": "START_SECONDS=75"}
    with Twin(overrides=overrides) as tw:
        tw.alert_queue()
        tw.player("--play-seconds", "5", "--rate", "5")
        launched = tw.wait_for("instance_launching", BOOT)
        (inst,) = tw.active()
        connected = tw.wait_for("connected", BOOT, source="player")
        waited = connected["t"] - launched["t"]
        print(f"launch to playable with a 75 s load: {waited:.1f} s")
        assert waited > START_WITHIN, "the game listened only after start_within"
        assert "loading: " in tw.game_log(inst)
        assert not tw.named("start_check", "agent") and not tw.named("scale_in_requested", "agent")
        assert tw.alerts() == [] and tw.desired() == 1 and tw.active() == [inst]
        tw.sleep_now()
        tw.wait_instances(0, 150)
