"""Deploy the stacks into moto's CloudFormation and check the resources moto keeps."""

import ast
import base64
import json
import re
import subprocess
import time
import tomllib
from urllib.parse import unquote

import pytest

from conftest import EXAMPLES, MAIN_TEMPLATE, WAKE_TEMPLATE, deployable, example_parameters, load_template

AGENT_CONFIG_KEYS = {
    "container": {"ecs_container_name", "stop_timeout", "pre_stop_command",
                  "crashes_before_shutdown", "alert_log_lines", "image", "start_within"},
    "activity": {"interface", "ports", "min_packets_per_second", "sample_interval", "idle_after",
                 "boot_grace", "unused_after", "keep_awake_file"},
    "activity.probe": {"kind", "address", "timeout"},
    "dns": {"hosted_zone_id", "record_name", "ttl", "unavailable_ipv4", "ipv6"},
    "scaling": {"auto_scaling_group", "lifecycle_hook", "launch_hook", "max_uptime", "stop_on_max_uptime",
                "unused_wakes_per_day"},
    "metrics": {"namespace", "interval"},
    "alerts": {"sns_topic_arn"},
    "decision_log": {"log_group"},
}


def create(aws, template, params, region, name="game"):
    # moto hands a CommaDelimitedList left at its default to Fn::Join as one string (so the Join
    # goes over its characters), where CloudFormation gives the list; given explicitly, moto
    # splits it. So each such default is given, as tests/twin/stack.py does.
    given_keys = {p["ParameterKey"] for p in params}
    params = list(params) + [{"ParameterKey": k, "ParameterValue": str(spec["Default"])}
                             for k, spec in template.get("Parameters", {}).items()
                             if spec.get("Type") == "CommaDelimitedList" and "Default" in spec and k not in given_keys]
    cf = aws("cloudformation", region)
    cf.create_stack(StackName=name, TemplateBody=deployable(template), Parameters=params,
                    Capabilities=["CAPABILITY_IAM"])
    for _ in range(120):
        stack = cf.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("IN_PROGRESS"):
            break
        time.sleep(0.5)
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                for r in cf.list_stack_resources(StackName=name)["StackResourceSummaries"]}
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return physical, outputs


def assert_lifecycle(efs, fs_id):
    policies = efs.describe_lifecycle_configuration(FileSystemId=fs_id)["LifecyclePolicies"]
    assert policies == [{"TransitionToIA": "AFTER_30_DAYS"}, {"TransitionToPrimaryStorageClass": "AFTER_1_ACCESS"}]


def main_default(key):
    return str(load_template(MAIN_TEMPLATE)["Parameters"][key]["Default"])


def with_overrides(path, **overrides):
    params = [p for p in example_parameters(path) if p["ParameterKey"] not in overrides]
    return params + [{"ParameterKey": k, "ParameterValue": v} for k, v in overrides.items()]


def policy_document(response):
    # moto 5.2 stores a policy from CloudFormation as the repr of a Python dict.
    document = response["PolicyDocument"]
    if isinstance(document, dict):
        return document
    try:
        return json.loads(unquote(document))
    except json.JSONDecodeError:
        return ast.literal_eval(document)


def given(params):
    return {p["ParameterKey"]: p["ParameterValue"] for p in params}


def expected_ingress(ports):
    rules = set()
    for spec in ports.split(","):
        proto, span = spec.split(":")
        low, _, high = span.partition("-")
        rules.add((proto, int(low), int(high or low), "0.0.0.0/0"))
    return rules


def ingress_rules(ec2, group_id):
    (group,) = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    return {(p["IpProtocol"], p["FromPort"], p["ToPort"], r["CidrIp"])
            for p in group["IpPermissions"] for r in p["IpRanges"]}


def user_data(ec2, template_id):
    (version,) = ec2.describe_launch_template_versions(LaunchTemplateId=template_id)["LaunchTemplateVersions"]
    return version["LaunchTemplateData"], base64.b64decode(version["LaunchTemplateData"]["UserData"]).decode()


def agent_toml(script):
    match = re.search(r"cat > /etc/container-manager/agent.toml <<'EOF'\n(.*?)\nEOF\n", script, re.S)
    assert match, "user-data writes no agent.toml"
    return tomllib.loads(match.group(1))


