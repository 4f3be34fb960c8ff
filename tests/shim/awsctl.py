"""Setup and read-back helpers for the AWS tests, run with boto3 against moto.

The shim exposes each function in COMMANDS as `POST /_shim/ctl/<name>` with its keyword
arguments as a JSON object (the first argument, moto's URL, is filled in by the shim). The
same functions work from a Python prompt:

    import awsctl; awsctl.setup("http://127.0.0.1:PORT")
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any

import boto3
import botocore.session

_clients: dict[tuple[str, str, str], Any] = {}
_lock = threading.Lock()

COMMANDS = {
    "put_secure",
    "setup",
    "record",
    "upsert",
    "group",
    "set_group_tag",
    "lifecycle_hooks",
    "metrics",
    "messages",
    "log_events",
}


def _session() -> boto3.Session:
    # botocore 1.40+ speaks rpc-v2-cbor to CloudWatch, which moto does not understand; the
    # read-back helpers use the query protocol that moto implements.
    core = botocore.session.get_session()
    loader = core.get_component("data_loader")
    original = loader.load_service_model

    def load(service_name: str, type_name: str, api_version: str | None = None) -> Any:
        model = original(service_name, type_name, api_version)
        if service_name == "cloudwatch" and type_name == "service-2":
            model = json.loads(json.dumps(model))
            model["metadata"]["protocol"] = "query"
            model["metadata"]["protocols"] = ["query"]
        return model

    loader.load_service_model = load  # type: ignore[method-assign]
    return boto3.Session(botocore_session=core)


def _client(moto_url: str, service: str, region: str = "us-east-1") -> Any:
    key = (moto_url, service, region)
    with _lock:
        if key not in _clients:
            _clients[key] = _session().client(
                service,
                region_name=region,
                endpoint_url=moto_url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return _clients[key]


def setup(
    moto_url: str,
    region: str = "us-east-1",
    zone: str = "example.test",
    group: str = "game-asg",
    hook: str = "drain",
    topic: str = "game-alerts",
    desired: int = 1,
    log_group: str = "/container-manager/test/agent",
) -> dict[str, Any]:
    """A hosted zone, an Auto Scaling group (min 0, max 1) with a termination hook and
    `desired` instances, an SNS topic with an SQS subscription, and the agent's log group."""
    r53 = _client(moto_url, "route53", region)
    zone_id = r53.create_hosted_zone(Name=zone, CallerReference=f"{zone}-{dt.datetime.now().timestamp()}")[
        "HostedZone"
    ]["Id"].split("/")[-1]

    asg = _client(moto_url, "autoscaling", region)
    asg.create_launch_configuration(
        LaunchConfigurationName=f"{group}-lc", ImageId="ami-12c6146b", InstanceType="t3.small"
    )
    asg.create_auto_scaling_group(
        AutoScalingGroupName=group,
        LaunchConfigurationName=f"{group}-lc",
        MinSize=0,
        MaxSize=1,
        DesiredCapacity=desired,
        AvailabilityZones=[f"{region}a"],
    )
    asg.put_lifecycle_hook(
        LifecycleHookName=hook,
        AutoScalingGroupName=group,
        LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
        HeartbeatTimeout=300,
        DefaultResult="CONTINUE",
    )
    instances = [
        i["InstanceId"]
        for i in asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]["Instances"]
    ]

    sns = _client(moto_url, "sns", region)
    sqs = _client(moto_url, "sqs", region)
    topic_arn = sns.create_topic(Name=topic)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"{topic}-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    logs = _client(moto_url, "logs", region)
    if not logs.describe_log_groups(logGroupNamePrefix=log_group)["logGroups"]:
        logs.create_log_group(logGroupName=log_group)
    return {
        "log_group": log_group,
        "zone_id": zone_id,
        "group": group,
        "hook": hook,
        "instance_ids": instances,
        "topic_arn": topic_arn,
        "queue_url": queue_url,
        "region": region,
    }


def record(moto_url: str, zone_id: str, name: str, rtype: str) -> dict[str, Any] | None:
    """The record's TTL and values, or None when it does not exist."""
    r53 = _client(moto_url, "route53")
    fqdn = name.rstrip(".").lower() + "."
    out = r53.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=fqdn, StartRecordType=rtype)
    for rr in out["ResourceRecordSets"]:
        if rr["Name"].lower() == fqdn and rr["Type"] == rtype:
            return {"ttl": rr.get("TTL"), "values": [v["Value"] for v in rr.get("ResourceRecords", [])]}
    return None


