"""Warm pools in the twin (WarmPool=stopped): the stack's own launching hook, ECS_WARM_POOLS_CHECK
and the agent's preparation, played with the lifecycle states of docs/warm-pool-sources.md.

The pool is filled when the stack is created, as AWS does: the first boot is a cold one (the
user-data installs the agent, the agent prepares the image and completes the launching hook,
and the instance stops into the pool); every wake starts a prepared instance. ECS allows no reuse
on scale-in, so an instance that goes idle saves and terminates, and the pool is refilled.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from twin import AGENT, Twin  # noqa: E402

pytestmark = pytest.mark.skipif(not AGENT.exists(), reason=f"build the agent first: {AGENT} is missing")

BOOT = 180


def serving(tw: Twin):
    return [i for i in tw.instances.values() if i.state not in ("Terminated",) and not i.state.startswith("Warmed:")]


def warmed(tw: Twin):
    return [i for i in tw.instances.values() if i.state == "Warmed:Stopped"]


def wait_warm(tw: Twin, after: float) -> None:
    tw.wait_for("instance_warmed", BOOT, source="asg", after=after)


def events_of(tw: Twin, iid: str, name: str, after: float = 0.0) -> list[dict]:
    return [e for e in tw.named(name, source="agent") if e.get("instance") == iid and e["t"] >= after]


def test_warm_pool_prepares_serves_saves_and_refills():
    with Twin(overrides={"WarmPool": "stopped"}) as tw:
        # 1. The pool's first instance boots cold: user-data installs the agent, which prepares
        #    (the image is checked or pulled) and completes the launching hook; the group stops
        #    it. Nothing visible: DNS untouched, no game, no scale-in.
        created = time.time() - 30
        wait_warm(tw, created)
        (pooled,) = warmed(tw)
        prepared = tw.wait_for("prepared", 5, source="agent")
        assert prepared["image"] == tw.game_image and prepared["pulled"] == "false"
        launch = [a for a in tw.lifecycle_actions() if a["hook"] == "container-manager-launching"]
        assert [a["action"] for a in launch] == ["CompleteLifecycleAction"] and launch[0]["result"] == "CONTINUE"
        assert tw.record_values() == ["0.0.0.0"] and tw.desired() == 0
        assert not tw.named("dns_updated", source="agent") and not tw.named("scale_in_requested", source="agent")
        assert not tw.named("task_started", source="ecs"), "ECS_WARM_POOLS_CHECK: no game in the pool"
        assert not tw.named("graceful_stop_done", source="agent") and not tw.named("dns_reverted", source="agent")
        pool = tw.client("autoscaling").describe_warm_pool(AutoScalingGroupName=tw.deployed.group)
        assert pool["WarmPoolConfiguration"]["PoolState"] == "Stopped"
        assert [(i["InstanceId"], i["LifecycleState"]) for i in pool["Instances"]] == [(pooled.iid, "Warmed:Stopped")]
        downloads = len(tw.package.downloads)

        # 2. A lookup wakes the prepared instance: no user-data, a new address, DNS to it, the
        #    launching hook completed again, then ECS starts the game.
        woke = time.time()
        tw.player("--play-seconds", "3")
        resolved = tw.wait_for("resolved", BOOT, source="player")
        (inst,) = serving(tw)
        assert inst.container == pooled.container, "the pool's instance, not a new launch"
        assert resolved["address"] == inst.ip and inst.starts == 2
        assert len(tw.package.downloads) == downloads, "the agent was not downloaded again"
        out = [e["message"] for e in tw.journal(inst.iid, "cloud-final.service") if e["t"] >= woke]
        assert any("user-data already ran" in m for m in out), out
        assert not [e for e in tw.named("prepared", source="agent") if e["t"] >= woke], "no image step at a warm start"
        assert len([a for a in tw.lifecycle_actions() if a["hook"] == "container-manager-launching"]) == 2
        tw.wait_for("connected", 30, source="player", after=woke)

        # 3. Asleep again (the operator's path, the same save as idle): the world is saved, DNS
        #    goes back, the instance terminates (no reuse with ECS), and the pool is refilled
        #    with a freshly prepared instance.
        slept = time.time()
        scale = tw.sleep_now()
        assert scale["instance"] == inst.iid
        tw.wait_for("instance_terminated", 120, source="asg", after=slept)
        assert inst.hook_result == "CONTINUE"
        assert '"sessions": 1' in tw.save_file().read_text()
        assert tw.record_values() == ["0.0.0.0"]
        wait_warm(tw, scale["t"])
        (pooled2,) = warmed(tw)
        assert pooled2.container != pooled.container
        assert not [e for e in tw.named("task_started", source="ecs") if e["t"] > scale["t"]], "no game in the pool"
        assert '"sessions": 1' in tw.save_file().read_text(), "nothing saved the world again"

        # 4. The second wake is warm too, and the save from session 1 is there.
        woke2 = time.time()
        tw.player("--play-seconds", "2")
        second = tw.wait_for("resolved", BOOT, source="player", after=woke2)
        (inst2,) = serving(tw)
        assert inst2.container == pooled2.container and second["address"] == inst2.ip != inst.ip
        tw.wait_for("connected", 30, source="player", after=woke2)
        log = inst2.dockercmd("logs", inst2.game or "", check=False).stdout
        assert "sessions=1" in log, log


def test_a_crash_on_a_warm_started_instance_keeps_every_guarantee():
    with Twin(overrides={"WarmPool": "stopped"}) as tw:
        tw.alert_queue()
        pooled = tw.wait_pool_ready(BOOT)
        woke = time.time()
        tw.player("--play-seconds", "2")
        tw.wait_for("connected", BOOT, source="player")
        (inst,) = serving(tw)
        assert inst.container == pooled.container
        tw.wait_game_up(30, after=woke)  # a crash of a game that was up (an exit before is never_started)
        tw.plant_crash()
        scale = tw.wait_for("scale_in_requested", 30, source="agent", after=woke)
        assert scale["reason"] == "crash"
        tw.wait_for("instance_terminated", 120, source="asg", after=scale["t"])
        assert inst.hook_result == "CONTINUE" and tw.record_values() == ["0.0.0.0"] and tw.desired() == 0
        alerts = tw.alerts()
        assert len(alerts) == 1 and "exit 3" in alerts[0]["subject"], alerts
        assert "fatal: corrupted chunk at 12,-4" in alerts[0]["message"]
        # The pool refills, and the next lookup starts the new prepared instance.
        pooled2 = tw.wait_pool_ready(BOOT)
        again = time.time()
        tw.player("--play-seconds", "2")
        resolved = tw.wait_for("resolved", BOOT, source="player", after=again)
        (inst2,) = serving(tw)
        assert inst2.container == pooled2.container and resolved["address"] == inst2.ip
        tw.wait_for("connected", 30, source="player", after=again)
        assert tw.alerts() == [], "one alert per crash"