@pytest.fixture(scope="module")
def template():
    from conftest import MAIN_TEMPLATE
    return load_template(MAIN_TEMPLATE)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_deploys_in_us_east_1(path, template, aws):
    params = example_parameters(path)
    values = given(params)
    name = values["ServerName"]
    region = "us-east-1"
    physical, outputs = create(aws, template, params, region)
    ec2, asg = aws("ec2"), aws("autoscaling")

    # Network: public subnets, no NAT gateway, only the game's ports open.
    vpc_id = physical["Vpc"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    assert len(subnets) == 2
    assert ec2.describe_nat_gateways()["NatGateways"] == []
    assert ingress_rules(ec2, physical["InstanceSecurityGroup"]) == expected_ingress(values["GamePorts"])

    # Compute: 0..1 group, starting at 0, on demand, in the One Zone file systems' zone only.
    (group,) = asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=[f"container-manager-{name}"])["AutoScalingGroups"]
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (0, 1, 0)
    assert group["VPCZoneIdentifier"] == physical["PublicSubnetA"]
    assert group["LaunchTemplate"]["LaunchTemplateId"] == physical["LaunchTemplate"]
    assert not group.get("MixedInstancesPolicy")  # moto shows {}

    data, script = user_data(ec2, physical["LaunchTemplate"])
    assert data["InstanceType"] == values["InstanceType"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert f"ECS_CLUSTER=container-manager-{name}\n" in script
    assert f'echo "{values["AgentPackageSha256"]}  $file" | sha256sum --check --strict' in script
    # The package from the stack's bucket, by its regional name, through the gateway endpoint.
    bucket = physical["ArtifactBucket"]
    assert f"url='https://{bucket}.s3.{region}.amazonaws.com/{values['AgentPackageKey']}'" in script
    (endpoint,) = ec2.describe_vpc_endpoints(VpcEndpointIds=[physical["S3Endpoint"]])["VpcEndpoints"]
    assert (endpoint["VpcEndpointType"], endpoint["ServiceName"]) == ("Gateway", f"com.amazonaws.{region}.s3")
    assert endpoint["VpcId"] == vpc_id and endpoint["RouteTableIds"] == [physical["PublicRouteTable"]]
    # moto keeps neither the bucket's public access block nor its policy: test_template.py
    # asserts them on the template.
    assert "systemctl enable --now container-manager-agent.service" in script
    config = agent_toml(script)
    tables = {"container": config["container"], "activity": {k: v for k, v in config["activity"].items() if k != "probe"},
              "dns": config["dns"], "scaling": config["scaling"], "metrics": config["metrics"], "alerts": config["alerts"],
              "decision_log": config["decision_log"]}
    if "probe" in config["activity"]:
        tables["activity.probe"] = config["activity"]["probe"]
    assert set(config) == {"container", "activity", "dns", "scaling", "metrics", "alerts", "decision_log"}
    for table, keys in tables.items():
        assert set(keys) == AGENT_CONFIG_KEYS[table], table
    assert config["activity"]["ports"] == values["GamePorts"].split(",")
    assert config["dns"] == {"hosted_zone_id": values["HostedZoneId"], "record_name": values["RecordName"],
                             "ttl": 1, "unavailable_ipv4": "0.0.0.0", "ipv6": False}
    assert config["scaling"]["auto_scaling_group"] == group["AutoScalingGroupName"]
    assert config["scaling"]["lifecycle_hook"] == "container-manager-termination"
    assert config["scaling"]["max_uptime"] == "8h"
    assert config["metrics"]["namespace"] == "ContainerManager"
    assert config["alerts"]["sns_topic_arn"] == outputs["AlertTopicArn"]
    # The decision lines go to the stack's own group, which exists (cloud/cm logs reads it).
    assert config["decision_log"] == {"log_group": f"/container-manager/{name}/agent"}
    assert physical["AgentLogGroup"] == f"/container-manager/{name}/agent"
    assert config["container"]["ecs_container_name"] == "game"
    pre_stop = values.get("PreStopCommand", "")
    assert config["container"]["pre_stop_command"] == (
        json.loads(pre_stop) if pre_stop.startswith("[") else [c for c in pre_stop.split(",") if c])
    if values["ProbeKind"] == "none":
        assert "probe" not in config["activity"]
    else:
        assert config["activity"]["probe"] == {
            "kind": values["ProbeKind"], "address": f"127.0.0.1:{values['ProbePort']}", "timeout": "1s"}

    # Container: image, plain environment, secrets by SSM name only.
    ecs = aws("ecs")
    assert ecs.describe_clusters(clusters=[physical["Cluster"]])["clusters"][0]["status"] == "ACTIVE"
    task = ecs.describe_task_definition(taskDefinition=physical["TaskDefinition"])["taskDefinition"]
    (container,) = task["containerDefinitions"]
    assert container["name"] == "game"
    assert container["image"] == values["ContainerImage"]
    # moto keeps the AWS::NoValue entries of a list as nulls; CloudFormation drops them.
    env = {e["name"]: e["value"] for e in container.get("environment", []) if e}
    assert env == dict(v.split("=", 1) for k, v in values.items() if re.fullmatch(r"Env\d+", k) and v)
    files = [f for f in container.get("environmentFiles") or [] if f]
    if values.get("EnvironmentFileKey"):
        assert files == [{"type": "s3", "value": f"arn:aws:s3:::{physical['ArtifactBucket']}/{values['EnvironmentFileKey']}"}]
    else:
        assert files == []
    secrets = {s["name"]: s["valueFrom"] for s in container.get("secrets", []) if s}
    assert secrets == dict(v.split("=", 1) for k, v in values.items() if k.startswith("Secret") and v)
    assert all(v.startswith(f"/container-manager/{name}/") for v in secrets.values())
    mounts = {m["containerPath"] for m in container["mountPoints"]}
    assert mounts == {values["DataPath"]} | ({values["ServerFilesPath"]} if values["ServerFilesPath"] else set())
    (service,) = ecs.describe_services(cluster=physical["Cluster"], services=["game"])["services"]
    assert service["taskDefinition"] == physical["TaskDefinition"]  # moto drops DAEMON: see test_template

    # Storage: one encrypted One Zone file system per path, in subnet A's zone, one mount target
    # each; bursting throughput; unread files to Infrequent Access after 30 days.
    efs = aws("efs")
    systems = efs.describe_file_systems()["FileSystems"]
    assert len(systems) == (2 if values["ServerFilesPath"] else 1)
    (subnet_a,) = [s for s in subnets if s["SubnetId"] == physical["PublicSubnetA"]]
    for fs in systems:
        assert fs["Encrypted"]
        assert fs["AvailabilityZoneName"] == subnet_a["AvailabilityZone"]
        assert fs["ThroughputMode"] == "bursting"
        targets = efs.describe_mount_targets(FileSystemId=fs["FileSystemId"])["MountTargets"]
        assert [t["SubnetId"] for t in targets] == [subnet_a["SubnetId"]]
        assert_lifecycle(efs, fs["FileSystemId"])

    # Alerts, logs, wake-up chain (this stack is in us-east-1).
    assert outputs["AlertTopicArn"] in [t["TopicArn"] for t in aws("sns").list_topics()["Topics"]]
    groups = {g["logGroupName"] for g in aws("logs").describe_log_groups()["logGroups"]}
    assert {f"/container-manager/{name}/game", f"/aws/route53/container-manager-{name}"} <= groups
    wake = aws("lambda").get_function(FunctionName=physical["WakeFunction"])["Configuration"]
    assert wake["Environment"]["Variables"] == {"WAKE_PATH": f"container-manager-{name}", "SERVER_REGION": "us-east-1"}
    # The game's wake settings are its group's tags. The players hear "waking" from the function
    # when the stack has a webhook and its events list waking.
    tells = values.get("WebhookKind", "none") != "none" and "waking" in values.get(
        "WebhookEvents", main_default("WebhookEvents")).split(",")
    assert {t["Key"]: t["Value"] for t in group["Tags"] if t["Key"].startswith("container-manager:")} == {
        "container-manager:wake-path": f"container-manager-{name}", "container-manager:record": values["RecordName"],
        "container-manager:wake-types": "A", "container-manager:wake-budget": values.get("UnusedWakesPerDay", "3"),
        "container-manager:wake-notice": f"{values['WebhookKind']} 4 {values['WebhookUrlParameter']}" if tells else "none"}
    assert aws("cloudwatch").list_dashboards()["DashboardEntries"][0]["DashboardName"] == f"container-manager-{name}"
    assert outputs["WakeStackCommand"].startswith("none")

    # The instance role moto created carries the conditions.
    role = policy_document(aws("iam").get_role_policy(RoleName=physical["InstanceRole"], PolicyName="agent"))
    by_sid = {s["Sid"]: s for s in role["Statement"]}
    assert by_sid["OwnRecordOnly"]["Condition"]["ForAllValues:StringEquals"][
        "route53:ChangeResourceRecordSetsNormalizedRecordNames"] == [values["RecordName"]]
    assert by_sid["OwnRecordOnly"]["Resource"] == f"arn:aws:route53:::hostedzone/{values['HostedZoneId']}"
    assert by_sid["OwnNamespaceOnly"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "ContainerManager"}}
    assert by_sid["OwnTopicOnly"]["Resource"] == outputs["AlertTopicArn"]
    assert by_sid["OwnGroupOnly"]["Resource"].endswith(f":autoScalingGroupName/container-manager-{name}")

    # Nothing secret or environmental in the outputs.
    # Short values ("16") are compared as whole words: random ids contain such digits by chance.
    shown = " ".join(outputs.values())
    words = set(re.split(r"[\s/:,#=?&.-]+", shown))
    for key, value in values.items():
        if re.fullmatch(r"(Env|Secret)\d+", key) and value:
            secret = value.split("=", 1)[1]
            assert secret not in words and (len(secret) < 6 or secret not in shown), (key, shown)


