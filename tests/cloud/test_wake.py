"""The wake function's inline code, run against moto with real-shaped log events."""

import base64
import gzip
import json
import time

import sys

import pytest
from botocore.stub import Stubber

from conftest import ROOT, function_code

NAME = "valheim.example.com"
GROUP = "container-manager-valheim"


def query_line(name, qtype="A"):
    # The format Route53 writes: version, time, zone, name, type, rcode, protocol, edge,
    # resolver address, EDNS client subnet.
    return f"1.0 2026-11-22T10:15:50.235Z Z0123456789ABCDEFGHIJ {name} {qtype} NOERROR UDP FRA56-C1 198.51.100.7 -"


def subscription_event(*messages, message_type="DATA_MESSAGE"):
    batch = {
        "messageType": message_type,
        "owner": "123456789012",
        "logGroup": "/aws/route53/container-manager-valheim",
        "logStream": "Z0123456789ABCDEFGHIJ/FRA56-C1",
        "subscriptionFilters": ["game-WakeSubscriptionFilter-ABC"],
        "logEvents": [{"id": str(36000000 + i), "timestamp": int(time.time() * 1000), "message": m}
                      for i, m in enumerate(messages)],
    }
    data = base64.b64encode(gzip.compress(json.dumps(batch).encode())).decode()
    return {"awslogs": {"data": data}}


WAKE_PATH = "container-manager-valheim"


def game_tags(group, record=NAME, path=WAKE_PATH, types="A", budget=0, notice="none"):
    """The tags cloud/container-manager.yaml puts on a game's group (test_template.py and
    test_deploy.py check the template's side), which the wake function finds it by and reads."""
    return [{"ResourceId": group, "ResourceType": "auto-scaling-group", "PropagateAtLaunch": False,
             "Key": f"container-manager:{k}", "Value": str(v)}
            for k, v in {"wake-path": path, "record": record, "wake-types": types, "wake-budget": budget,
                         "wake-notice": notice}.items()]


def add_game(aws, region, group, **tags):
    """A 0..1 group of the game's shape, tagged as a game of a wake path."""
    ec2, autoscaling = aws("ec2", region), aws("autoscaling", region)
    try:
        ec2.create_launch_template(LaunchTemplateName="game", LaunchTemplateData={
            "ImageId": "ami-12c6146b", "InstanceType": "t3a.medium"})
    except ec2.exceptions.ClientError:
        pass  # the second game of a test
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=group, MinSize=0, MaxSize=1, DesiredCapacity=0,
        LaunchTemplate={"LaunchTemplateName": "game"}, VPCZoneIdentifier=ec2.describe_subnets()["Subnets"][0]["SubnetId"],
        Tags=game_tags(group, **tags))


@pytest.fixture(params=["main", "wake"])
def wake(request, aws, main_template, wake_template):
    return _wake(request, aws, main_template, wake_template)


@pytest.fixture(params=["main", "wake"])
def wake_ipv6(request, aws, main_template, wake_template):
    """The same function, for a game with IPv6 (its wake-types tag "A AAAA")."""
    request.ipv6 = True
    return _wake(request, aws, main_template, wake_template)


def _wake(request, aws, main_template, wake_template):
    """The function from either template, aimed at a 0..1 group in the server's region."""
    from conftest import load_function

    region = "us-east-1" if request.param == "main" else "eu-north-1"
    autoscaling = aws("autoscaling", region)
    add_game(aws, region, GROUP, types="A AAAA" if getattr(request, "ipv6", False) else "A",
             **getattr(request, "game", {}))
    template = main_template if request.param == "main" else wake_template
    module = load_function(function_code(template, "WakeFunction"), "wake", {
        "WAKE_PATH": WAKE_PATH, "SERVER_REGION": region})

    def desired(group=GROUP):
        return autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[group])["AutoScalingGroups"][0]["DesiredCapacity"]

    module.desired = desired
    module.region = region
    module.aws = aws
    return module


def wake_aws(module):
    return module.aws


def wakes_on(message, types=("A",)):
    """What the function acts on: a lookup of the game's name, in any letter case, of a type its
    group's wake-types tag lists."""
    fields = message.split()
    return fields[3].lower().rstrip(".") == NAME and fields[4] in types