def upsert(moto_url: str, zone_id: str, name: str, rtype: str, ttl: int, value: str) -> dict[str, Any]:
    r53 = _client(moto_url, "route53")
    r53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": name,
                        "Type": rtype,
                        "TTL": ttl,
                        "ResourceRecords": [{"Value": value}],
                    },
                }
            ]
        },
    )
    return {"ok": True}


def group(moto_url: str, name: str, region: str = "us-east-1") -> dict[str, Any] | None:
    asg = _client(moto_url, "autoscaling", region)
    groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    if not groups:
        return None
    g = groups[0]
    return {
        "desired": g["DesiredCapacity"],
        "min": g["MinSize"],
        "max": g["MaxSize"],
        "instances": [i["InstanceId"] for i in g.get("Instances", [])],
        "tags": {t["Key"]: t.get("Value", "") for t in g.get("Tags", [])},
    }


def set_group_tag(moto_url: str, name: str, key: str, value: str, region: str = "us-east-1") -> dict[str, Any]:
    """A tag on the group, as an earlier agent (or the operator's command) leaves it."""
    asg = _client(moto_url, "autoscaling", region)
    asg.create_or_update_tags(Tags=[{
        "ResourceId": name, "ResourceType": "auto-scaling-group", "Key": key, "Value": value, "PropagateAtLaunch": False}])
    return {"ok": True}


def lifecycle_hooks(moto_url: str, group: str, region: str = "us-east-1") -> list[str]:
    asg = _client(moto_url, "autoscaling", region)
    if not asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]:
        raise ValueError(f"no group {group}")
    hooks = asg.describe_lifecycle_hooks(AutoScalingGroupName=group)["LifecycleHooks"]
    return [h["LifecycleHookName"] for h in hooks]


def metrics(moto_url: str, namespace: str, region: str = "us-east-1") -> list[dict[str, Any]]:
    """Every metric in the namespace with its dimensions and datapoints (Sum, SampleCount,
    Maximum and Unit per one-second period over the last hour)."""
    cw = _client(moto_url, "cloudwatch", region)
    out = []
    now = dt.datetime.now(dt.timezone.utc)
    for m in cw.list_metrics(Namespace=namespace)["Metrics"]:
        points = cw.get_metric_statistics(
            Namespace=namespace,
            MetricName=m["MetricName"],
            Dimensions=m.get("Dimensions", []),
            StartTime=now - dt.timedelta(hours=1),
            EndTime=now + dt.timedelta(minutes=5),
            Period=60,
            Statistics=["Sum", "SampleCount", "Maximum"],
        )["Datapoints"]
        out.append(
            {
                "name": m["MetricName"],
                "dimensions": {d["Name"]: d["Value"] for d in m.get("Dimensions", [])},
                "datapoints": [
                    {
                        "sum": p.get("Sum"),
                        "count": p.get("SampleCount"),
                        "max": p.get("Maximum"),
                        "unit": p.get("Unit"),
                    }
                    for p in points
                ],
            }
        )
    return out


def messages(moto_url: str, queue_url: str, region: str = "us-east-1") -> list[dict[str, Any]]:
    """Drains the queue: each SNS notification's subject and message."""
    sqs = _client(moto_url, "sqs", region)
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            return out
        for m in got:
            body = json.loads(m["Body"])
            out.append({"subject": body.get("Subject"), "message": body.get("Message"), "topic": body.get("TopicArn")})
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


def put_secure(moto_url: str, name: str, value: str, region: str = "us-east-1") -> dict[str, Any]:
    """A SecureString parameter (a webhook URL), as an operator creates it."""
    ssm = _client(moto_url, "ssm", region)
    out = ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)
    return {"version": out.get("Version")}


def log_events(moto_url: str, group: str, region: str = "us-east-1") -> list[dict[str, Any]]:
    """Every event of a log group, with its stream: [{"stream", "timestamp", "message"}], in
    the order the service returns them (by time)."""
    logs = _client(moto_url, "logs", region)
    out: list[dict[str, Any]] = []
    for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]:
        name = stream["logStreamName"]
        events = logs.get_log_events(logGroupName=group, logStreamName=name, startFromHead=True)["events"]
        out += [{"stream": name, "timestamp": e["timestamp"], "message": e["message"]} for e in events]
    return sorted(out, key=lambda e: e["timestamp"])