def test_outside_us_east_1_the_main_stack_has_no_wake_chain(template, aws):
    (path,) = [p for p in EXAMPLES if p.stem == "valheim"]
    physical, outputs = create(aws, template, example_parameters(path), "eu-north-1")
    assert "WakeFunction" not in physical and "QueryLogGroup" not in physical
    command = outputs["WakeStackCommand"]
    assert command.startswith("aws cloudformation deploy --region us-east-1 ")
    assert "--template-file cloud/wake-us-east-1.yaml" in command
    assert "ServerRegion=eu-north-1" in command
    assert " WebhookKind=none WebhookUrlParameter= IPv6=false" in command
    assert "RecordName" not in command  # the game's own settings are tags on its group
    assert command.endswith(" IPv6=false")
    assert aws("lambda", "eu-north-1").list_functions()["Functions"][0]["FunctionName"] == physical["HelperFunction"]


def test_wake_stack_deploys_in_us_east_1_for_another_region(aws):
    params = [{"ParameterKey": k, "ParameterValue": v} for k, v in {
        "ServerName": "valheim", "ServerRegion": "eu-north-1", "HostedZoneId": "Z0123456789ABCDEFGHIJ"}.items()]
    physical, _ = create(aws, load_template(WAKE_TEMPLATE), params, "us-east-1", name="valheim-wake")
    wake = aws("lambda").get_function(FunctionName=physical["WakeFunction"])["Configuration"]
    assert wake["Environment"]["Variables"] == {"SERVER_REGION": "eu-north-1", "WAKE_PATH": "container-manager-valheim"}
    role = policy_document(aws("iam").get_role_policy(RoleName=physical["WakeRole"], PolicyName="wake"))
    group = "arn:aws:autoscaling:eu-north-1:123456789012:autoScalingGroup:*:autoScalingGroupName/container-manager-valheim"
    # Its job and nothing more: its log, wake its own group (and mark the wake), read groups.
    # moto keeps an AWS::NoValue list element as null; CloudFormation drops it.
    allowed = {s["Sid"]: (s["Action"], s["Resource"]) for s in role["Statement"] if s is not None}
    assert allowed.pop("WakeOwnGroupOnly") == ("autoscaling:SetDesiredCapacity", group)
    assert allowed.pop("MarkTheWakeOnly") == ("autoscaling:CreateOrUpdateTags", group)
    conditions = {s["Sid"]: s.get("Condition") for s in role["Statement"] if s is not None}
    on_path = {"autoscaling:ResourceTag/container-manager:wake-path": "container-manager-valheim"}
    assert conditions["WakeOwnGroupOnly"] == {"StringEquals": on_path}
    assert conditions["MarkTheWakeOnly"] == {"StringEquals": on_path,
                                             "ForAllValues:StringEquals": {"aws:TagKeys": ["container-manager:waking"]}}
    assert allowed.pop("ReadGroups") == ("autoscaling:DescribeAutoScalingGroups", "*")
    assert allowed.pop("Logs")[0] == ["logs:CreateLogStream", "logs:PutLogEvents"]
    assert allowed == {}, "no webhook, no SSM read"
    groups = {g["logGroupName"] for g in aws("logs").describe_log_groups()["logGroups"]}
    assert "/aws/route53/container-manager-valheim" in groups