def test_an_a_query_for_the_name_wakes_the_server(wake):
    assert wake.handler(subscription_event(query_line(NAME)), None) == "woken"
    assert wake.desired() == 1
    # A second lookup while it boots changes nothing.
    assert wake.handler(subscription_event(query_line(NAME)), None) == "awake"
    assert wake.desired() == 1


def test_resolver_case_randomisation_still_wakes(wake):
    assert wake.handler(subscription_event(query_line("vAlHeIm.ExAmPlE.cOm")), None) == "woken"
    assert wake.desired() == 1


@pytest.mark.parametrize("message", [
    query_line(NAME, "AAAA"),
    query_line("other.example.com"),
    query_line("xvalheim.example.com"),
    query_line("valheim.example.com.evil.test"),
    query_line(NAME, "TXT"),
])
def test_other_queries_leave_the_capacity_alone(wake, message):
    assert wake.handler(subscription_event(message), None) == "ignored"
    assert wake.desired() == 0


def test_a_batch_wakes_when_any_line_asks_for_the_name(wake):
    event = subscription_event(query_line("other.example.com"), query_line(NAME, "AAAA"), query_line(NAME))
    # One result per name asked, in name order: other.example.com is no game.
    assert wake.handler(event, None) == "ignored woken"
    assert wake.desired() == 1


def test_control_messages_are_ignored(wake):
    event = subscription_event("CWL CONTROL MESSAGE: Checking health of destination Lambda function.",
                               message_type="CONTROL_MESSAGE")
    assert wake.handler(event, None) == "ignored"
    assert wake.desired() == 0


# Many games in one zone (docs/many-servers.md): each lookup finds its game by the tags on its
# group, with one call whatever the number of games, and wakes only that game.

def calls_made(module):
    """The AWS operations the function's Auto Scaling client makes, in order."""
    made = []
    module.autoscaling.meta.events.register("before-call.*.*", lambda model, **kw: made.append(model.name))
    return made


def test_each_name_wakes_only_its_game_with_one_call_among_many_games(wake):
    for i in range(30):
        add_game(wake_aws(wake), wake.region, f"container-manager-game{i}", record=f"game{i}.example.com")
    made = calls_made(wake)
    assert wake.handler(subscription_event(query_line("GaMe7.example.com")), None) == "woken"
    assert made == ["DescribeAutoScalingGroups", "SetDesiredCapacity"]
    assert [i for i in range(30) if wake.desired(f"container-manager-game{i}")] == [7]
    assert wake.desired() == 0


def test_a_batch_with_two_games_names_wakes_both(wake):
    add_game(wake_aws(wake), wake.region, "container-manager-minecraft", record="mc.example.com")
    event = subscription_event(query_line("mc.example.com"), query_line("other.example.com"), query_line(NAME))
    assert wake.handler(event, None) == "woken ignored woken"
    assert wake.desired() == 1 and wake.desired("container-manager-minecraft") == 1


def test_a_game_of_another_wake_path_is_not_woken(wake):
    # Another stack's game with the same name (another zone's wake path): not this function's.
    add_game(wake_aws(wake), wake.region, "container-manager-elsewhere", record="mc.example.com",
             path="container-manager-base-elsewhere")
    assert wake.handler(subscription_event(query_line("mc.example.com")), None) == "ignored"
    assert wake.desired("container-manager-elsewhere") == 0


def test_two_games_claiming_one_name_wake_neither_and_say_so(wake, capsys):
    add_game(wake_aws(wake), wake.region, "container-manager-twin", record=NAME)
    assert wake.handler(subscription_event(query_line(NAME)), None) == "ignored"
    assert wake.desired() == 0 and wake.desired("container-manager-twin") == 0
    assert f"Not waking {NAME}: 2 games claim it." in capsys.readouterr().out


