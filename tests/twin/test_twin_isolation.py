"""Two twins on one machine at once (issue 32): each instance has its own Docker daemon, so each
agent sees only its own game, though both games have the same container name and ECS labels;
and each twin's names and addresses are its own, so a crash in one alerts only that one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from twin import AGENT, Twin  # noqa: E402

pytestmark = pytest.mark.skipif(not AGENT.exists(), reason=f"build the agent first: {AGENT} is missing")

BOOT = 180


def playing(tw: Twin):
    tw.player("--play-seconds", "90", "--rate", "5")
    resolved = tw.wait_for("resolved", BOOT, source="player")
    tw.wait_for("connected", 30, source="player", after=resolved["t"])
    (inst,) = tw.active()
    assert resolved["address"] == inst.ip
    running = tw.wait_for("container_running", 30, source="agent")
    return inst, running


def test_two_twins_each_agent_sees_only_its_own_game_and_a_crash_alerts_only_its_twin():
    with Twin() as a, Twin() as b:
        assert a.names.slot != b.names.slot and a.names.twin_ip != b.names.twin_ip
        a.alert_queue()
        b.alert_queue()
        ia, ra = playing(a)
        ib, rb = playing(b)
        # The same container name and ECS labels, each on its instance's own daemon.
        assert ia.game == ib.game, (ia.game, ib.game)
        fmt = "{{.Id}} {{index .Config.Labels \"com.amazonaws.ecs.container-name\"}}"
        id_a, label_a = ia.dockercmd("inspect", "-f", fmt, ia.game).stdout.split()
        id_b, label_b = ib.dockercmd("inspect", "-f", fmt, ib.game).stdout.split()
        assert label_a == label_b and id_a != id_b
        # Each daemon holds its own game and nothing of the other's.
        assert ia.dockercmd("ps", "-q", "--no-trunc").stdout.split() == [id_a]
        assert ib.dockercmd("ps", "-q", "--no-trunc").stdout.split() == [id_b]
        # Each agent found its own game.
        assert id_a.startswith(ra["id"]) and id_b.startswith(rb["id"]), (ra, rb, id_a, id_b)

        # A crash in a's game: a's agent alerts and scales a in; b keeps playing, untold.
        a.wait_game_up(30)  # a crash of a game that was up (an exit before is never_started)
        a.plant_crash()
        exited = a.wait_for("container_exited", 30, source="agent")
        assert exited["crash"] in (True, "true")
        a.wait_for("scale_in_requested", 10, source="agent")
        a.wait_instances(0, 150)
        assert len(a.alerts()) == 1
        assert b.alerts() == [], "b was not told of a's crash"
        assert not b.named("container_exited", "agent") and not b.named("scale_in_requested", "agent")
        assert b.active() == [ib] and ib.dockercmd("ps", "-q", "--no-trunc").stdout.split() == [id_b]
        assert b.desired() == 1
