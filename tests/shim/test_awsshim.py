"""Checks of the shim itself, with boto3 as a second, independent client.

Run: tests/.venv/bin/python -m pytest tests/shim -q -p no:cacheprovider
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Iterator

import boto3
import botocore.exceptions
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def shim() -> Iterator[dict[str, str]]:
    p = subprocess.Popen(
        [sys.executable, "-u", os.path.join(HERE, "awsshim.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert p.stdout is not None
    ports = json.loads(p.stdout.readline())
    try:
        yield ports
    finally:
        p.kill()
        p.wait()


def ctl(shim: dict[str, str], path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(shim["control"] + path, data=data, method="POST" if data is not None else "GET")
    return json.load(urllib.request.urlopen(req, timeout=30))


def client(shim: dict[str, str], service: str) -> Any:
    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=shim["aws"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def world(shim: dict[str, str]) -> dict[str, Any]:
    return ctl(shim, "/_shim/ctl/setup", {})


def test_cloudwatch_cbor_is_translated(shim: dict[str, str], world: dict[str, Any]) -> None:
    cw = client(shim, "cloudwatch")
    assert cw.meta.service_model.protocol == "smithy-rpc-v2-cbor"
    cw.put_metric_data(
        Namespace="ShimTest",
        MetricData=[
            {
                "MetricName": "M",
                "Value": 3,
                "Unit": "Seconds",
                "Dimensions": [{"Name": "AutoScalingGroupName", "Value": "g"}],
            }
        ],
    )
    got = ctl(shim, "/_shim/ctl/metrics", {"namespace": "ShimTest"})
    assert got == [
        {
            "name": "M",
            "dimensions": {"AutoScalingGroupName": "g"},
            "datapoints": [{"sum": 3.0, "count": 1.0, "max": 3.0, "unit": "Seconds"}],
        }
    ]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        cw.put_metric_data(Namespace="ShimTest", MetricData=[{"MetricName": "M", "Value": 1, "Values": [1, 2]}])
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert e.value.response["Error"]["Code"] == "InvalidParameterValue"


def test_route53_batches_are_validated_as_a_whole(shim: dict[str, str], world: dict[str, Any]) -> None:
    r53 = client(shim, "route53")
    zone = world["zone_id"]

    def rr(ip: str) -> dict[str, Any]:
        return {"Name": "x.example.test", "Type": "A", "TTL": 5, "ResourceRecords": [{"Value": ip}]}

    def batch(*changes: tuple[str, str]) -> None:
        r53.change_resource_record_sets(
            HostedZoneId=zone,
            ChangeBatch={"Changes": [{"Action": a, "ResourceRecordSet": rr(ip)} for a, ip in changes]},
        )

    def current() -> Any:
        return ctl(shim, "/_shim/ctl/record", {"zone_id": zone, "name": "x.example.test", "rtype": "A"})

    batch(("UPSERT", "192.0.2.1"))
    batch(("UPSERT", "192.0.2.2"))
    for bad in [("DELETE", "192.0.2.1"), ("CREATE", "192.0.2.3")]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            batch(bad, ("CREATE", "0.0.0.0")) if bad[0] == "DELETE" else batch(bad)
        assert e.value.response["Error"]["Code"] == "InvalidChangeBatch"
    assert current() == {"ttl": 5, "values": ["192.0.2.2"]}
    batch(("DELETE", "192.0.2.2"), ("CREATE", "0.0.0.0"))
    assert current() == {"ttl": 5, "values": ["0.0.0.0"]}


def test_lifecycle_actions_are_recorded_and_checked(shim: dict[str, str], world: dict[str, Any]) -> None:
    asg = client(shim, "autoscaling")
    asg.complete_lifecycle_action(
        LifecycleHookName=world["hook"],
        AutoScalingGroupName=world["group"],
        InstanceId="i-1",
        LifecycleActionResult="CONTINUE",
    )
    with pytest.raises(botocore.exceptions.ClientError) as e:
        asg.record_lifecycle_action_heartbeat(LifecycleHookName="nope", AutoScalingGroupName=world["group"], InstanceId="i-1")
    assert e.value.response["Error"]["Code"] == "ValidationError"
    got = ctl(shim, "/_shim/lifecycle-actions")
    assert [(a["action"], a["hook"], a["instance_id"], a["result"]) for a in got] == [
        ("CompleteLifecycleAction", world["hook"], "i-1", "CONTINUE")
    ]


def test_imds_v2(shim: dict[str, str]) -> None:
    ctl(shim, "/_shim/imds", {"instance-id": "i-1", "region": "us-east-1", "public-ipv4": None})
    put = urllib.request.Request(
        shim["imds"] + "/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"}
    )
    r = urllib.request.urlopen(put, timeout=10)
    assert r.headers["X-aws-ec2-metadata-token-ttl-seconds"] == "300"
    token = r.read().decode()

    def get(path: str, tok: str = token) -> str:
        req = urllib.request.Request(shim["imds"] + path, headers={"X-aws-ec2-metadata-token": tok})
        return urllib.request.urlopen(req, timeout=10).read().decode()

    assert get("/latest/meta-data/placement/region") == "us-east-1"
    assert get("/latest/meta-data/placement/availability-zone") == "us-east-1a"
    for path, tok, code in [("/latest/meta-data/public-ipv4", token, 404), ("/latest/meta-data/instance-id", "bad", 401)]:
        with pytest.raises(urllib.error.HTTPError) as e:
            get(path, tok)
        assert e.value.code == code


def test_outage_refuses_then_recovers(shim: dict[str, str]) -> None:
    r53 = client(shim, "route53")
    ctl(shim, "/_shim/outage", {"seconds": 1.5, "mode": "refuse"})
    assert ctl(shim, "/_shim/outage")["active"]
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        r53.list_hosted_zones()
    time.sleep(2)
    assert not ctl(shim, "/_shim/outage")["active"]
    assert r53.list_hosted_zones()["HostedZones"]


def test_twin_states_show_in_describe_calls_and_imds_by_source(shim: dict[str, str], world: dict[str, Any]) -> None:
    asg = client(shim, "autoscaling")
    group = world["group"]
    # Terminating:Wait, which moto drops at once, is listed until the twin says otherwise.
    ctl(shim, "/_shim/terminating", {"group": group, "instance_id": "i-0000000000000dead", "state": "Terminating:Wait"})
    (g,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    assert ("i-0000000000000dead", "Terminating:Wait") in [(i["InstanceId"], i["LifecycleState"]) for i in g["Instances"]]
    ctl(shim, "/_shim/terminating", {"group": group, "instance_id": "i-0000000000000dead"})
    (g,) = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    assert "i-0000000000000dead" not in [i["InstanceId"] for i in g["Instances"]]
    # A warm pool: moto keeps the configuration, the shim adds the instances.
    asg.put_warm_pool(AutoScalingGroupName=group, PoolState="Stopped", MinSize=0)
    ctl(shim, "/_shim/warm", {"group": group, "instance_id": "i-00000000000000001", "state": "Warmed:Stopped"})
    pool = asg.describe_warm_pool(AutoScalingGroupName=group)
    assert pool["WarmPoolConfiguration"]["PoolState"] == "Stopped"
    assert [(i["InstanceId"], i["LifecycleState"]) for i in pool["Instances"]] == [("i-00000000000000001", "Warmed:Stopped")]
    ctl(shim, "/_shim/warm", {"group": group, "instance_id": "i-00000000000000001"})
    assert asg.describe_warm_pool(AutoScalingGroupName=group)["Instances"] == []
    # IMDS values by the caller's address: this test calls from 127.0.0.1.
    ctl(shim, "/_shim/imds", {"source": "127.0.0.1", "instance-id": "i-from-loopback"})
    token = urllib.request.urlopen(urllib.request.Request(
        shim["imds"] + "/latest/api/token", method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}), timeout=10).read().decode()
    got = urllib.request.urlopen(urllib.request.Request(
        shim["imds"] + "/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token}), timeout=10).read()
    assert got == b"i-from-loopback"
    ctl(shim, "/_shim/imds", {"source": "127.0.0.1", "forget": True})


def test_a_deny_policy_answers_access_denied_in_each_services_format(shim: dict[str, str], world: dict[str, Any]) -> None:
    policy = {"Statement": [{"Effect": "Deny", "Action": ["autoscaling:SetDesiredCapacity", "route53:Change*"], "Resource": "*"}]}
    ctl(shim, "/_shim/deny", {"policy": policy})
    try:
        asg = client(shim, "autoscaling")
        with pytest.raises(botocore.exceptions.ClientError) as e:
            asg.set_desired_capacity(AutoScalingGroupName=world["group"], DesiredCapacity=0)
        assert e.value.response["Error"]["Code"] == "AccessDenied"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert "autoscaling:SetDesiredCapacity" in e.value.response["Error"]["Message"]
        r53 = client(shim, "route53")
        with pytest.raises(botocore.exceptions.ClientError) as e:
            r53.change_resource_record_sets(
                HostedZoneId=world["zone_id"],
                ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
                    "Name": "deny.example.com", "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "192.0.2.9"}]}}]},
            )
        assert e.value.response["Error"]["Code"] == "AccessDenied"
        # What the policy does not deny still works.
        asg.describe_auto_scaling_groups(AutoScalingGroupNames=[world["group"]])
        denied = [d["action"] for d in ctl(shim, "/_shim/deny")["denied"]]
        assert denied == ["autoscaling:SetDesiredCapacity", "route53:ChangeResourceRecordSets"]
    finally:
        ctl(shim, "/_shim/deny", {})
    asg.describe_auto_scaling_groups(AutoScalingGroupNames=[world["group"]])
    assert ctl(shim, "/_shim/deny")["policy"] is None