@pytest.mark.parametrize("which", ["main", "wake"])
def test_the_budget_on_the_games_tag_stops_a_wake_once_spent(request, aws, main_template, wake_template, which,
                                                             capsys):
    request.param = which
    request.game = {"budget": 2}
    wake = _wake(request, aws, main_template, wake_template)
    now = int(time.time())
    aws("autoscaling", wake.region).create_or_update_tags(Tags=[{
        "ResourceId": GROUP, "ResourceType": "auto-scaling-group", "PropagateAtLaunch": False,
        "Key": "container-manager:unused-wakes", "Value": f"{now - 90000} {now - 3600} {now - 60}"}])
    assert wake.handler(subscription_event(query_line(NAME)), None) == "budget spent"
    assert wake.desired() == 0
    assert f"Not waking {GROUP}: nobody joined 2 wakes in a day (budget 2)" in capsys.readouterr().out


def test_does_not_wake_while_the_last_instance_is_still_saving(main_template, monkeypatch):
    # moto has no Terminating:Wait state (FACTS.md), so this one runs on a stub.
    import boto3

    from conftest import load_function

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    wake = load_function(function_code(main_template, "WakeFunction"), "wake_stub", {
        "WAKE_PATH": WAKE_PATH, "SERVER_REGION": "eu-north-1"})
    wake.autoscaling = boto3.client("autoscaling", region_name="eu-north-1", endpoint_url="http://127.0.0.1:9")
    with Stubber(wake.autoscaling) as stub:
        stub.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [{
            "AutoScalingGroupName": GROUP, "MinSize": 0, "MaxSize": 1, "DesiredCapacity": 0,
            "DefaultCooldown": 300, "AvailabilityZones": ["eu-north-1a"], "HealthCheckType": "EC2",
            "CreatedTime": "2026-11-22T10:00:00Z", "Tags": game_tags(GROUP),
            "Instances": [{"InstanceId": "i-0123456789abcdef0", "AvailabilityZone": "eu-north-1a",
                           "LifecycleState": "Terminating:Wait", "HealthStatus": "Healthy",
                           "ProtectedFromScaleIn": False}]}]}, {"Filters": [
            {"Name": "tag:container-manager:record", "Values": [NAME]},
            {"Name": "tag:container-manager:wake-path", "Values": [WAKE_PATH]}]})
        assert wake.handler(subscription_event(query_line(NAME)), None) == "stopping"
        stub.assert_no_pending_responses()  # and no SetDesiredCapacity call was made


def test_the_subscription_filter_passes_every_line_the_function_wakes_on(aws, main_template, wake):
    # The filter must never drop a lookup the function would act on, whatever the letter case
    # (DNS 0x20); the function then picks the name. moto's Logs matches quoted phrases.
    pattern = main_template["Resources"]["WakeSubscriptionFilter"]["Properties"]["FilterPattern"]["Fn::If"][2]
    logs = aws("logs")
    logs.create_log_group(logGroupName="q")
    logs.create_log_stream(logGroupName="q", logStreamName="s")
    lines = [query_line(NAME), query_line("VaLhEiM.eXaMpLe.CoM"), query_line(NAME.upper()),
             query_line(NAME, "AAAA"), query_line("other.example.com"), query_line(NAME, "TXT")]
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName="q", logStreamName="s",
                        logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(lines)])
    matched = [e["message"] for e in logs.filter_log_events(logGroupName="q", filterPattern=pattern)["events"]]
    wanted = [m for m in lines if wakes_on(m)]
    assert wanted == lines[:3]
    assert set(wanted) <= set(matched)
    assert query_line(NAME, "TXT") not in matched and query_line(NAME, "AAAA") not in matched


# With IPv6 the stack has an address to give an AAAA-only client, so an AAAA lookup wakes it too.
# Without IPv6 it does not: such a client could not connect, and a dual-stack client (or a DNS64
# resolver) also asks for A, which wakes the server (docs/cloud.md, "IPv6").

def test_with_ipv6_an_aaaa_query_wakes_the_server(wake_ipv6):
    assert wake_ipv6.handler(subscription_event(query_line("VaLhEiM.example.com", "AAAA")), None) == "woken"
    assert wake_ipv6.desired() == 1


@pytest.mark.parametrize("message", [query_line(NAME, "TXT"), query_line("other.example.com", "AAAA"),
                                     query_line(NAME, "AAAAA"), query_line(NAME, "aaaa")])