def test_with_a_webhook_the_wake_stack_reads_that_one_parameter_in_the_servers_region(aws):
    params = [{"ParameterKey": k, "ParameterValue": v} for k, v in {
        "ServerName": "valheim", "ServerRegion": "eu-north-1", "HostedZoneId": "Z0123456789ABCDEFGHIJ",
        "WebhookKind": "slack", "WebhookUrlParameter": "/container-manager/valheim/slack"}.items()]
    physical, _ = create(aws, load_template(WAKE_TEMPLATE), params, "us-east-1", name="valheim-wake")
    role = policy_document(aws("iam").get_role_policy(RoleName=physical["WakeRole"], PolicyName="wake"))
    (read,) = [s for s in role["Statement"] if s is not None and s["Sid"] == "ReadOwnWebhookUrlOnly"]
    assert (read["Action"], read["Resource"]) == (
        "ssm:GetParameter", "arn:aws:ssm:eu-north-1:123456789012:parameter/container-manager/valheim/slack")


def test_no_port_22_opens_on_any_example(template, aws):
    for path in EXAMPLES:
        physical, _ = create(aws, template, with_overrides(path), "eu-west-1", name=f"no-ssh-{path.stem}")
        rules = ingress_rules(aws("ec2", "eu-west-1"), physical["InstanceSecurityGroup"])
        assert rules and not [r for r in rules if r[1] <= 22 <= r[2]], (path.stem, rules)


