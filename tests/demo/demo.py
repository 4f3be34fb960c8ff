"""`make demo`: the product as a user lives it, on this machine, with no AWS account.

The stack is cloud/container-manager.yaml itself, deployed into the local emulator by the cloud
twin (tests/twin): a lookup of the sleeping server's name goes through a real DNS server, its
query-log line through the stack's subscription filter to the wake function's own code, the
group launches an instance (a systemd container) whose user-data installs the agent over HTTPS,
the "ECS agent" starts the game, and the agent does the rest. The demo prints a timeline, then
the wake-to-playable breakdown, then checks the end state. Everything it creates is removed.

Two stories: players wake the server, play, leave, it saves and sleeps, and a second lookup
finds the save; then the game crashes.
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "twin"))
from timeline import breakdown, render  # noqa: E402
from twin import AGENT, RECORD, Twin  # noqa: E402


def clock(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%H:%M:%S")


def say(text: str, t: float | None = None) -> None:
    print(f"  {clock(t if t is not None else time.time())}  {text}", flush=True)


class Ordered:
    """Hands events to a narrator in time order: the agent's events come from the instance's
    journal half a second late, so each event waits a moment for earlier ones to arrive."""

    DELAY = 1.5

    def __init__(self, narrator: "Narrator") -> None:
        self.narrator = narrator
        self.pending: list[dict] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def __call__(self, e: dict) -> None:
        with self.lock:
            self.pending.append(e)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.flush(time.time() - self.DELAY)
            time.sleep(0.2)

    def flush(self, until: float = float("inf")) -> None:
        with self.lock:
            ready = sorted((e for e in self.pending if e["t"] <= until), key=lambda e: e["t"])
            self.pending = [e for e in self.pending if e["t"] > until]
        for e in ready:
            self.narrator(e)

    def close(self) -> None:
        time.sleep(self.DELAY)
        self.stop.set()
        self.thread.join(2)
        self.flush()


def where_to(target: str | None) -> str:
    """Where the agent sent a message, from its log line's `to`: "sns", or "<kind>[<n>]" for the
    n-th webhook (README, "Logs")."""
    if target == "sns":
        return "to the operator (SNS)"
    kind = (target or "").split("[")[0]
    return f"to the players ({kind.capitalize()} webhook)" if kind else "(target not logged)"


class Narrator:
    """Turns the twin's events into sentences for a person."""

    def __init__(self) -> None:
        self.first_lookup: float | None = None
        self.asleep_said = False
        self.counting = False
        self.was_active = False
        self.stopping_said = False

    def __call__(self, e: dict) -> None:
        src, name, t = e["source"], e["event"], e["t"]
        if src == "demo":
            say(e["text"], t)
            return
        if src == "player" and name == "lookup":
            if e["answer"] == ["0.0.0.0"] and not self.asleep_said:
                self.first_lookup = self.first_lookup or t
                self.asleep_said = True
                say(f"player looks up {e['name']} -> 0.0.0.0 (asleep); retrying every second", t)
        elif src == "player" and name == "resolved":
            say(f"player looks up {RECORD} -> {e['address']}", t)
        elif src == "player" and name == "connected":
            since = f", {t - self.first_lookup:.1f} s after the first lookup" if self.first_lookup else ""
            say(f"player connected{since}", t)
        elif src == "player" and name == "left":
            say("the player logs off", t)
        elif name == "wake_invoked" and e.get("result") == "woken":
            say(f"query log -> subscription filter -> wake function: desired capacity 1 ({e['duration_ms']:.0f} ms)", t)
        elif name == "wake_invoked" and e.get("result") == "stopping" and not self.stopping_said:
            self.stopping_said = True
            say("wake function: the last instance is still saving; not starting a second one", t)
        elif src == "asg" and name == "instance_started":
            say(f"Auto Scaling launched instance {e['instance']} (public IP {e['ip']})", t)
        elif src == "instance" and name == "user_data_output" and "exited with status" in e["message"]:
            ok = "status 0" in e["message"]
            say(f"user-data {'installed the agent (sha256 ok)' if ok else 'FAILED: ' + e['message']}", t)
        elif src == "ecs" and name == "task_started":
            say("ECS started the game container (host network, world on EFS)", t)
        elif src == "agent" and name == "dns_updated":
            say(f"agent up, {RECORD} -> {e.get('ip')}", t)
        elif src == "agent" and name == "sample":
            active = int(e.get("packets", 0) or 0) >= 2 * int(e.get("interval_ms", 1000) or 1000) / 1000 \
                or int(e.get("players", 0) or 0) > 0
            if active and not self.was_active:
                online = f"{e['players']} online, " if "players" in e else ""
                say(f"players are playing ({online}{e.get('packets')} packets in the last second)", t)
                self.counting = False
            self.was_active = active
        elif src == "agent" and name == "idle_countdown" and not self.counting:
            self.counting = True
            say(f"quiet: {e.get('basis')}; idle in {e.get('remaining_s')} s unless someone plays", t)
        elif src == "agent" and name == "scale_in_requested":
            say(f"{e.get('detail') or e.get('reason')} -> scaling to zero", t)
        elif src == "asg" and name == "instance_terminating":
            say("the group holds the instance in Terminating:Wait (lifecycle hook)", t)
        elif src == "agent" and name == "container_exited":
            say(f"game container {'crashed' if e.get('crash') in (True, 'true') else 'stopped'} (exit code {e.get('exit_code')})", t)
        elif src == "agent" and name == "alert_sent":
            say(f"alert sent {where_to(e.get('to'))}: \"{e.get('subject')}\"", t)
        elif src == "agent" and name == "graceful_stop_done":
            if e.get("container") in (None, "none"):
                say("no game container left to stop", t)
            elif e.get("exited_on_its_own") == "true":
                say(f"game saved and stopped on SIGTERM (exit {e.get('exit_code')}) in {int(e.get('duration_ms', 0)) / 1000:.1f} s", t)
            else:
                say(f"game did not stop on its own (exit {e.get('exit_code')})", t)
        elif src == "agent" and name == "dns_reverted":
            say(f"{RECORD} -> 0.0.0.0 (nobody is sent to a dead address)", t)
        elif src == "agent" and name == "lifecycle_completed":
            say("lifecycle action completed: the instance may go", t)
        elif src == "asg" and name == "instance_terminated":
            say("instance terminated: zero instances, cost back to zero", t)