def test_with_ipv6_other_queries_still_leave_the_capacity_alone(wake_ipv6, message):
    assert wake_ipv6.handler(subscription_event(message), None) == "ignored"
    assert wake_ipv6.desired() == 0


def test_with_ipv6_the_filter_passes_a_and_aaaa_lines(main_template, wake_ipv6):
    # moto's Logs does not implement `?` terms with quoted phrases (it passes every line), so
    # this runs the twin's matcher, which follows CloudWatch Logs' documented rules
    # (tests/twin/logfilter.py, checked in tests/twin/test_twin_parts.py).
    sys.path.insert(0, str(ROOT / "tests" / "twin"))
    import logfilter

    pattern = main_template["Resources"]["WakeSubscriptionFilter"]["Properties"]["FilterPattern"]["Fn::If"][1]
    lines = [query_line(NAME), query_line("VaLhEiM.eXaMpLe.CoM", "AAAA"), query_line(NAME.upper(), "AAAA"),
             query_line("other.example.com"), query_line(NAME, "TXT"), query_line(NAME, "MX")]
    matched = [m for m in lines if logfilter.matches(pattern, m)]
    wanted = [m for m in lines if wakes_on(m, ("A", "AAAA"))]
    assert wanted == lines[:3]
    assert set(wanted) <= set(matched)
    assert query_line(NAME, "TXT") not in matched and query_line(NAME, "MX") not in matched


# The players are told it is coming: a wake by a lookup posts "waking, usually ready in about N"
# to the players' webhook once, whatever the number of lookups (docs/cloud.md, "Players are told
# it is coming"). A real HTTP receiver on loopback takes the posts.

HOOK_PARAMETER = "/container-manager/valheim/discord"


class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps each POST's path and JSON body."""

    def __init__(self, status=204):
        import http.server
        import threading

        self.posts = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts.append({"path": self.path, "body": json.loads(body),
                                       "agent": self.headers.get("User-Agent")})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/webhooks/1/sEcReT"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _telling(request, aws, main_template, wake_template, kind="discord", status=204, warm=False):
    receiver = Receiver(status)
    request.addfinalizer(receiver.close)
    # The tag the template writes when WebhookEvents lists waking (test_deploy.py checks it).
    request.game = {"notice": f"{kind} {1 if warm else 4} {HOOK_PARAMETER}"}
    wake = _wake(request, aws, main_template, wake_template)
    aws("ssm", wake.region).put_parameter(Name=HOOK_PARAMETER, Type="SecureString", Value=receiver.url)
    wake.receiver = receiver
    return wake


@pytest.fixture(params=["main", "wake"])
def telling(request, aws, main_template, wake_template):
    return _telling(request, aws, main_template, wake_template)


def test_a_wake_by_a_lookup_tells_the_players_once_with_the_usual_wait(telling, capsys):
    assert telling.handler(subscription_event(query_line(NAME)), None) == "woken"
    assert telling.desired() == 1
    (post,) = telling.receiver.posts
    assert post["path"] == "/api/webhooks/1/sEcReT" and post["agent"] == "container-manager"
    (embed,) = post["body"]["embeds"]
    assert embed["title"] == f"{NAME}: waking up"
    assert embed["description"] == "Usually ready in about 4 minutes."
    assert post["body"]["allowed_mentions"] == {"parse": []}
    # More lookups while it boots tell nobody again.
    for _ in range(3):
        assert telling.handler(subscription_event(query_line(NAME)), None) == "awake"
    assert len(telling.receiver.posts) == 1
    out = capsys.readouterr().out
    assert "Told the players it is waking." in out and "sEcReT" not in out


