"""`make demo`: the whole lifecycle on this machine, with no AWS account.

The local AWS emulator (moto behind tests/shim) stands in for AWS, dockerd runs the game
container, and a network namespace plays the players. The agent is the real binary. The demo
prints a timeline of what happened, when and why, then checks the end state and cleans up.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from world import AGENT, GROUP, PUBLIC_IP, RECORD, Game, World, ts  # noqa: E402


def clock(t: float | None = None) -> str:
    return datetime.fromtimestamp(t if t is not None else time.time()).strftime("%H:%M:%S")


def say(text: str, t: float | None = None) -> None:
    print(f"  {clock(t)}  {text}", flush=True)


class Narrator:
    """Turns the agent's JSON events into sentences for a person."""

    def __init__(self) -> None:
        self.was_active = False
        self.counting = False
        self.stop_began: float | None = None

    def __call__(self, e: dict) -> None:
        t = ts(e) if "timestamp" in e else None
        name = e.get("event")
        if name == "agent_started":
            say("agent starting", t)
        elif name == "dns_updated":
            say(f"agent up, {RECORD} -> {e.get('ip')}", t)
        elif name == "sample":
            active = e.get("packets", 0) >= 2 * e.get("interval_ms", 1000) / 1000 or (e.get("players") or 0) > 0
            if active and not self.was_active:
                who = f"{e['players']} players online" if e.get("players") else f"{e.get('packets')} packets/s from players"
                say(f"players are playing ({who})", t)
                self.counting = False
            self.was_active = active
        elif name == "idle_countdown" and not self.counting:
            self.counting = True
            say(f"quiet: {e.get('basis')}; idle in {e.get('remaining_s')} s unless someone plays", t)
        elif name == "scale_in_requested":
            if e.get("reason") == "idle":
                say(f"{e.get('detail')} -> scaling to zero", t)
            else:
                say(f"{e.get('detail')} -> scaling to zero", t)
        elif name == "container_exited":
            kind = "crashed" if e.get("crash") else "stopped"
            say(f"game container {kind} (exit code {e.get('exit_code')})", t)
        elif name == "alert_sent":
            say(f"alert sent: \"{e.get('subject')}\"", t)
        elif name == "graceful_stop_done":
            if e.get("container") in (None, "none"):
                say("no game container left to stop", t)
            else:
                saved = "saved world" if e.get("saved") else "no save confirmed"
                how = "stopped" if e.get("exited_on_its_own") else "killed"
                say(f"{saved} (pre-stop exit {e.get('pre_stop_exit')}), container {how} in {e.get('duration_ms', 0) / 1000:.1f} s", t)
        elif name == "lifecycle_heartbeat":
            pass
        elif name == "dns_reverted":
            if e.get("left_alone"):
                say(f"{RECORD} already points elsewhere; left alone", t)
            else:
                say(f"{RECORD} -> 0.0.0.0 (nobody is sent to a dead address)", t)
        elif name == "lifecycle_completed":
            say("lifecycle action completed: the instance may go", t)
        elif name == "agent_stopped":
            say("agent stopped; the instance terminates, cost is back to zero", t)


def check(label: str, ok: bool) -> bool:
    print(f"    [{'ok' if ok else 'FAILED'}] {label}")
    return ok


def story_idle() -> bool:
    print("\nStory 1: players play, then leave")
    with World() as w:
        w.start_game(Game.saving_server())
        say(f"instance {w.instance_id} starts in group {GROUP}; game container up (host network)")
        agent = w.start_agent(on_event=Narrator())
        agent.wait_for("dns_updated", 30)
        time.sleep(1)
        say("two players join from the player network")
        w.net.play(2456, rate=12, seconds=10)
        w.net.play(2457, rate=12, seconds=10)
        time.sleep(11)
        say("the players log off")
        w.terminate_when_scaled_in(60)
        say("the group sets the instance to Terminating (lifecycle hook holds it)")
        code = agent.wait_exit(90)
        time.sleep(0.3)
        print("  end state:")
        good = all([
            check(f"agent exited with code {code}", code == 0),
            check(f"desired capacity is {w.desired_capacity()}", w.desired_capacity() == 0),
            check(f"{RECORD} -> {w.record_value()}", w.record_value() == ["0.0.0.0"]),
            check(f"save marker written after the pre-stop command: {w.order()}", w.order() == ["prestop", "sigterm-save"]),
            check("CompleteLifecycleAction(CONTINUE) recorded", any(a["action"] == "CompleteLifecycleAction" and a["result"] == "CONTINUE" for a in w.shim.lifecycle_actions())),
        ])
        return good


def story_crash() -> bool:
    print("\nStory 2: the game crashes")
    with World() as w:
        w.start_game(Game.crashing_server(after=5, code=3))
        say("game container up; it will crash in 5 s")
        agent = w.start_agent(on_event=Narrator())
        agent.wait_for("alert_sent", 40)
        w.terminate_when_scaled_in(30)
        code = agent.wait_exit(60)
        time.sleep(0.3)
        alerts = w.alerts()
        print("  the alert, as a phone shows it:")
        for a in alerts:
            print(f"    Subject: {a['subject']}")
            for line in (a["message"] or "").splitlines():
                print(f"    | {line}")
        print("  end state:")
        return all([
            check(f"agent exited with code {code}", code == 0),
            check(f"desired capacity is {w.desired_capacity()}", w.desired_capacity() == 0),
            check(f"exactly one alert ({len(alerts)})", len(alerts) == 1),
            check("the alert has the exit code and the last log lines", bool(alerts) and "exit code 3" in alerts[0]["message"] and "fatal: corrupted chunk" in alerts[0]["message"]),
        ])


def main() -> int:
    if not AGENT.exists():
        print(f"demo: the agent binary is missing ({AGENT}); run `make demo`", file=sys.stderr)
        return 1
    print("container-manager demo: AWS is the local emulator, the game a Docker container,")
    print(f"the players a network namespace. Short timings: sample every 1 s, idle after 6 s. Public IP {PUBLIC_IP}.")
    start = time.time()
    ok = story_idle() and story_crash()
    print(f"\ndemo {'finished' if ok else 'FAILED'} in {time.time() - start:.0f} s; everything it created is removed.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
