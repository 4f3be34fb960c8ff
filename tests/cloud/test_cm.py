"""cloud/cm, the operator's one command: every verb has --help, and bad input (an unknown verb,
a missing or broken parameter file, a stack that does not exist) gets one clear line and exit 2.
The verbs against a deployed stack are the stories in tests/twin/test_twin_operator.py."""

import json
import os
import subprocess
import sys
import time

from conftest import ROOT, VENV_BIN

CM = ROOT / "cloud" / "cm"
VERBS = ["deploy", "destroy", "status", "wake", "sleep", "logs", "import", "export", "backups", "restore", "shell"]


def run(args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"PATH": f"{VENV_BIN}:{env['PATH']}", "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing"})
    env.update(env_extra or {})
    return subprocess.run([str(CM), *args], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_every_verb_has_help_and_the_top_level_lists_them():
    top = run(["--help"])
    assert top.returncode == 0
    for verb in VERBS:
        assert verb in top.stdout
        r = run([verb, "--help"])
        assert r.returncode == 0 and "PARAMS.json" in r.stdout and "--region" in r.stdout, (verb, r.stdout)
    for verb in ("status", "wake", "sleep", "logs"):
        assert "--json" in run([verb, "--help"]).stdout
    assert "--force" in run(["sleep", "--help"]).stdout


def test_bad_input_gets_one_line_and_exit_2(tmp_path, params):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    nameless = tmp_path / "nameless.json"
    nameless.write_text('[{"ParameterKey": "RecordName", "ParameterValue": "x.example.com"}]')
    base = tmp_path / "base.json"
    base.write_text('[{"ParameterKey": "BaseName", "ParameterValue": "community"}]')
    cases = [
        (["status", str(base)], "base.json: a base's parameter file (BaseName community); give a game's file"),
        (["bogus", str(params)], "invalid choice: 'bogus'"),
        (["status", str(tmp_path / "missing.json")], "missing.json: no such parameter file"),
        (["status", str(broken)], "broken.json: not a parameter file like cloud/examples/*.json"),
        (["wake", str(nameless)], "nameless.json: ServerName is missing"),
        (["status"], "the following arguments are required: PARAMS.json"),
    ]
    for args, expected in cases:
        r = run([*args, "--region", "eu-west-1"], {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and expected in lines[0], (args, r.stderr)


def test_a_stack_that_does_not_exist_is_named(params, moto_endpoint, aws):
    for verb in ("status", "wake", "sleep", "logs"):
        r = run([verb, str(params), "--region", "eu-west-1"], {"AWS_ENDPOINT_URL": moto_endpoint})
        assert r.returncode == 2, r
        assert r.stderr.strip() == "cm: no stack valheim in eu-west-1: deploy it first (cloud/cm deploy PARAMS.json)"


def test_deploy_passes_the_package_to_the_deploy_command_and_takes_the_world_flags(tmp_path, params):
    """cloud/cm deploy is cloud/deploy.sh deploy: a package for another architecture is refused by
    it, before any AWS call, and the world flags are its own."""
    package = tmp_path / "container-manager-agent"
    package.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9) + (2).to_bytes(2, "little") + (0xB7).to_bytes(2, "little")
                        + bytes(44))
    r = run(["deploy", str(params), "--region", "eu-west-1", "--package", str(package), "--adopt-world"],
            {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert r.returncode == 2, r.stderr
    assert f"deploy: error: {package} is built for aarch64 (arm64), but the instance is x86_64" in r.stderr
    help_text = run(["deploy", "--help"]).stdout
    assert "--adopt-world" in help_text and "--replace-world" in help_text


def test_logs_shows_the_games_log_and_the_wake_functions_from_the_stack_and_never_the_missing_group(params, moto_endpoint, aws):
    """A stack with the two log groups cm logs reads (the real template's logical ids and names),
    lines in each, and no Auto Scaling group: each log's last lines in time order, and the
    missing group named rather than a failure."""
    template = {"Resources": {
        "ContainerLogGroup": {"Type": "AWS::Logs::LogGroup",
                              "Properties": {"LogGroupName": "/container-manager/valheim/game"}},
        "AgentLogGroup": {"Type": "AWS::Logs::LogGroup",
                          "Properties": {"LogGroupName": "/container-manager/valheim/agent"}},
        "WakeLogGroup": {"Type": "AWS::Logs::LogGroup", "Properties": {}}}}
    cf = aws("cloudformation")
    cf.create_stack(StackName="valheim", TemplateBody=json.dumps(template))
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                for r in cf.list_stack_resources(StackName="valheim")["StackResourceSummaries"]}
    logs = aws("logs")
    now = int(time.time() * 1000)
    for group, stream, messages, first in (
            (physical["ContainerLogGroup"], "game/game/abc", ["three hours ago"] + [f"line {i}" for i in range(8)],
             now - 3 * 3600_000),
            (physical["WakeLogGroup"], "2026/12/06/[$LATEST]x", ["Woke container-manager-valheim: lookup"], now),
            # Two instances' decision lines, each in its own stream, interleaved in time.
            (physical["AgentLogGroup"], "i-0aaa", ["INFO agent_started: Agent started.",
                                                   "INFO scale_in_requested: Scaling to zero: idle. reason=idle"],
             now - 60_005),
            (physical["AgentLogGroup"], "i-0bbb", ["INFO agent_started: Agent started. (second)"], now - 60_000)):
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        # The first line of the game's is older than --since's 60 minutes.
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
            {"timestamp": first if i == 0 else now - 60_000 + i, "message": m} for i, m in enumerate(messages)])
    env = {"AWS_ENDPOINT_URL": moto_endpoint}
    r = run(["logs", str(params), "--region", "us-east-1", "--lines", "50", "--json"], env)
    assert r.returncode == 0, r.stderr
    assert [e["message"] for e in json.loads(r.stdout)["game"]["lines"]] == [f"line {i}" for i in range(8)]
    r = run(["logs", str(params), "--region", "us-east-1", "--lines", "5", "--json"], env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["game"]["log_group"] == "/container-manager/valheim/game"
    assert [e["message"] for e in out["game"]["lines"]] == [f"line {i}" for i in range(3, 8)]
    assert [e["message"] for e in out["wake_path"]["lines"]] == ["Woke container-manager-valheim: lookup"]
    assert out["last_stop"] is None and "container-manager-valheim is not there" in out["records_error"]
    text = run(["logs", str(params), "--region", "us-east-1", "--lines", "2"], env)
    assert text.returncode == 0, text.stderr
    assert "the game (/container-manager/valheim/game): 2 line(s)" in text.stdout and "line 7" in text.stdout
    agent = [(e["stream"], e["message"]) for e in out["agent"]["lines"]]
    assert agent == [("i-0aaa", "INFO agent_started: Agent started."),
                     ("i-0bbb", "INFO agent_started: Agent started. (second)"),
                     ("i-0aaa", "INFO scale_in_requested: Scaling to zero: idle. reason=idle")], agent
    assert out["agent"]["log_group"] == "/container-manager/valheim/agent" and "note" not in out["agent"]
    assert "i-0aaa  INFO scale_in_requested: Scaling to zero: idle. reason=idle" in text.stdout, text.stdout
    # A stack deployed before it had the agent's group: said, with what to do.
    cf.delete_stack(StackName="valheim")
    del template["Resources"]["AgentLogGroup"]
    cf.create_stack(StackName="valheim", TemplateBody=json.dumps(template))
    old = run(["logs", str(params), "--region", "us-east-1", "--lines", "2"], env)
    assert old.returncode == 0, old.stderr
    assert "the agent's decisions: no log group (this stack keeps no agent log group" in old.stdout, old.stdout
    bad = run(["logs", str(params), "--region", "us-east-1", "--since", "0"], env)
    assert bad.returncode == 2 and "--since and --lines must be 1 or more" in bad.stderr


def test_wake_tells_the_players_webhook_once_and_a_second_wake_tells_nobody(params, moto_endpoint, aws):
    """cloud/cm wake wakes the server and posts "waking" to the webhook the stack's parameters
    name, as a lookup's wake does; the URL comes from SSM and is never printed."""
    sys.path.insert(0, str(ROOT / "tests" / "cloud"))
    from test_wake import Receiver

    receiver = Receiver()
    try:
        template = {"Parameters": {k: {"Type": t} for k, t in (
                        ("WebhookKind", "String"), ("WebhookUrlParameter", "String"),
                        ("WebhookEvents", "CommaDelimitedList"), ("WarmPool", "String"))},
                    "Resources": {"WakeLogGroup": {"Type": "AWS::Logs::LogGroup", "Properties": {}}}}
        aws("cloudformation").create_stack(StackName="valheim", TemplateBody=json.dumps(template), Parameters=[
            {"ParameterKey": k, "ParameterValue": v} for k, v in {
                "WebhookKind": "json", "WebhookUrlParameter": "/container-manager/valheim/hook",
                "WebhookEvents": "waking,online", "WarmPool": "stopped"}.items()])
        aws("ssm").put_parameter(Name="/container-manager/valheim/hook", Type="SecureString", Value=receiver.url)
        aws("ec2").create_launch_template(LaunchTemplateName="game", LaunchTemplateData={
            "ImageId": "ami-12c6146b", "InstanceType": "t3a.medium"})
        subnet = aws("ec2").describe_subnets()["Subnets"][0]["SubnetId"]
        aws("autoscaling").create_auto_scaling_group(
            AutoScalingGroupName="container-manager-valheim", MinSize=0, MaxSize=1, DesiredCapacity=0,
            LaunchTemplate={"LaunchTemplateName": "game"}, VPCZoneIdentifier=subnet)
        env = {"AWS_ENDPOINT_URL": moto_endpoint}
        r = run(["wake", str(params), "--region", "us-east-1", "--json"], env)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert (out["result"], out["players_told"]) == ("waking", "yes"), out
        (post,) = receiver.posts
        assert post["body"] == {"source": "container-manager", "event": "waking",
                                "title": "valheim.example.com: waking up", "message": "Usually ready in about 1 minute."}
        again = run(["wake", str(params), "--region", "us-east-1"], env)
        assert again.returncode == 0 and "already awake or waking" in again.stdout, again
        assert len(receiver.posts) == 1
        assert "sEcReT" not in r.stdout + r.stderr + again.stdout + again.stderr
        # A webhook that is gone: the wake stands, and the output says why nobody was told.
        aws("ssm").delete_parameter(Name="/container-manager/valheim/hook")
        aws("autoscaling").set_desired_capacity(AutoScalingGroupName="container-manager-valheim", DesiredCapacity=0)
        gone = run(["wake", str(params), "--region", "us-east-1"], env)
        assert gone.returncode == 0, gone.stderr
        assert "valheim: waking" in gone.stdout and "players told: no: aws ssm get-parameter" in gone.stdout, gone.stdout
    finally:
        receiver.close()


def test_status_reads_the_stop_record_with_its_counts_and_an_older_agents_without(params, moto_endpoint, aws):
    """The last-stop tag: "<at> <reason> players=<n|unknown> up=<m>m <text>" from this agent,
    "<at> <reason> <text>" from an older one; both are shown, the counts only when kept."""
    aws("cloudformation").create_stack(StackName="valheim", TemplateBody=json.dumps(
        {"Resources": {"WakeLogGroup": {"Type": "AWS::Logs::LogGroup", "Properties": {}}}}))
    aws("ec2").create_launch_template(LaunchTemplateName="game", LaunchTemplateData={
        "ImageId": "ami-12c6146b", "InstanceType": "t3a.medium"})
    subnet = aws("ec2").describe_subnets()["Subnets"][0]["SubnetId"]
    group = "container-manager-valheim"
    aws("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=group, MinSize=0, MaxSize=1, DesiredCapacity=0,
        LaunchTemplate={"LaunchTemplateName": "game"}, VPCZoneIdentifier=subnet)
    env = {"AWS_ENDPOINT_URL": moto_endpoint}
    at = int(time.time()) - 120
    for value, players, minutes, detail, shown in (
            (f"{at} max_uptime players=2 up=480m the instance has been up for 8h", 2, 480,
             "the instance has been up for 8h", "(2 player(s) online then, up 480 min)"),
            (f"{at} never_started players=unknown up=3m the game never started: exit 1", None, 3,
             "the game never started: exit 1", "(players unknown, up 3 min)"),
            (f"{at} idle no players for 7m", None, None, "no players for 7m", None)):
        aws("autoscaling").create_or_update_tags(Tags=[{
            "ResourceId": group, "ResourceType": "auto-scaling-group", "Key": "container-manager:last-stop",
            "Value": value, "PropagateAtLaunch": False}])
        r = run(["status", str(params), "--region", "us-east-1", "--json"], env)
        assert r.returncode == 0, r.stderr
        stop = json.loads(r.stdout)["last_stop"]
        assert (stop["players"], stop["minutes_up"], stop["detail"]) == (players, minutes, detail), stop
        text = run(["status", str(params), "--region", "us-east-1"], env).stdout
        assert f"why: {detail}" + (f" {shown}" if shown else "\n") in text, text


def _cm_module():
    """cloud/cm as a module, for its decisions over what AWS answers (a fake `aws`)."""
    import importlib.machinery
    import types

    loader = importlib.machinery.SourceFileLoader("cm_script", str(CM))
    module = types.ModuleType(loader.name)
    module.__file__ = str(CM)
    loader.exec_module(module)
    return module


def test_a_launch_that_failed_shows_as_failed_with_the_groups_reason_and_sleep_stops_the_retries(capsys):
    """moto records no failed launch, so this runs cm's status on the answers AWS gives when the
    group cannot launch: desired 1, no instance, the latest activity Failed with its message."""
    cm = _cm_module()
    started = "2026-12-06T19:00:00Z"
    message = ("We currently do not have sufficient t3a.medium capacity in the Availability Zone you "
               "requested (us-east-1a). Launching EC2 instance failed.")
    answers = {
        "describe-auto-scaling-groups": {"AutoScalingGroups": [{"DesiredCapacity": 1, "Instances": [], "Tags": []}]},
        "describe-scaling-activities": {"Activities": [{
            "StartTime": started, "StatusCode": "Failed", "StatusMessage": message,
            "Description": "Launching a new EC2 instance.  Status Reason: ..."}]},
    }
    calls = []

    def fake_aws(region, service, verb, *args):
        calls.append((service, verb))
        return answers.get(verb, {})

    cm.aws = fake_aws
    server = cm.Server.__new__(cm.Server)
    server.params, server.region, server.stack = {"ServerName": "valheim"}, "us-east-1", "valheim"
    server.group, server.stack_params = "container-manager-valheim", {}
    s = cm.status(server)
    assert (s["state"], s["why"], s["since"]) == ("failed", f"the launch failed: {message}", "2026-12-06T19:00:00+00:00"), s
    text = cm.human(s)
    assert "valheim: failed" in text and "sufficient t3a.medium capacity" in text and "cloud/cm sleep" in text, text
    # sleep sets the capacity to 0 (the group stops retrying), rather than "already failed".
    out = cm.sleep(server, force=False)
    assert out["result"] == "going to sleep" and ("autoscaling", "set-desired-capacity") in calls, out
    # A launch in progress after a failed one: waking again.
    answers["describe-scaling-activities"]["Activities"][0]["StatusCode"] = "InProgress"
    s = cm.status(server)
    assert s["state"] == "waking" and s["doing"] == "launching an instance", s