def check(label: str, ok: bool) -> bool:
    print(f"    [{'ok' if ok else 'FAILED'}] {label}")
    return ok


def story_wake_play_sleep() -> bool:
    print("\nStory 1: a lookup wakes the sleeping server; players play, leave; it saves and sleeps")
    narrator = Narrator()
    ordered = Ordered(narrator)
    with Twin(on_event=ordered) as tw:
        say(f"stack deployed from cloud/container-manager.yaml; {tw.desired()} instances; {RECORD} -> {tw.record_values()[0]}")
        tw.player("--play-seconds", "10", "--rate", "10")
        tw.wait_for("left", 240, source="player")
        first = tw.instances[next(iter(tw.instances))]
        tw.wait_for("instance_terminated", 200, source="asg")
        ordered.flush()
        rows = breakdown(tw.events)
        save = tw.save_file().read_text() if tw.save_file().exists() else ""
        print("  a second player looks the name up:")
        narrator.first_lookup, narrator.asleep_said = None, False
        since = time.time()
        tw.player("--play-seconds", "2", "--rate", "10")
        tw.wait_for("connected", 240, source="player", after=since)
        ordered.close()
        second = [i for i in tw.instances.values() if i.iid != first.iid][0]
        log = tw.game_log(second)
        loaded = next((line for line in log.splitlines() if "loaded save" in line), "")
        say(f"the game on {second.iid}: {loaded}")
        print("\n  wake-to-playable, first wake (seconds since the first lookup, and step by step):")
        print("\n".join(render(rows)))
        print("  end state:")
        return all([
            check(f"first instance {first.iid}: lifecycle hook {first.hook_result}", first.hook_result == "CONTINUE"),
            check(f"save written by the first session: {save.strip()}", '"sessions": 1' in save),
            check(f"second instance {second.iid} has a new address {second.ip} (first {first.ip})", second.ip != first.ip),
            check("second session loaded the first session's save", "sessions=1" in loaded),
        ])


def story_crash() -> bool:
    print("\nStory 2: the game crashes")
    ordered = Ordered(Narrator())
    with Twin(on_event=ordered) as tw:
        tw.alert_queue()
        tw.player("--play-seconds", "2")
        tw.wait_for("connected", 240, source="player")
        tw.wait_game_up(30)  # the agent has the game's answer: an exit now is a crash
        # Through the queue, so that it comes after the events of the moments before it.
        ordered({"source": "demo", "event": "say", "t": time.time(), "text": "a bug in the game: it will crash now"})
        tw.plant_crash()
        tw.wait_for("instance_terminated", 200, source="asg")
        ordered.close()
        alerts = tw.alerts()
        print("  the alert, as a phone shows it:")
        for a in alerts:
            print(f"    Subject: {a['subject']}")
            for line in (a["message"] or "").splitlines():
                print(f"    | {line}")
        print("  end state:")
        return all([
            check(f"desired capacity is {tw.desired()}, {len(tw.active())} instances", tw.desired() == 0 and not tw.active()),
            check(f"{RECORD} -> {tw.record_values()}", tw.record_values() == ["0.0.0.0"]),
            check(f"exactly one alert ({len(alerts)})", len(alerts) == 1),
            check("the alert has the exit code and the last log lines",
                  bool(alerts) and "exit 3" in alerts[0]["subject"] and "fatal: corrupted chunk" in alerts[0]["message"]),
        ])


def main() -> int:
    if not AGENT.exists():
        print(f"demo: the agent binary is missing ({AGENT}); run `make demo`", file=sys.stderr)
        return 1
    print("container-manager demo: the real stack in a local twin of AWS (no account needed).")
    print("The game is a container, the instance a systemd container, the player a network namespace.")
    print("Short timings from the stack's own parameters: samples every 1 s, idle after 1 minute.")
    start = time.time()
    ok = story_wake_play_sleep() and story_crash()
    print(f"\ndemo {'finished' if ok else 'FAILED'} in {time.time() - start:.0f} s; everything it created is removed.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
