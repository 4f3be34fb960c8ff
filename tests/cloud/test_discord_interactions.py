"""cloud/discord_interactions.py, the Discord interactions endpoint (issue 37, part 2: the
function, not yet in the stack), against moto's Auto Scaling: a signed PING gets PONG; a signed
/wake sets the desired capacity to 1 and answers within Discord's 3 s; /status answers while the
server sleeps without waking it; unsigned, tampered and replayed requests get 401 and change
nothing; one member's /wake again right away is held back."""

import importlib
import json
import os
import sys
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from conftest import ROOT

GROUP = "container-manager-valheim"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
APPLICATION = "1234567890123456789"


@pytest.fixture
def endpoint(aws, monkeypatch):
    ec2 = aws("ec2")
    ec2.create_launch_template(LaunchTemplateName="cm-test", LaunchTemplateData={"ImageId": "ami-12c6146b",
                                                                               "InstanceType": "t3.micro"})
    aws("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=GROUP, MinSize=0, MaxSize=1, DesiredCapacity=0,
        LaunchTemplate={"LaunchTemplateName": "cm-test"}, AvailabilityZones=["us-east-1a"])
    public = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    for k, v in {"PUBLIC_KEY": public, "AUTO_SCALING_GROUP": GROUP, "SERVER_REGION": "us-east-1",
                 "SERVER_NAME": "valheim.example.com", "READY_IN": "3 min", "WAKE_COOLDOWN": "60",
                 "WAKE_BUDGET": "2", "APPLICATION_ID": APPLICATION}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.syspath_prepend(str(ROOT / "cloud"))
    sys.modules.pop("discord_interactions", None)
    module = importlib.import_module("discord_interactions")
    yield module
    sys.modules.pop("discord_interactions", None)


def desired(aws):
    return aws("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0][
        "DesiredCapacity"]


def request(payload, key=KEY, when=None, body=None):
    body = body if body is not None else json.dumps(payload)
    stamp = str(int(time.time() if when is None else when))
    headers = {"x-signature-ed25519": key.sign(stamp.encode() + body.encode()).hex(), "x-signature-timestamp": stamp}
    return {"headers": headers, "body": body, "isBase64Encoded": False}


def command(name, member="42", application=APPLICATION):
    return {"type": 2, "application_id": application, "data": {"name": name}, "member": {"user": {"id": member}}}


def test_a_signed_ping_gets_pong(endpoint):
    r = endpoint.handler(request({"type": 1, "application_id": APPLICATION}), None)
    assert (r["statusCode"], json.loads(r["body"])) == (200, {"type": 1})


def test_status_answers_while_asleep_without_waking_it(endpoint, aws):
    r = endpoint.handler(request(command("status")), None)
    assert r["statusCode"] == 200
    assert json.loads(r["body"])["data"]["content"] == "valheim.example.com is asleep."
    assert desired(aws) == 0


def test_a_signed_wake_wakes_it_within_discords_deadline_once(endpoint, aws):
    start = time.time()
    r = endpoint.handler(request(command("wake")), None)
    took = time.time() - start
    print(f"/wake answered in {took * 1000:.0f} ms")
    assert took < 3.0, "Discord waits 3 s for the answer"
    body = json.loads(r["body"])
    assert (r["statusCode"], body["type"]) == (200, 4)
    assert body["data"]["content"] == "Waking valheim.example.com: usually ready in about 3 min."
    assert body["data"]["allowed_mentions"] == {"parse": []}
    assert desired(aws) == 1
    again = json.loads(endpoint.handler(request(command("wake")), None)["body"])["data"]["content"]
    assert again == "valheim.example.com is waking up already."
    # Asleep again, the same member's /wake within the cooldown is held back.
    aws("autoscaling").set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=0)
    held = json.loads(endpoint.handler(request(command("wake")), None)["body"])["data"]["content"]
    assert "less than 60 s ago" in held and desired(aws) == 0


def test_unsigned_tampered_replayed_or_foreign_requests_get_401_and_change_nothing(endpoint, aws):
    good = request(command("wake"))
    cases = {
        "unsigned": {"headers": {}, "body": good["body"]},
        "tampered": {**good, "body": good["body"].replace("wake", "wake ")},
        "replayed": request(command("wake"), when=time.time() - 3600),
        "another key": request(command("wake"), key=Ed25519PrivateKey.from_private_bytes(bytes(32))),
        "another application": request(command("wake", application="999")),
        "garbage headers": {"headers": {"x-signature-ed25519": "nope", "x-signature-timestamp": "x"},
                            "body": good["body"]},
    }
    for name, event in cases.items():
        r = endpoint.handler(event, None)
        assert r["statusCode"] == 401, name
    assert desired(aws) == 0


def test_wake_respects_the_wake_budget_and_says_when_it_wakes_again(endpoint, aws):
    # The agent's ledger: two wakes in the last day that nobody joined (the budget is 2), one older.
    now = int(time.time())
    aws("autoscaling").create_or_update_tags(Tags=[{
        "ResourceId": GROUP, "ResourceType": "auto-scaling-group", "Key": "container-manager:unused-wakes",
        "Value": f"{now - 90000} {now - 7200} {now - 600}", "PropagateAtLaunch": False}])
    r = json.loads(endpoint.handler(request(command("wake")), None)["body"])["data"]["content"]
    again = time.strftime("%H:%M UTC", time.gmtime(now - 7200 + 86400))
    assert r == (f"valheim.example.com was woken 2 times in the last day with nobody joining, so it stays "
                 f"asleep until {again}. The operator can still wake it."), r
    assert desired(aws) == 0
    # One of them a day old: the budget has room again.
    aws("autoscaling").create_or_update_tags(Tags=[{
        "ResourceId": GROUP, "ResourceType": "auto-scaling-group", "Key": "container-manager:unused-wakes",
        "Value": f"{now - 90000} {now - 600}", "PropagateAtLaunch": False}])
    r = json.loads(endpoint.handler(request(command("wake", member="43")), None)["body"])["data"]["content"]
    assert r.startswith("Waking valheim.example.com") and desired(aws) == 1, r