def test_lookups_in_flight_together_wake_the_server_and_tell_the_players_once(telling):
    # Lambda may run several invocations at once (one per query-log stream); each sees the group
    # at 0 and wakes it. Only the last to mark the group posts.
    import threading

    start = threading.Barrier(5)
    results = []

    def lookup():
        start.wait()
        results.append(telling.handler(subscription_event(query_line(NAME)), None))

    threads = [threading.Thread(target=lookup) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 5 and "woken" in results, results
    assert telling.desired() == 1
    assert len(telling.receiver.posts) == 1, telling.receiver.posts


@pytest.mark.parametrize("kind, check", [
    ("slack", lambda b: b == {"text": f"{NAME}: waking up. Usually ready in about 1 minute."}),
    ("json", lambda b: b == {"source": "container-manager", "event": "waking", "title": f"{NAME}: waking up",
                             "message": "Usually ready in about 1 minute."}),
])
@pytest.mark.parametrize("which", ["main", "wake"])
def test_the_notice_is_written_as_the_webhooks_kind_wants(request, aws, main_template, wake_template, which,
                                                          kind, check):
    request.param = which
    wake = _telling(request, aws, main_template, wake_template, kind=kind, warm=True)
    assert wake.handler(subscription_event(query_line(NAME)), None) == "woken"
    (post,) = wake.receiver.posts
    assert check(post["body"]), post["body"]


@pytest.mark.parametrize("which", ["main", "wake"])
def test_a_game_whose_notice_is_none_wakes_and_its_players_hear_nothing(request, aws, main_template, wake_template,
                                                                        which):
    # "none" is the template's tag without a webhook, or without waking in WebhookEvents.
    request.param = which
    receiver = Receiver()
    request.addfinalizer(receiver.close)
    wake = _wake(request, aws, main_template, wake_template)
    aws("ssm", wake.region).put_parameter(Name=HOOK_PARAMETER, Type="SecureString", Value=receiver.url)
    assert wake.handler(subscription_event(query_line(NAME)), None) == "woken"
    assert wake.desired() == 1 and receiver.posts == []


@pytest.mark.parametrize("which", ["main", "wake"])
def test_a_webhook_that_fails_leaves_the_wake_standing_and_the_url_out_of_the_log(
        request, aws, main_template, wake_template, which, capsys):
    request.param = which
    wake = _telling(request, aws, main_template, wake_template, status=404)
    assert wake.handler(subscription_event(query_line(NAME)), None) == "woken"
    assert wake.desired() == 1 and len(wake.receiver.posts) == 1
    out = capsys.readouterr().out
    assert "Could not tell the players: HTTPError" in out and "sEcReT" not in out and "127.0.0.1" not in out
    # A parameter that does not exist: the same.
    region = wake.region
    aws("ssm", region).delete_parameter(Name=HOOK_PARAMETER)
    aws("autoscaling", region).set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=0)
    assert wake.handler(subscription_event(query_line(NAME)), None) == "woken"
    assert "Could not tell the players: ParameterNotFound" in capsys.readouterr().out


# A wake that fails: WakeFailedAlarm invokes WakeFailedFunction on entering ALARM (10 minutes
# after a wake with nothing in service), and the players who heard "waking up" hear once that it
# failed, with what the group's launch attempts say (docs/aws-sources.md, section 13).

def alarm_event(state="ALARM", previous="OK"):
    """The payload CloudWatch sends a Lambda alarm action (the documented example's shape)."""
    return {"source": "aws.cloudwatch", "accountId": "123456789012", "region": "us-east-1",
            "alarmArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:container-manager-valheim-failed-to-wake",
            "time": "2026-12-06T20:10:00.000+0000",
            "alarmData": {"alarmName": "container-manager-valheim-failed-to-wake",
                          "state": {"value": state, "reason": "Threshold Crossed: 10 out of the last 10 datapoints",
                                    "timestamp": "2026-12-06T20:10:00.000+0000"},
                          "previousState": {"value": previous, "reason": "", "timestamp": "2026-12-06T20:00:00.000+0000"},
                          "configuration": {"metrics": []}}}


NO_CAPACITY = ("Launching a new EC2 instance. Status Reason: We currently do not have sufficient t3a.medium "
               "capacity in the Availability Zone you requested (us-east-1a). Launching EC2 instance failed.")


