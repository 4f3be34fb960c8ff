"""The whole loop from the real stack: the stories of tests/twin/README.md, each on a fresh twin.

Timings come from the stack's own parameters (IdleMinutes 1, SampleIntervalSeconds 1,
BootGraceMinutes 0, StopTimeoutSeconds 10). Bounds below are generous correctness bounds, not
performance targets: `make bench` measures the times.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from twin import AGENT, RECORD, ROOT, ZONE, Twin, sh  # noqa: E402

pytestmark = pytest.mark.skipif(not AGENT.exists(), reason=f"build the agent first: {AGENT} is missing")

BOOT = 180  # seconds a wake may take, lookup to playable, on a loaded 2-core machine


def only_instance(tw: Twin):
    (inst,) = tw.active()
    return inst


def game_log(tw: Twin, inst) -> str:
    return tw.game_log(inst)


def completions(tw: Twin, iid: str) -> list[dict]:
    return [a for a in tw.lifecycle_actions() if a["action"] == "CompleteLifecycleAction" and a["instance_id"] == iid]


def assert_runs_under_the_hardened_unit(tw: Twin, inst) -> None:
    """The user-data's bare-binary path installed the packaged unit (printed by the binary with
    /usr/local/bin), and systemd runs the agent as it says: its own user, CAP_NET_RAW only."""
    unit = "container-manager-agent.service"
    installed = sh("docker", "exec", inst.container, "cat", f"/etc/systemd/system/{unit}").stdout
    packaged = (ROOT / "packaging" / unit).read_text().replace(
        "/usr/bin/container-manager-agent", "/usr/local/bin/container-manager-agent")
    assert installed == packaged
    show = sh("docker", "exec", inst.container, "systemctl", "show", unit, "-p",
              "User,SupplementaryGroups,CapabilityBoundingSet,AmbientCapabilities,NoNewPrivileges,"
              "ProtectSystem,Type,ActiveState,MainPID").stdout
    props = dict(line.split("=", 1) for line in show.splitlines() if "=" in line)
    assert (props["User"], props["SupplementaryGroups"]) == ("container-manager", "docker"), props
    assert (props["CapabilityBoundingSet"], props["AmbientCapabilities"]) == ("cap_net_raw", "cap_net_raw"), props
    assert (props["NoNewPrivileges"], props["ProtectSystem"], props["Type"]) == ("yes", "strict", "notify"), props
    assert props["ActiveState"] == "active", props
    uid = sh("docker", "exec", inst.container, "id", "-u", "container-manager").stdout.strip()
    status = sh("docker", "exec", inst.container, "cat", f"/proc/{props['MainPID']}/status").stdout
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["Uid"].split() == [uid] * 4, fields["Uid"]
    assert fields["CapEff"].strip() == "0000000000002000", fields["CapEff"]  # bit 13: CAP_NET_RAW
    assert fields["NoNewPrivs"].strip() == "1" and fields["Seccomp"].strip() == "2"


def assert_the_players_were_told(tw: Twin, inst, stop: dict) -> None:
    """The stack's webhook (WebhookKind discord, the URL in SSM) reached the players' channel:
    `online` with the address, then `idle_stop` after the save; the URL never in the journal."""
    posts = [p for p in tw.package.posts if p["client"] == inst.ip]
    assert [p["status"] for p in posts] == [204, 204], posts
    embeds = [p["body"]["embeds"][0] for p in posts]
    assert [e["footer"]["text"] for e in embeds] == ["container-manager · online", "container-manager · idle_stop"]
    assert embeds[0]["title"] == f"{RECORD} is up"
    assert any(f["name"] == "Address" and f["value"] == inst.ip for f in embeds[0]["fields"]), embeds[0]
    assert embeds[1]["title"] == f"{RECORD} stopped: nobody was playing"
    assert "The world was saved" in embeds[1]["description"], embeds[1]
    assert posts[1]["t"] >= stop["t"], "told after the save"
    journal = json.dumps(tw.journal(inst.iid, "container-manager-agent.service"))
    assert tw.package.hook_token not in journal
    assert "alert_sent" in journal


def test_story_1_wake_play_sleep_wake_again():
    with Twin() as tw:
        assert tw.desired() == 0 and tw.active() == []
        assert tw.record_values() == ["0.0.0.0"], "the custom resource creates the record at the placeholder"
        tw.player("--play-seconds", "12", "--rate", "10")
        first = tw.wait_for("lookup", 10, source="player")
        assert first["answer"] == ["0.0.0.0"], "a sleeping server answers with the placeholder"
        woken = tw.wait_for("wake_invoked", 15, pred=lambda e: e["result"] == "woken")
        assert tw.desired() == 1
        assert f"Woke {tw.deployed.group}: a DNS query asked for {RECORD}." in tw.function_log("WakeFunction")
        assert any(line.startswith("Create ServerRecord: SUCCESS") for line in tw.function_log("HelperFunction"))
        resolved = tw.wait_for("resolved", BOOT, source="player")
        inst = only_instance(tw)
        assert resolved["address"] == inst.ip
        # The user-data installed the agent with the sha256 check, and the agent pointed DNS.
        out = [e["message"] for e in tw.journal(inst.iid, "cloud-final.service")]
        assert any("user-data exited with status 0" in m for m in out), out
        dns = tw.wait_for("dns_updated", 5, source="agent")
        # The agent logs dns_updated once the change is INSYNC, so a player may resolve the new
        # address a moment before that line: only the wake is ordered before it.
        assert dns["ip"] == inst.ip and woken["t"] < dns["t"]
        assert_runs_under_the_hardened_unit(tw, inst)
        connected = tw.wait_for("connected", 30, source="player")
        assert connected["address"] == inst.ip
        # The players heard it was coming, once for all those lookups: from the wake function,
        # before the agent's "online".
        lookups = [e for e in tw.events if e.get("source") == "player" and e["event"] == "lookup"
                   and e["t"] <= resolved["t"]]
        assert len(lookups) >= 3, f"the story wants several lookups before the answer: {lookups}"
        (waking,) = [p for p in tw.package.posts if p["client"] != inst.ip]
        assert waking["status"] == 204 and waking["body"]["embeds"][0]["title"] == f"{RECORD}: waking up", waking
        assert waking["body"]["embeds"][0]["description"] == "Usually ready in about 4 minutes."
        online = tw.wait_for("alert_sent", 10, source="agent", pred=lambda e: e.get("alert") == "online")
        assert waking["t"] < online["t"]
        assert "Told the players it is waking." in tw.function_log("WakeFunction")
        tw.wait_for("left", 40, source="player")

        # Players gone: idle after a minute, the world saved, DNS back, zero instances.
        scale = tw.wait_for("scale_in_requested", 150, source="agent")
        assert scale["reason"] == "idle"
        tw.wait_instances(0, 150)
        assert tw.desired() == 0
        assert tw.record_values() == ["0.0.0.0"]
        assert [a["result"] for a in completions(tw, inst.iid)] == ["CONTINUE"]
        assert inst.hook_result == "CONTINUE", "the agent completed the hook (not its timeout)"
        save = tw.save_file().read_text()
        assert '"sessions": 1' in save, save
        # No pre-stop command in the example: the game saves on SIGTERM and exits 0 by itself.
        stop = tw.wait_for("graceful_stop_done", 1, source="agent")
        assert stop["exited_on_its_own"] == "true" and stop["exit_code"] == "0", stop
        assert_the_players_were_told(tw, inst, stop)

        # A second lookup wakes a new instance, with a new address, and the save is there.
        tw.player("--play-seconds", "3", "--rate", "10")
        second = tw.wait_for("resolved", BOOT, source="player", after=scale["t"])
        (inst2,) = tw.active()
        assert inst2.iid != inst.iid and second["address"] == inst2.ip != inst.ip
        tw.wait_for("connected", 30, source="player", after=second["t"])
        assert "loaded save" in game_log(tw, inst2) and "sessions=1" in game_log(tw, inst2)
        # A new wake, a new notice.
        assert len([p for p in tw.package.posts if p["client"] not in (inst.ip, inst2.ip)]) == 2


def test_story_2_resolvers_as_they_are():
    with Twin() as tw:
        # Another name in the zone (the user's web site): its lookups reach the function, which
        # leaves the server asleep. An AAAA-only lookup does not wake it either while the stack
        # has no IPv6 (there would be no address to give).
        tw.client("route53").change_resource_record_sets(HostedZoneId=tw.zone_id, ChangeBatch={"Changes": [{
            "Action": "CREATE", "ResourceRecordSet": {"Name": f"www.{ZONE}", "Type": "A", "TTL": 300,
                                                      "ResourceRecords": [{"Value": "192.0.2.80"}]}}]})
        tw.player("--lookups-only", "2", name=f"www.{ZONE}").wait(20)
        tw.player("--lookups-only", "2", "--qtype", "AAAA").wait(20)
        time.sleep(2)
        results = [e["result"] for e in tw.named("wake_invoked")]
        assert results and set(results) == {"ignored"}, results
        assert tw.desired() == 0 and tw.active() == []

        # DNS 0x20: the name in random letter case, logged as sent, wakes the server.
        tw.player("--mix-case", "--play-seconds", "2")
        lookup = tw.wait_for("lookup", 10, source="player",
                             pred=lambda e: e["name"] != RECORD and e["name"].lower() == RECORD)
        assert lookup["name"].lower() == RECORD and lookup["echoed"] == lookup["name"]
        logged = tw.wait_for("query_logged", 5, pred=lambda e: f" {lookup['name']} A " in e["line"])
        assert logged["line"].startswith("1.0 ") and f" {tw.zone_id} " in logged["line"]
        tw.wait_for("wake_invoked", 15, pred=lambda e: e["result"] == "woken")
        resolved = tw.wait_for("resolved", BOOT, source="player")
        assert resolved["address"] == only_instance(tw).ip


def test_story_3_crash():
    with Twin() as tw:
        tw.alert_queue()
        tw.player("--play-seconds", "3")
        tw.wait_for("connected", BOOT, source="player")
        inst = only_instance(tw)
        tw.wait_game_up(30)  # a crash of a game that was up (an exit before is never_started)
        tw.plant_crash()
        exited = tw.wait_for("container_exited", 30, source="agent")
        assert exited["exit_code"] in (3, "3") and exited["crash"] in (True, "true")
        scale = tw.wait_for("scale_in_requested", 10, source="agent")
        assert scale["reason"] == "crash"
        tw.wait_instances(0, 150)
        assert [a["result"] for a in completions(tw, inst.iid)] == ["CONTINUE"]
        assert tw.record_values() == ["0.0.0.0"] and tw.desired() == 0
        alerts = tw.alerts()
        assert len(alerts) == 1, alerts
        assert "exit 3" in alerts[0]["subject"]
        assert "fatal: corrupted chunk at 12,-4" in alerts[0]["message"]

        # The next lookup wakes it again, and the game runs.
        tw.player("--play-seconds", "2")
        resolved = tw.wait_for("resolved", BOOT, source="player", after=scale["t"])
        assert resolved["address"] == only_instance(tw).ip != inst.ip
        tw.wait_for("connected", 30, source="player", after=resolved["t"])
        assert tw.alerts() == [], "one alert per crash"


def test_story_4_lookups_while_it_goes_to_sleep():
    # A save that takes 8 s (the game's SAVE_SECONDS, as a container variable of the stack).
    with Twin(overrides={"Env5": "SAVE_SECONDS=8"}) as tw:
        tw.player("--play-seconds", "2")
        tw.wait_for("connected", BOOT, source="player")
        inst = only_instance(tw)
        tw.wait_for("left", 30, source="player")
        # To sleep through the operator's path (set-desired-capacity 0, the call the agent makes
        # on idle; story 1 waits for idle itself): the same hook, the same save.
        scale = {"t": time.time()}
        tw.client("autoscaling").set_desired_capacity(
            AutoScalingGroupName=tw.deployed.group, DesiredCapacity=0, HonorCooldown=False)
        tw.wait_for("instance_terminating", 10, source="asg")
        # DNS goes back at the start of the save, so a lookup now is not sent to the old server.
        reverted = tw.wait_for("dns_reverted", 20, source="agent")
        # Players look the name up while the instance saves.
        tw.player("--play-seconds", "2", "--give-up", "200")
        stopping = tw.wait_for("wake_invoked", 20, pred=lambda e: e["result"] == "stopping", after=scale["t"])
        assert inst.state.startswith("Terminating"), inst.state
        assert len(tw.active()) == 1, "a second instance started while the first was saving"
        stopped = tw.wait_for("graceful_stop_done", 60, source="agent")
        assert reverted["t"] < stopped["t"] - 5, "DNS went back only after the 8 s save"
        resolved = tw.wait_for("resolved", BOOT, source="player", after=scale["t"])
        (inst2,) = tw.active()
        assert resolved["address"] == inst2.ip != inst.ip
        assert inst.terminated_at is not None and inst2.launched_at >= inst.terminated_at
        assert stopping["t"] < inst.terminated_at
        woken = [e for e in tw.named("wake_invoked") if e["result"] == "woken" and e["t"] > scale["t"]]
        assert len(woken) == 1 and woken[0]["t"] >= stopped["t"]
        # No lookup after the revert was sent to the old instance.
        after_revert = [e["answer"] for e in tw.named("lookup", source="player") if reverted["t"] < e["t"] <= resolved["t"]]
        assert ["0.0.0.0"] in after_revert and all(a in (["0.0.0.0"], [inst2.ip]) for a in after_revert), after_revert
        tw.wait_for("connected", 30, source="player", after=resolved["t"])
        assert "sessions=1" in game_log(tw, inst2), "the new instance loads the save the old one finished"


def test_story_5_an_agent_that_never_starts():
    with Twin(package_path="/releases/missing/container-manager-agent") as tw:
        tw.player("--lookups-only", "1")
        tw.wait_for("instance_started", 60, source="asg")
        inst = only_instance(tw)
        failed = tw.wait_for("user_data_output", 120, source="instance",
                             pred=lambda e: "user-data exited with status" in e["message"])
        assert "status 1" in failed["message"]
        out = "\n".join(e["message"] for e in tw.journal(inst.iid, "cloud-final.service"))
        assert "error: cannot download the agent from https://" in out, out
        assert "the agent is not installed" in out
        heartbeats = [m for m in tw.metrics() if m["name"] == "AgentHeartbeat"]
        assert len(heartbeats) == 1, heartbeats
        assert heartbeats[0]["dimensions"] == {"AutoScalingGroupName": tw.deployed.group}
        points = heartbeats[0]["datapoints"]
        assert points and all(p["max"] == 0 for p in points), points
        assert tw.record_values() == ["0.0.0.0"], "nothing pointed the name at an instance without an agent"


def test_story_6_a_wrong_sha256_installs_nothing():
    with Twin(package_sha256="0" * 64) as tw:
        tw.player("--lookups-only", "1")
        tw.wait_for("instance_started", 60, source="asg")
        inst = only_instance(tw)
        tw.wait_for("user_data_output", 120, source="instance",
                    pred=lambda e: "user-data exited with status 1" in e["message"])
        out = "\n".join(e["message"] for e in tw.journal(inst.iid, "cloud-final.service"))
        assert f"not {'0' * 64} (AgentPackageSha256); nothing was installed" in out, out
        assert tw.package.sha256 in out, "the reason shows the sha256 that was downloaded"
        ls = sh("docker", "exec", inst.container, "ls", "/usr/local/bin/container-manager-agent",
                "/etc/systemd/system/container-manager-agent.service", check=False)
        assert ls.returncode != 0 and "No such file" in ls.stderr
        assert tw.record_values() == ["0.0.0.0"]


def test_story_7_ipv6_an_aaaa_lookup_wakes_and_the_player_plays_over_ipv6():
    # No webhook here: story 1 covers the notifications, this one the IPv6 path.
    with Twin(overrides={"IPv6": "true", "WebhookKind": "none"}) as tw:
        assert tw.record_values("AAAA") is None, "no AAAA record while the server sleeps"
        # An IPv6-only client: it asks for AAAA only, and plays over IPv6.
        tw.player("--qtype", "AAAA", "--play-seconds", "5", "--rate", "10")
        first = tw.wait_for("lookup", 10, source="player")
        assert first["qtype"] == "AAAA" and first["answer"] == []
        logged = tw.wait_for("query_logged", 5, pred=lambda e: f" {RECORD} AAAA " in e["line"])
        assert logged["line"].startswith("1.0 ")
        tw.wait_for("wake_invoked", 15, pred=lambda e: e["result"] == "woken")
        resolved = tw.wait_for("resolved", BOOT, source="player")
        inst = only_instance(tw)
        assert inst.ip6 and resolved["address"] == inst.ip6
        # The agent keeps the AAAA record in step with the A record.
        assert tw.record_values("AAAA") == [inst.ip6] and tw.record_values() == [inst.ip]
        connected = tw.wait_for("connected", 30, source="player")
        assert connected["address"] == inst.ip6
        # Its packets over IPv6 count as activity.
        tw.wait_for("sample", 20, source="agent", after=connected["t"],
                    pred=lambda e: int(e.get("packets", 0) or 0) > 0)
        tw.wait_for("left", 40, source="player")
        # On the way down (the operator's path: the same save and DNS revert as idle, which
        # stories 1 and 4 wait for).
        assert tw.sleep_now()["instance"] == inst.iid
        tw.wait_instances(0, 150)
        assert tw.record_values() == ["0.0.0.0"]
        # The agent deletes its AAAA record on the way down (no AAAA placeholder): an AAAA lookup
        # then gets no address, and the A record's placeholder answers the A lookup.
        assert tw.record_values("AAAA") is None
        assert tw.desired() == 0