def test_stop_on_max_uptime_and_other_parameters_reach_the_agent(template, aws):
    (path,) = [p for p in EXAMPLES if p.stem == "minecraft"]
    params = with_overrides(path, StopOnMaxUptime="true", MaxUptimeHours="12", MetricsNamespace="Games/Minecraft",
                            IdleMinutes="15", MinPacketsPerSecond="0.5")
    physical, _ = create(aws, template, params, "eu-west-1")
    _, script = user_data(aws("ec2", "eu-west-1"), physical["LaunchTemplate"])
    config = agent_toml(script)
    assert config["scaling"]["stop_on_max_uptime"] is True
    assert config["scaling"]["max_uptime"] == "12h"
    assert config["metrics"]["namespace"] == "Games/Minecraft"
    assert config["activity"]["idle_after"] == "15m"
    assert config["activity"]["min_packets_per_second"] == 0.5
    assert config["container"]["pre_stop_command"] == ["rcon-cli", "save-all", "flush"]
    role = policy_document(aws("iam").get_role_policy(RoleName=physical["InstanceRole"], PolicyName="agent"))
    (metrics,) = [s for s in role["Statement"] if s["Sid"] == "OwnNamespaceOnly"]
    assert metrics["Condition"]["StringEquals"]["cloudwatch:namespace"] == "Games/Minecraft"


@pytest.mark.parametrize("pool", ["none", "stopped"])
def test_warm_pool_setting_reaches_ecs_and_the_agent(template, aws, pool):
    (path,) = [p for p in EXAMPLES if p.stem == "valheim"]
    values = given(example_parameters(path))
    physical, _ = create(aws, template, with_overrides(path, WarmPool=pool), "us-east-1")
    _, script = user_data(aws("ec2"), physical["LaunchTemplate"])
    config = agent_toml(script)
    assert config["container"]["image"] == values["ContainerImage"]
    ecs_config = re.search(r"cat >> /etc/ecs/ecs.config <<'EOF'\n(.*?)\nEOF\n", script, re.S).group(1)
    if pool == "stopped":
        assert config["scaling"]["launch_hook"] == "container-manager-launching"
        assert "ECS_WARM_POOLS_CHECK=true" in ecs_config.splitlines()
    else:
        assert config["scaling"]["launch_hook"] == ""
        assert "ECS_WARM_POOLS_CHECK" not in ecs_config
    # moto's CloudFormation has no warm pools: the resource is checked on the template.
    assert ("WarmPoolOfOne" in physical) is False


def test_regional_file_systems_have_two_mount_targets_and_the_group_two_zones(template, aws):
    (path,) = [p for p in EXAMPLES if p.stem == "valheim"]
    physical, _ = create(aws, template, with_overrides(path, FileSystemType="regional"), "us-east-1")
    efs, asg = aws("efs"), aws("autoscaling")
    systems = efs.describe_file_systems()["FileSystems"]
    assert len(systems) == 2
    both = {physical["PublicSubnetA"], physical["PublicSubnetB"]}
    for fs in systems:
        assert "AvailabilityZoneName" not in fs
        targets = efs.describe_mount_targets(FileSystemId=fs["FileSystemId"])["MountTargets"]
        assert {t["SubnetId"] for t in targets} == both
        assert_lifecycle(efs, fs["FileSystemId"])
    (group,) = asg.describe_auto_scaling_groups()["AutoScalingGroups"]
    assert set(group["VPCZoneIdentifier"].split(",")) == both