def _failed(request, aws, main_template, kind="discord", events="waking,online", status=204):
    from conftest import load_function

    receiver = Receiver(status)
    request.addfinalizer(receiver.close)
    aws("ssm").put_parameter(Name=HOOK_PARAMETER, Type="SecureString", Value=receiver.url)
    ec2, autoscaling = aws("ec2"), aws("autoscaling")
    ec2.create_launch_template(LaunchTemplateName="game", LaunchTemplateData={
        "ImageId": "ami-12c6146b", "InstanceType": "t3a.medium"})
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=GROUP, MinSize=0, MaxSize=1, DesiredCapacity=1,
        LaunchTemplate={"LaunchTemplateName": "game"}, VPCZoneIdentifier=ec2.describe_subnets()["Subnets"][0]["SubnetId"])
    module = load_function(function_code(main_template, "WakeFailedFunction"), "wake_failed", {
        "RECORD_NAME": NAME, "AUTO_SCALING_GROUP": GROUP, "WEBHOOK_PARAMETER": HOOK_PARAMETER,
        "WEBHOOK_KIND": kind, "WEBHOOK_EVENTS": events})
    module.receiver = receiver
    return module


def test_a_failed_wake_tells_the_players_once_with_what_aws_says(request, aws, main_template, capsys):
    fn = _failed(request, aws, main_template)
    # moto launches whatever it is asked to, so it records no failed launch: the group's answer comes from a stub, shaped as
    # DescribeScalingActivities answers, newest first.
    with Stubber(fn.autoscaling) as stub:
        stub.add_response("describe_scaling_activities", {"Activities": [
            {"ActivityId": "a2", "AutoScalingGroupName": GROUP, "Cause": "c", "StartTime": "2026-12-06T20:01:00Z",
             "StatusCode": "Failed", "StatusMessage": NO_CAPACITY, "Description": "Launching a new EC2 instance"},
            {"ActivityId": "a1", "AutoScalingGroupName": GROUP, "Cause": "c", "StartTime": "2026-12-05T20:00:00Z",
             "StatusCode": "Successful", "Description": "Launching a new EC2 instance"}]},
            {"AutoScalingGroupName": GROUP, "MaxRecords": 5})
        assert fn.handler(alarm_event(), None) == "told"
        stub.assert_no_pending_responses()
    (post,) = fn.receiver.posts
    (embed,) = post["body"]["embeds"]
    assert embed["title"] == f"{NAME}: failed to wake"
    assert embed["description"] == ("No server came up within 10 minutes of the wake. The admin has been told. "
                                     f"AWS says: {NO_CAPACITY}")
    assert post["body"]["allowed_mentions"] == {"parse": []} and post["agent"] == "container-manager"
    out = capsys.readouterr().out
    assert "Told the players the wake failed: Launching a new EC2 instance." in out and "sEcReT" not in out


def test_without_a_launch_error_the_notice_says_aws_reported_none(request, aws, main_template):
    # moto's own answer: its launches all succeed.
    fn = _failed(request, aws, main_template, kind="json")
    assert fn.handler(alarm_event(), None) == "told"
    (post,) = fn.receiver.posts
    assert post["body"] == {"source": "container-manager", "event": "wake_failed", "title": f"{NAME}: failed to wake",
                            "message": "No server came up within 10 minutes of the wake. The admin has been told. "
                                       "AWS reported no launch error; it may still come up."}


@pytest.mark.parametrize("event, events", [
    (alarm_event("OK", previous="ALARM"), "waking,online"),  # leaving ALARM: nothing to tell
    (alarm_event("INSUFFICIENT_DATA"), "waking,online"),
    (alarm_event(), "online,crash"),  # players never told "waking up" are not told it failed
])
def test_only_entering_alarm_with_waking_in_the_events_tells_anyone(request, aws, main_template, event, events):
    fn = _failed(request, aws, main_template, events=events)
    assert fn.handler(event, None) == "ignored"
    assert fn.receiver.posts == []


def test_a_webhook_that_fails_is_logged_without_the_url(request, aws, main_template, capsys):
    fn = _failed(request, aws, main_template, kind="slack", status=404)
    assert fn.handler(alarm_event(), None) == "not told"
    (post,) = fn.receiver.posts
    assert post["body"]["text"].startswith(f"{NAME}: failed to wake. No server came up")
    out = capsys.readouterr().out
    assert "Could not tell the players: HTTPError" in out and "sEcReT" not in out and "127.0.0.1" not in out
