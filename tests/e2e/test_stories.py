"""The whole lifecycle end to end: the real agent binary against moto (behind the shim), dockerd,
and players in a network namespace. Each story checks the world's state, not just the logs.

Run by `make test` (after the agent is built). Timings are short: sample_interval 1 s,
idle_after 6 s. Nothing here asserts a duration as a performance target; the bounds below are
correctness bounds (never before idle_after; at most one sample interval plus the polling slack
after it).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from world import AGENT, HOOK, PUBLIC_IP, A2sServer, Game, Timing, World, ts  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not AGENT.exists(), reason=f"build the agent first: {AGENT} is missing"),
    # One after another on one worker: they share the player netns, the veth pair and the game
    # container's name on this machine (world.py); the twin's stories run beside them.
    pytest.mark.xdist_group("e2e"),
]


def active_samples(agent) -> list[float]:
    """Times of samples at or above 2 packets/s (interval 1 s)."""
    return [ts(e) for e in agent.named("sample") if e.get("packets", 0) >= 2 * e.get("interval_ms", 1000) / 1000]


def finish_termination(w: World, agent) -> None:
    """After the scale-in: the group terminates us; the agent saves, reverts, completes, exits 0."""
    w.terminate_when_scaled_in(timeout=60)
    assert agent.wait_exit(90) == 0, "\n".join(agent.stderr_text[-20:])


def test_story_1_idle():
    with World() as w:
        w.start_game(Game.saving_server())
        agent = w.start_agent()
        agent.wait_for("dns_updated", 30)
        assert w.record_value() == [PUBLIC_IP]

        players = w.net.play(2456, rate=20, seconds=10)
        time.sleep(8)  # past idle_after (6 s) while players play
        assert w.desired_capacity() == 1, "scaled in under players"
        assert not agent.named("scale_in_requested")
        players.wait(15)

        finish_termination(w, agent)
        scale = agent.wait_for("scale_in_requested", 1)
        assert scale["reason"] == "idle"
        last_active = max(active_samples(agent))
        gap = ts(scale) - last_active
        assert 6.0 <= gap <= 6.0 + 1.5, f"scale-in {gap:.2f}s after the last active sample"

        # The world was saved: pre-stop first, then SIGTERM, a clean exit, the marker.
        assert w.order() == ["prestop", "sigterm-save"], "\n".join(agent.stderr_text[-40:])
        assert (w.data / "save-marker").read_text().strip() == "world"
        assert w.game is not None and w.game.exit_code() == 0
        stop = agent.wait_for("graceful_stop_done", 1)
        assert stop["saved"] is True and stop["exited_on_its_own"] is True and stop["pre_stop_exit"] == 0

        assert w.record_value() == ["0.0.0.0"]
        completions = [a for a in w.shim.lifecycle_actions() if a["action"] == "CompleteLifecycleAction"]
        assert len(completions) == 1
        assert completions[0]["hook"] == HOOK and completions[0]["result"] == "CONTINUE"
        assert completions[0]["instance_id"] == w.instance_id

        # DNS goes back while the game saves; the hook completes after both.
        stopped, reverted, completed = [agent.wait_for(n, 1) for n in ("graceful_stop_done", "dns_reverted", "lifecycle_completed")]
        assert max(ts(stopped), ts(reverted)) <= ts(completed)
        # The idle stop is told after the save, with its outcome.
        sent = agent.wait_for("alert_sent", 30, lambda e: e.get("alert") == "idle_stop")
        assert ts(sent) >= ts(stopped)
        alerts = w.alerts()
        idle = [a for a in alerts if "nobody was playing" in a["subject"]]
        assert len(idle) == 1, alerts
        # Metrics go every 5 s here, so a 30 s outage is five failed publishes in a row: the
        # operator is warned of it once (the heartbeat alarm's case), and told nothing else.
        others = [a for a in alerts if a not in idle]
        assert all("metrics failing" in a["subject"] for a in others), others
        assert len(others) <= 1, others
        assert "The world was saved" in alerts[0]["message"], alerts
        agent.wait_for("agent_stopped", 1)


def test_story_2_crash():
    with World() as w:
        w.start_game(Game.crashing_server(after=4, code=3))
        agent = w.start_agent()
        agent.wait_for("dns_updated", 30)
        exited = agent.wait_for("container_exited", 30)
        assert exited["exit_code"] == 3 and exited["crash"] is True
        scale = agent.wait_for("scale_in_requested", 5)
        assert scale["reason"] == "crash"
        agent.wait_for("alert_sent", 30)
        assert w.desired_capacity() == 0
        alerts = w.alerts()
        assert len(alerts) == 1, alerts
        assert alerts[0]["subject"] == "valheim.example.test: game crashed (exit 3)"
        assert "exit code 3" in alerts[0]["message"]
        assert "fatal: corrupted chunk at 12,-4" in alerts[0]["message"]
        finish_termination(w, agent)
        assert w.alerts() == [], "exactly one alert"
        assert w.record_value() == ["0.0.0.0"]


def test_story_3_probe_decides():
    # 0 players while noise flows: idle.
    a2s = A2sServer(players=0)
    with World(probe_port=a2s.port) as w:
        w.a2s = a2s
        w.start_game(Game.saving_server())
        agent = w.start_agent()
        agent.wait_for("dns_updated", 30)
        noise = w.net.play(2456, rate=30, seconds=30)
        agent.wait_for("scale_in_requested", 20)
        assert noise.poll() is None, "the noise was still flowing when the server went idle"
        samples = agent.named("sample")
        assert any(e.get("packets", 0) > 10 and e.get("players") == 0 for e in samples), samples[-3:]
        finish_termination(w, agent)

    # 2 players and no traffic at all: stays up.
    a2s = A2sServer(players=2)
    with World(probe_port=a2s.port) as w:
        w.a2s = a2s
        w.start_game(Game.saving_server())
        agent = w.start_agent()
        agent.wait_for("dns_updated", 30)
        time.sleep(18)  # three times idle_after
        assert w.desired_capacity() == 1
        assert not agent.named("scale_in_requested")
        samples = agent.named("sample")
        assert len(samples) >= 15 and all(e.get("players") == 2 and e.get("packets") == 0 for e in samples[-10:])
        agent.signal_stop()
        assert agent.wait_exit(30) == 0
        assert w.game is not None and w.game.running(), "stopping the agent alone leaves the game running"
        assert w.record_value() == [PUBLIC_IP]


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


@pytest.mark.parametrize("stop", [False, True])
def test_story_4_max_uptime(stop):
    if uptime() < 65:
        time.sleep(65 - uptime())
    # max_uptime counts from the instance's boot: this machine has been up longer than 1 m.
    with World(timing=Timing(max_uptime="1m", stop_on_max_uptime=stop, idle_after="1h")) as w:
        w.start_game(Game.saving_server())
        agent = w.start_agent()
        agent.wait_for("dns_updated", 30)
        # Someone plays: past max_uptime, a confirmed player keeps the server up (only the
        # alert), unless stop_on_max_uptime; without one, the backstop would stop it (core rule 7).
        players = w.net.play(2456, rate=20, seconds=25)
        sent = agent.wait_for("alert_sent", 30, lambda e: e.get("alert") == "max_uptime")
        assert sent
        time.sleep(3)
        alerts = w.alerts()
        assert len(alerts) == 1 and "up for" in alerts[0]["subject"], alerts
        if stop:
            assert agent.wait_for("scale_in_requested", 5)["reason"] == "max_uptime"
            assert w.desired_capacity() == 0
            finish_termination(w, agent)
        else:
            assert not agent.named("scale_in_requested")
            assert w.desired_capacity() == 1
            agent.signal_stop()
            assert agent.wait_exit(30) == 0
        players.wait(40)
        assert w.alerts() == [], "one alert only"


def test_story_5_outage():
    with World() as w:
        w.start_game(Game.saving_server())
        agent = w.start_agent()
        agent.wait_for("dns_updated", 30)
        players = w.net.play(2456, rate=20, seconds=8)
        time.sleep(2)
        outage_start = time.time()
        w.shim.outage(30)
        players.wait(15)
        # Idle comes during the outage; the scale-in is requested but cannot reach the API.
        scale = agent.wait_for("scale_in_requested", 20)
        assert ts(scale) < outage_start + 30, "idle was expected during the outage"
        assert agent.proc is not None and agent.proc.poll() is None, "the agent died during the outage"
        gap = ts(scale) - max(active_samples(agent))
        assert gap >= 6.0, f"early scale-in, {gap:.2f}s after the last active sample"
        # After the outage every pending action completes.
        finish_termination(w, agent)
        assert time.time() >= outage_start + 30
        assert not [e for e in agent.named("container_exited") if e.get("crash")]
        assert w.order() == ["prestop", "sigterm-save"]
        assert w.record_value() == ["0.0.0.0"]
        assert any(a["action"] == "CompleteLifecycleAction" for a in w.shim.lifecycle_actions())
        # The idle stop came due during the outage: SNS's bounded attempts outlast it.
        agent.wait_for("alert_sent", 90, lambda e: e.get("alert") == "idle_stop")
        alerts = w.alerts()
        idle = [a for a in alerts if "nobody was playing" in a["subject"]]
        assert len(idle) == 1, alerts
        # Metrics go every 5 s here, so a 30 s outage is five failed publishes in a row: the
        # operator is warned of it once (the heartbeat alarm's case), and told nothing else.
        others = [a for a in alerts if a not in idle]
        assert all("metrics failing" in a["subject"] for a in others), others
        assert len(others) <= 1, others


def test_story_6_bad_config():
    with World() as w:
        before = len(w.shim.requests())
        bad = w.config_text().replace('ports = ["udp:2456-2458"]', 'ports = ["udp:2456", "udp:70000"]')
        agent = w.start_agent(config_text=bad)
        assert agent.wait_exit(20) == 78
        err = "\n".join(agent.stderr_text)
        assert 'activity.ports[1]: "udp:70000" is not a port range' in err, err
        # No action: nothing reached the AWS front, nothing changed.
        assert len(w.shim.requests()) == before
        assert w.record_value() == ["0.0.0.0"]
        assert w.desired_capacity() == 1
        assert w.alerts() == []