@pytest.mark.parametrize("ipv6", ["false", "true"])
def test_ipv6_opens_the_game_ports_gives_an_address_and_wakes_on_aaaa(template, aws, ipv6):
    (path,) = [p for p in EXAMPLES if p.stem == "minecraft"]
    values = given(example_parameters(path))
    physical, _ = create(aws, template, with_overrides(path, IPv6=ipv6), "us-east-1")
    ec2 = aws("ec2")
    v6_ingress = {k for k in physical if re.fullmatch(r"GamePort\dIngressV6", k)}
    data, script = user_data(ec2, physical["LaunchTemplate"])
    (eni,) = data["NetworkInterfaces"]
    types = tags_of(aws("autoscaling"), f"container-manager-{values['ServerName']}")["container-manager:wake-types"]
    if ipv6 == "true":
        # One rule per game port. moto drops a SecurityGroupIngress's CidrIpv6 (it keeps the rule
        # without a range): test_template.py checks that each opens ::/0.
        assert v6_ingress == {f"GamePort{n}IngressV6" for n in range(1, len(values["GamePorts"].split(",")) + 1)}
        assert "DefaultIpv6Route" in physical
        assert eni["Ipv6AddressCount"] == 1
        assert agent_toml(script)["dns"]["ipv6"] is True
        assert types == "A AAAA"
    else:
        assert v6_ingress == set() and "DefaultIpv6Route" not in physical
        assert "Ipv6AddressCount" not in eni
        assert agent_toml(script)["dns"]["ipv6"] is False
        assert types == "A"
    # moto's CloudFormation skips AWS::EC2::VPCCidrBlock, AWS::EC2::SubnetCidrBlock and
    # AWS::EC2::SecurityGroupEgress (the IPv6 egress), and drops the route's
    # DestinationIpv6CidrBlock: the VPC's and the subnets' IPv6 blocks, the egress rule and the
    # route are checked on the template (test_template.py).
    assert not {"VpcIpv6Block", "PublicSubnetAIpv6Block", "InstanceEgressV6"} & set(physical)


def tags_of(autoscaling, group):
    (found,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    return {t["Key"]: t["Value"] for t in found["Tags"]}


@pytest.mark.parametrize("webhook, events, pool, notice", [
    ("none", "waking,online", "none", "none"),
    ("discord", "waking,online", "none", "discord 4 /container-manager/valheim/discord"),
    ("slack", "online,crash", "none", "none"),  # no waking in the events: nobody is told
    ("json", "crash,waking", "stopped", "json 1 /container-manager/valheim/discord"),
])
def test_the_deployed_function_finds_the_deployed_game_by_its_tags_and_wakes_it(template, aws, webhook, events,
                                                                                  pool, notice):
    """The stack as CloudFormation (moto) resolves it: the group's tags, and the deployed
    function's own code and environment, woken by a lookup in random letter case."""
    from conftest import load_function
    from test_wake import query_line, subscription_event

    (path,) = [p for p in EXAMPLES if p.stem == "valheim"]
    overrides = {"WebhookKind": webhook, "WebhookEvents": events, "WarmPool": pool, "UnusedWakesPerDay": "5"}
    if webhook != "none":
        overrides["WebhookUrlParameter"] = "/container-manager/valheim/discord"
    physical, _ = create(aws, template, with_overrides(path, **overrides), "us-east-1")
    autoscaling = aws("autoscaling")
    tags = tags_of(autoscaling, "container-manager-valheim")
    assert {k: v for k, v in tags.items() if k.startswith("container-manager:")} == {
        "container-manager:wake-path": "container-manager-valheim", "container-manager:record": "valheim.example.com",
        "container-manager:wake-types": "A", "container-manager:wake-budget": "5", "container-manager:wake-notice": notice}
    function = aws("lambda").get_function(FunctionName=physical["WakeFunction"])["Configuration"]
    code = template["Resources"]["WakeFunction"]["Properties"]["Code"]["ZipFile"]
    wake = load_function(code, "deployed_wake", function["Environment"]["Variables"])
    assert wake.handler(subscription_event(query_line("VALheim.example.COM"), query_line("other.example.com")),
                        None).split() == ["ignored", "woken"]
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["container-manager-valheim"])[
        "AutoScalingGroups"]
    assert group["DesiredCapacity"] == 1


