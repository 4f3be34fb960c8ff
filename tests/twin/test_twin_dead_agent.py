"""The cloud twin: a server whose agent is dead still saves its world when it is stopped.

The heartbeat alarm scales the group to zero when the agent's metrics stop (docs/design.md,
"When the agent cannot speak"). With the agent dead, nobody completes the termination hook:
the group waits out its timeout, then the instance shuts down. The save unit
(packaging/container-manager-save.service) stops after the agent and before Docker at
shutdown, and runs the agent's own graceful stop (`container-manager-agent save-game`): the
pre-stop command, then SIGTERM within the stop timeout. Docker's own stop at shutdown would
not run the pre-stop command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from twin import AGENT, Twin, sh  # noqa: E402

pytestmark = pytest.mark.skipif(not AGENT.exists(), reason=f"build the agent first: {AGENT} is missing")

BOOT = 180
HOOK_TIMEOUT = 20  # the template's 600 s, shortened (Twin(hook_timeout=...))


def test_a_dead_agents_world_is_saved_when_the_heartbeat_alarm_stops_the_server():
    marker = "pre-stop-ran"
    with Twin(overrides={"PreStopCommand": f"sh,-c,echo saved by the pre-stop command > /config/{marker}"},
              hook_timeout=HOOK_TIMEOUT) as tw:
        tw.player("--play-seconds", "2")
        tw.wait_for("connected", BOOT, source="player")
        (inst,) = tw.active()
        active = sh("docker", "exec", inst.container, "systemctl", "is-active", "container-manager-save.service",
                    check=False).stdout.strip()
        assert active == "active", f"the save unit must be active to act at shutdown: {active}"
        # The agent dies (stopped for good: nothing restarts it). Its stop leaves the game up.
        sh("docker", "exec", inst.container, "systemctl", "stop", "container-manager-agent.service")
        assert not (tw.data_dir() / marker).exists()
        # The heartbeat alarm's action: the ScaleToZeroPolicy sets the capacity to 0.
        tw.client("autoscaling").set_desired_capacity(
            AutoScalingGroupName=tw.deployed.group, DesiredCapacity=0, HonorCooldown=False)
        tw.wait_for("instance_terminating", 30, source="asg")
        hook = tw.wait_for("lifecycle_hook_done", HOOK_TIMEOUT + 30, source="asg")
        assert "heartbeat timeout" in hook["result"], f"nobody completes the hook of a dead agent: {hook}"
        tw.wait_for("instance_terminated", 240, source="asg")
        ran = tw.data_dir() / marker
        assert ran.exists(), "the save unit ran the pre-stop command at shutdown"
        assert ran.read_text().strip() == "saved by the pre-stop command"
        world = json.loads(tw.save_file().read_text())
        assert world["sessions"] == 1 and world["saved_at"], world
        lines = [e["message"] for e in tw.journal(inst.iid, "container-manager-save.service")]
        report = next((json.loads(m) for m in lines if m.startswith("{")), None)
        assert report is not None, lines
        assert report["exited_on_its_own"] and report["pre_stop"]["exit_code"] == 0, report
        log = tw.game_log(inst)
        assert "SIGTERM: saving the world" in log and "world saved: sessions=1" in log, log
