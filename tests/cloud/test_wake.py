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


@pytest.fixture(params=["main", "wake"])
def wake(request, aws, main_template, wake_template):
    return _wake(request, aws, main_template, wake_template)


@pytest.fixture(params=["main", "wake"])
def wake_ipv6(request, aws, main_template, wake_template):
    """The same function in a stack with IPv6 (RECORD_TYPES "A AAAA")."""
    request.ipv6 = True
    return _wake(request, aws, main_template, wake_template)


def _wake(request, aws, main_template, wake_template):
    """The function from either template, aimed at a 0..1 group in the server's region."""
    from conftest import load_function

    region = "us-east-1" if request.param == "main" else "eu-north-1"
    ec2, autoscaling = aws("ec2", region), aws("autoscaling", region)
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    ec2.create_launch_template(LaunchTemplateName="game", LaunchTemplateData={
        "ImageId": "ami-12c6146b", "InstanceType": "t3a.medium"})
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=GROUP, MinSize=0, MaxSize=1, DesiredCapacity=0,
        LaunchTemplate={"LaunchTemplateName": "game"}, VPCZoneIdentifier=subnet)
    template = main_template if request.param == "main" else wake_template
    types = "A AAAA" if getattr(request, "ipv6", False) else "A"
    module = load_function(function_code(template, "WakeFunction"), "wake", {
        "RECORD_NAME": NAME, "AUTO_SCALING_GROUP": GROUP, "RECORD_TYPES": types, "SERVER_REGION": region})

    def desired():
        return autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]["DesiredCapacity"]

    module.desired = desired
    return module


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
    assert wake.handler(event, None) == "woken"
    assert wake.desired() == 1


def test_control_messages_are_ignored(wake):
    event = subscription_event("CWL CONTROL MESSAGE: Checking health of destination Lambda function.",
                               message_type="CONTROL_MESSAGE")
    assert wake.handler(event, None) == "ignored"
    assert wake.desired() == 0


def test_does_not_wake_while_the_last_instance_is_still_saving(main_template, monkeypatch):
    # moto has no Terminating:Wait state (FACTS.md), so this one runs on a stub.
    import boto3

    from conftest import load_function

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    wake = load_function(function_code(main_template, "WakeFunction"), "wake_stub", {
        "RECORD_NAME": NAME, "AUTO_SCALING_GROUP": GROUP, "RECORD_TYPES": "A", "SERVER_REGION": "eu-north-1"})
    wake.autoscaling = boto3.client("autoscaling", region_name="eu-north-1", endpoint_url="http://127.0.0.1:9")
    with Stubber(wake.autoscaling) as stub:
        stub.add_response("describe_auto_scaling_groups", {"AutoScalingGroups": [{
            "AutoScalingGroupName": GROUP, "MinSize": 0, "MaxSize": 1, "DesiredCapacity": 0,
            "DefaultCooldown": 300, "AvailabilityZones": ["eu-north-1a"], "HealthCheckType": "EC2",
            "CreatedTime": "2026-11-22T10:00:00Z",
            "Instances": [{"InstanceId": "i-0123456789abcdef0", "AvailabilityZone": "eu-north-1a",
                           "LifecycleState": "Terminating:Wait", "HealthStatus": "Healthy",
                           "ProtectedFromScaleIn": False}]}]}, {"AutoScalingGroupNames": [GROUP]})
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
    wanted = [m for m in lines if wake.asks_for_server(m)]
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
    wanted = [m for m in lines if wake_ipv6.asks_for_server(m)]
    assert wanted == lines[:3]
    assert set(wanted) <= set(matched)
    assert query_line(NAME, "TXT") not in matched and query_line(NAME, "MX") not in matched