@pytest.mark.parametrize("capacity", ["on-demand", "spot"])
def test_spot_uses_a_mixed_instances_policy_of_spot_only(template, aws, capacity):
    (path,) = [p for p in EXAMPLES if p.stem == "palworld"]
    values = given(example_parameters(path))
    overrides = {"CapacityType": capacity}
    if capacity == "spot":
        overrides.update(InstanceType="t3a.large", SpotInstanceTypes="t3a.large,t3.large,m5a.large",
                         StopTimeoutSeconds="90")
    physical, _ = create(aws, template, with_overrides(path, **overrides), "us-east-1")
    (group,) = aws("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    data, script = user_data(aws("ec2"), physical["LaunchTemplate"])
    if capacity == "on-demand":
        assert not group.get("MixedInstancesPolicy")  # moto shows {}
        assert group["LaunchTemplate"]["LaunchTemplateId"] == physical["LaunchTemplate"]
        assert data["InstanceType"] == values["InstanceType"]
        return
    assert "LaunchTemplate" not in group
    policy = group["MixedInstancesPolicy"]
    spec = policy["LaunchTemplate"]["LaunchTemplateSpecification"]
    assert spec["LaunchTemplateId"] == physical["LaunchTemplate"]
    # moto keeps the AWS::NoValue entries of a list as nulls; CloudFormation drops them.
    assert [o["InstanceType"] for o in policy["LaunchTemplate"]["Overrides"] if o] == ["t3a.large", "t3.large", "m5a.large"]
    distribution = policy["InstancesDistribution"]
    assert (distribution["OnDemandBaseCapacity"], distribution["OnDemandPercentageAboveBaseCapacity"]) == (0, 0)
    assert distribution["SpotAllocationStrategy"] == "price-capacity-optimized"
    assert agent_toml(script)["container"]["stop_timeout"] == "90s"


def test_the_memory_limit_and_cpu_units_reach_the_task_definition(template, aws):
    (path,) = [p for p in EXAMPLES if p.stem == "valheim"]
    physical, _ = create(aws, template, with_overrides(path, ContainerMemoryLimitMiB="3072", ContainerCpuUnits="1024"),
                         "us-east-1")
    (c,) = aws("ecs").describe_task_definition(taskDefinition=physical["TaskDefinition"])["taskDefinition"][
        "containerDefinitions"]
    assert (c["memory"], c["cpu"]) == (3072, 1024)
    # Left at 0: neither is set.
    physical, _ = create(aws, template, with_overrides(path, ServerName="plain"), "us-east-1", name="plain")
    (c,) = aws("ecs").describe_task_definition(taskDefinition=physical["TaskDefinition"])["taskDefinition"][
        "containerDefinitions"]
    assert "memory" not in c and not c.get("cpu")


def test_an_environment_file_a_command_a_tenth_secret_and_a_pre_stop_list_reach_the_stack(template, aws):
    """Issue 39's forms, deployed into moto: the environment file as the container's S3
    environment file (with the execution role allowed to read it), the command and the entry
    point as lists, a tenth secret, and the pre-stop command's JSON list as the agent's TOML list."""
    (path,) = [p for p in EXAMPLES if p.stem == "valheim"]
    key = "env/" + "ab" * 32 + "/game.env"
    pre_stop = ["sh", "-c", 'echo "save, now" > /config/console', "x y"]
    physical, _ = create(aws, template, with_overrides(
        path, EnvironmentFileKey=key, ContainerCommand="--port,2456,--name=My World",
        ContainerEntryPoint="/usr/bin/env,A=1", Secret10="RCON_PASSWORD=/container-manager/valheim/rcon",
        ContainerUlimits="nofile=65536:65536,nproc=4096:8192",
        PreStopCommand=json.dumps(pre_stop)), "us-east-1")
    (c,) = aws("ecs").describe_task_definition(taskDefinition=physical["TaskDefinition"])["taskDefinition"][
        "containerDefinitions"]
    assert c["environmentFiles"] == [{"type": "s3", "value": f"arn:aws:s3:::{physical['ArtifactBucket']}/{key}"}]
    assert c["command"] == ["--port", "2456", "--name=My World"]
    assert c["entryPoint"] == ["/usr/bin/env", "A=1"]
    assert [u for u in c["ulimits"] if u] == [{"name": "nofile", "softLimit": 65536, "hardLimit": 65536},
                                              {"name": "nproc", "softLimit": 4096, "hardLimit": 8192}], c["ulimits"]
    assert {"name": "RCON_PASSWORD", "valueFrom": "/container-manager/valheim/rcon"} in c["secrets"]
    _, script = user_data(aws("ec2"), physical["LaunchTemplate"])
    assert agent_toml(script)["container"]["pre_stop_command"] == pre_stop
    # Without them: no environment file, the image's own command and entry point.
    physical, _ = create(aws, template, with_overrides(path, ServerName="plain"), "us-east-1", name="plain")
    (c,) = aws("ecs").describe_task_definition(taskDefinition=physical["TaskDefinition"])["taskDefinition"][
        "containerDefinitions"]
    assert not c.get("environmentFiles") and not c.get("command") and not c.get("entryPoint"), c
    assert not [u for u in c.get("ulimits") or [] if u], c


def test_eight_port_entries_each_with_its_protocol_are_all_opened(template, aws):
    """GamePorts (issue 39): up to eight entries, each a port or a range with its protocol, each
    its own ingress rule; the agent watches the same list."""
    (path,) = [p for p in EXAMPLES if p.stem == "valheim"]
    ports = "udp:8211,udp:27015,tcp:25575,tcp:7777,udp:7777,tcp:8080-8081,udp:9000-9010,tcp:27020"
    physical, _ = create(aws, template, with_overrides(path, GamePorts=ports), "us-east-1")
    assert ingress_rules(aws("ec2"), physical["InstanceSecurityGroup"]) == expected_ingress(ports)
    _, script = user_data(aws("ec2"), physical["LaunchTemplate"])
    assert agent_toml(script)["activity"]["ports"] == ports.split(",")


def test_the_dashboard_is_a_choice_and_without_it_nothing_else_changes(template, aws):
    """CreateDashboard=false: no dashboard (past an account's three free ones each costs $3.00 a
    month) and no DashboardUrl; the alarms, metrics and everything else are the same."""
    (path,) = [p for p in EXAMPLES if p.stem == "valheim"]
    physical, outputs = create(aws, template, with_overrides(path, CreateDashboard="false"), "us-east-1")
    assert aws("cloudwatch").list_dashboards()["DashboardEntries"] == []
    assert "Dashboard" not in physical and "DashboardUrl" not in outputs
    assert {"AlertTopic", "InstanceRole", "AutoScalingGroup", "WakeFunction"} <= set(physical)


@pytest.mark.parametrize("kind", ["none", "discord"])
def test_a_webhook_reaches_the_agent_and_the_role_reads_only_its_parameter(template, aws, kind):
    (path,) = [p for p in EXAMPLES if p.stem == "valheim"]
    overrides = {"WebhookKind": kind}
    if kind != "none":
        overrides.update(WebhookUrlParameter="/container-manager/valheim/discord", WebhookEvents="online,players,crash")
    physical, _ = create(aws, template, with_overrides(path, **overrides), "us-east-1")
    _, script = user_data(aws("ec2"), physical["LaunchTemplate"])
    config = agent_toml(script)
    if kind == "none":
        assert "notify" not in config
        assert "WebhookUrlPolicy" not in physical and "WakeFailedFunction" not in physical
        return
    # A failed wake reaches the players too, through this function (moto's CloudFormation makes
    # no alarms: test_template.py checks that the failed-to-wake alarm invokes it).
    function = aws("lambda").get_function(FunctionName=physical["WakeFailedFunction"])["Configuration"]
    assert function["Environment"]["Variables"]["WEBHOOK_PARAMETER"] == "/container-manager/valheim/discord"
    assert config["notify"] == {"webhook": [{
        "kind": "discord", "url_parameter": "/container-manager/valheim/discord",
        "events": ["online", "players", "crash"]}]}
    policy = policy_document(aws("iam").get_role_policy(RoleName=physical["InstanceRole"], PolicyName="webhook-url"))
    (statement,) = policy["Statement"]
    assert statement["Action"] == "ssm:GetParameter"
    assert statement["Resource"] == "arn:aws:ssm:us-east-1:123456789012:parameter/container-manager/valheim/discord"
