"""What moto's CloudFormation drops or skips, checked on the parsed templates."""

import json
import re

import pytest

from conftest import CLOUD as CLOUD_DIR, EXAMPLES, PACKAGE_KEY, ROOT, example_parameters, function_code, load_template

AGENT_ACTIONS_ON_GROUP = {
    "autoscaling:SetDesiredCapacity",
    "autoscaling:CompleteLifecycleAction",
    "autoscaling:RecordLifecycleActionHeartbeat",
}
# Actions that have no resource-level permissions in IAM, so "*" is the only choice.
STAR_ONLY_ACTIONS = {
    "autoscaling:DescribeAutoScalingInstances",
    "cloudwatch:PutMetricData",
    "ecs:DiscoverPollEndpoint",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "ecr:GetAuthorizationToken",
    "autoscaling:DescribeAutoScalingGroups",
}


def resources(template, kind):
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def statements(role):
    """A role's statements, a conditional one (Fn::If) as the statement it adds when true."""
    out = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    return [s["Fn::If"][1] if "Fn::If" in s else s for s in out]


def as_list(value):
    return value if isinstance(value, list) else [value]


def test_group_is_zero_to_one_and_starts_at_zero(main_template):
    group = main_template["Resources"]["AutoScalingGroup"]["Properties"]
    assert (group["MinSize"], group["MaxSize"]) == ("0", "1")
    # No DesiredCapacity: it starts at MinSize, and stack updates never reset it.
    assert "DesiredCapacity" not in group


def test_group_has_a_termination_hook_that_the_agent_completes(main_template):
    hooks = main_template["Resources"]["AutoScalingGroup"]["Properties"]["LifecycleHookSpecificationList"]
    (hook,) = [h for h in hooks if h.get("LifecycleTransition") == "autoscaling:EC2_INSTANCE_TERMINATING"]
    assert hook["DefaultResult"] == "CONTINUE"
    assert 120 < hook["HeartbeatTimeout"] <= 900
    user_data = main_template["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]
    variables = user_data["Fn::Base64"]["Fn::Sub"][1]
    assert variables["HookName"] == hook["LifecycleHookName"]


def test_launch_template_requires_imdsv2_with_hop_limit_1(main_template):
    data = main_template["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"] == {
        "HttpEndpoint": "enabled", "HttpTokens": "required", "HttpPutResponseHopLimit": 1}
    assert data["ImageId"] == {"Ref": "ImageId"}
    assert main_template["Parameters"]["ImageId"]["Default"] == (
        "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id")
    assert main_template["Parameters"]["ImageId"]["Type"].startswith("AWS::SSM::Parameter::Value")
    assert all(m["Ebs"]["Encrypted"] for m in data["BlockDeviceMappings"])


def test_task_uses_host_networking_and_a_daemon_service(main_template):
    task = main_template["Resources"]["TaskDefinition"]["Properties"]
    assert task["NetworkMode"] == "host"
    assert task["ContainerDefinitions"][0]["Name"] == "game"
    service = main_template["Resources"]["Service"]["Properties"]
    assert service["SchedulingStrategy"] == "DAEMON"


def test_secrets_come_only_from_ssm_and_never_reach_outputs(main_template):
    params = main_template["Parameters"]
    secret_slots = [k for k in params if k.startswith("Secret")]
    assert len(secret_slots) == 10
    for slot in secret_slots:
        assert re.fullmatch(params[slot]["AllowedPattern"], "PASS=/container-manager/x/pass")
        assert not re.fullmatch(params[slot]["AllowedPattern"], "PASS=hunter2")
    container = main_template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert all("ValueFrom" in s["Fn::If"][1] for s in container["Secrets"])
    outputs = json.dumps(main_template["Outputs"])
    for name in params:
        if name.startswith(("Env", "Secret")):
            assert name not in outputs
    read = [s for s in statements(main_template["Resources"]["ExecutionRole"])
            if "ssm:GetParameters" in as_list(s["Action"])]
    assert read[0]["Resource"]["Fn::Sub"].endswith(":parameter/container-manager/${ServerName}/*")


def test_the_environment_file_is_read_from_the_stacks_own_bucket_only(main_template):
    """EnvironmentFileKey (issue 39): the container's S3 environment file in the artifact bucket,
    under env/, named as the deploy command names it; the execution role (which the ECS agent
    uses to fetch it) reads env/ of that bucket and nothing else of it."""
    spec = main_template["Parameters"]["EnvironmentFileKey"]
    assert spec["Default"] == ""
    assert re.fullmatch(spec["AllowedPattern"], "env/" + "0" * 64 + "/game.env")
    for bad in ("agent/" + "0" * 64 + "/game.env", "env/x/game.env", "env/" + "0" * 64 + "/game.txt", "../game.env"):
        assert not re.fullmatch(spec["AllowedPattern"], bad), bad
    (c,) = main_template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    cond, (file,), none = c["EnvironmentFiles"]["Fn::If"]
    assert (cond, none) == ("HasEnvironmentFile", {"Ref": "AWS::NoValue"})
    assert file == {"Type": "s3", "Value": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${ArtifactBucket}/${EnvironmentFileKey}"}}
    s3 = [s for s in statements(main_template["Resources"]["ExecutionRole"]) if any(
        a.startswith("s3:") for a in as_list(s["Action"]))]
    assert [(s["Action"], s["Resource"]) for s in s3] == [
        ("s3:GetObject", {"Fn::Sub": "${ArtifactBucket.Arn}/env/*"}),
        ("s3:GetBucketLocation", {"Fn::GetAtt": ["ArtifactBucket", "Arn"]})]


@pytest.mark.parametrize("entry, allowed", [
    ("", True), ("nofile=65536:65536", True), ("nproc=0:4096", True), ("files=1:2", False), ("nofile=1", False),
    ("nofile=-1:2", False),
])
def test_ulimits_are_name_soft_hard_of_the_names_ecs_takes(main_template, entry, allowed):
    spec = main_template["Parameters"]["ContainerUlimits"]
    assert spec["Type"] == "CommaDelimitedList" and spec["Default"] == ""
    assert bool(re.fullmatch(spec["AllowedPattern"], entry)) == allowed


def test_a_private_registrys_login_is_one_secret_the_execution_role_alone_reads(main_template):
    spec = main_template["Parameters"]["RegistryCredentialsSecretArn"]
    assert spec["Default"] == ""
    assert re.fullmatch(spec["AllowedPattern"], "arn:aws:secretsmanager:eu-west-1:123456789012:secret:registry-AbCdEf")
    assert not re.fullmatch(spec["AllowedPattern"], "registry")
    (c,) = main_template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert c["RepositoryCredentials"] == {"Fn::If": ["HasRegistryCredentials", {
        "CredentialsParameter": {"Ref": "RegistryCredentialsSecretArn"}}, {"Ref": "AWS::NoValue"}]}
    (read,) = [s for s in main_template["Resources"]["ExecutionRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"] if isinstance(s, dict) and "Fn::If" in s]
    cond, statement, otherwise = read["Fn::If"]
    assert (cond, otherwise) == ("HasRegistryCredentials", {"Ref": "AWS::NoValue"})
    assert (statement["Action"], statement["Resource"]) == (
        "secretsmanager:GetSecretValue", {"Ref": "RegistryCredentialsSecretArn"})
    assert "secretsmanager" not in json.dumps(main_template["Resources"]["TaskRole"])


@pytest.mark.parametrize("value, allowed", [
    ("", True), ('["rcon-cli", "save-all"]', True), ('["sh", "-c", "echo \\"a, b\\" > /x"]', True),
    ("rcon-cli,save-all", True), ('rcon-cli,"save"', False), ("[rcon-cli", False), ("a\\b", False),
])
def test_the_pre_stop_command_is_a_list_or_the_older_comma_form(main_template, value, allowed):
    spec = main_template["Parameters"]["PreStopCommand"]
    assert spec["Type"] == "String"
    assert bool(re.fullmatch(spec["AllowedPattern"], value)) == allowed


def test_file_systems_are_encrypted_and_tls_only(main_template):
    systems = resources(main_template, "AWS::EFS::FileSystem")
    assert set(systems) == {"DataFileSystem", "ServerFilesFileSystem"}
    for fs in systems.values():
        props = fs["Properties"]
        assert props["Encrypted"] is True
        (deny,) = props["FileSystemPolicy"]["Statement"]
        assert deny["Effect"] == "Deny"
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": False}}
    volumes = main_template["Resources"]["TaskDefinition"]["Properties"]["Volumes"]

    data, server = (v["EFSVolumeConfiguration"] for v in volumes["Fn::If"][1])
    for config in (data, server):
        assert config["TransitEncryption"] == "ENABLED"
        assert config["AuthorizationConfig"]["IAM"] == "ENABLED"


# The world: the stack's own file system, or the one ExistingFileSystemId names.
WORLD = {"Fn::If": ["AdoptsWorld", {"Ref": "ExistingFileSystemId"}, {"Ref": "DataFileSystem"}]}
WORLD_ARN = {"Fn::Sub": ["arn:${AWS::Partition}:elasticfilesystem:${AWS::Region}:${AWS::AccountId}:file-system/${World}",
                         {"World": WORLD}]}


def test_only_the_data_file_system_is_backed_up(main_template):
    (selection,) = resources(main_template, "AWS::Backup::BackupSelection").values()
    backed_up = json.dumps(selection["Properties"]["BackupSelection"]["Resources"])
    assert selection["Properties"]["BackupSelection"]["Resources"] == [WORLD_ARN]
    assert "ServerFiles" not in backed_up
    for fs in resources(main_template, "AWS::EFS::FileSystem").values():
        assert fs["Properties"]["BackupPolicy"] == {"Status": "DISABLED"}  # no second, implicit plan
    assert main_template["Resources"]["DataFileSystem"]["DeletionPolicy"] == "Retain"
    assert main_template["Resources"]["BackupVault"]["DeletionPolicy"] == "Retain"


def test_security_group_opens_the_game_ports_only_and_no_ssh(main_template):
    ingress = resources(main_template, "AWS::EC2::SecurityGroupIngress")
    assert set(ingress) == {f"GamePort{n}Ingress{v6}" for n in range(1, 9) for v6 in ("", "V6")}
    assert all(r["Properties"]["FromPort"] != 22 for r in ingress.values())
    # Session Manager is the one way in: no key pair, no SSH parameter (docs/cloud.md).
    assert "SshCidr" not in main_template["Parameters"] and "KeyName" not in json.dumps(main_template)
    sg = main_template["Resources"]["InstanceSecurityGroup"]["Properties"]
    assert "SecurityGroupIngress" not in sg


def test_instance_role_limits_each_write_to_one_resource(main_template):
    role = main_template["Resources"]["InstanceRole"]
    assert "ManagedPolicyArns" not in role["Properties"]  # e.g. no AmazonSSMManagedInstanceCore
    by_action = {}
    for statement in statements(role):
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            assert "*" not in action.split(":")[1] or action == "ecs:Submit*", action
            assert action not in by_action, f"{action} granted twice"
            by_action[action] = statement
    for action, statement in by_action.items():
        resource = statement["Resource"]
        assert not isinstance(resource, list), f"{action} has several resources"
        if resource == "*":
            assert action in STAR_ONLY_ACTIONS, action
    for action in AGENT_ACTIONS_ON_GROUP:
        arn = by_action[action]["Resource"]["Fn::Sub"]
        assert arn.endswith(":autoScalingGroup:*:autoScalingGroupName/container-manager-${ServerName}")
    change = by_action["route53:ChangeResourceRecordSets"]
    assert change["Resource"]["Fn::Sub"].endswith(":route53:::hostedzone/${HostedZoneId}")
    assert change["Condition"]["ForAllValues:StringEquals"][
        "route53:ChangeResourceRecordSetsNormalizedRecordNames"] == [{"Ref": "RecordName"}]
    metrics = by_action["cloudwatch:PutMetricData"]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": {"Ref": "MetricsNamespace"}}}
    assert by_action["sns:Publish"]["Resource"] == {"Ref": "AlertTopic"}
    # The game's log and the agent's decision lines: this server's two groups, nothing else.
    for write in ("logs:CreateLogStream", "logs:PutLogEvents"):
        assert by_action[write]["Resource"]["Fn::Sub"].endswith(":log-group:/container-manager/${ServerName}/*")
    groups = {r["Properties"]["LogGroupName"]["Fn::Sub"] for r in resources(main_template, "AWS::Logs::LogGroup").values()
              if "Fn::Sub" in r["Properties"].get("LogGroupName", {})}
    assert {g for g in groups if g.startswith("/container-manager/")} == {
        "/container-manager/${ServerName}/game", "/container-manager/${ServerName}/agent"}
    for read in ("autoscaling:DescribeAutoScalingInstances", "route53:GetChange",
                 "route53:ListResourceRecordSets", "ssm:UpdateInstanceInformation"):
        assert read in by_action
    assert not any(a.startswith(("ssm:GetParameter", "iam:", "ec2:")) for a in by_action)
    # S3: only the world transfers' folders of the stack's own bucket (cloud/world.sh).
    s3 = {a: s["Resource"] for a, s in by_action.items() if a.startswith("s3:")}
    assert s3 == {"s3:GetObject": {"Fn::Sub": "${ArtifactBucket.Arn}/transfer/in/*"},
                  "s3:DeleteObject": {"Fn::Sub": "${ArtifactBucket.Arn}/transfer/in/*"},
                  "s3:PutObject": {"Fn::Sub": "${ArtifactBucket.Arn}/transfer/out/*"},
                  "s3:AbortMultipartUpload": {"Fn::Sub": "${ArtifactBucket.Arn}/transfer/out/*"},
                  "s3:ListBucket": {"Fn::GetAtt": ["ArtifactBucket", "Arn"]}}
    assert by_action["s3:ListBucket"]["Condition"] == {"StringLike": {"s3:prefix": "transfer/in/*"}}
    assert by_action["elasticfilesystem:ClientMount"]["Resource"] == WORLD_ARN, "the world's file system only"


def test_the_host_mounts_the_world_through_an_access_point_as_the_games_user(main_template):
    ap = main_template["Resources"]["HostAccessPoint"]["Properties"]
    data = main_template["Resources"]["DataAccessPoint"]["Properties"]
    assert ap["FileSystemId"] == WORLD
    assert ap["PosixUser"] == {"Uid": {"Ref": "FilesOwnerUid"}, "Gid": {"Ref": "FilesOwnerGid"}}
    assert ap["RootDirectory"] == data["RootDirectory"], "the same folder the game has"
    script = main_template["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"][
        "Fn::Base64"]["Fn::Sub"][0]
    assert main_template["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"][
        "Fn::Base64"]["Fn::Sub"][1]["World"] == WORLD
    assert ("echo '${World}:/ /mnt/world efs _netdev,noresvport,tls,iam,accesspoint=${HostAccessPoint} 0 0'"
            " >> /etc/fstab") in script
    # The maintenance gate runs before ECS and the agent, at every start.
    assert "Before=ecs.service container-manager-agent.service" in script
    # ... and, at the first boot, before the instance joins the cluster (which starts the game).
    assert script.index("\n/usr/local/sbin/container-manager-maintenance\n") < script.index("cat >> /etc/ecs/ecs.config")


def test_world_transfers_expire_from_the_bucket_after_a_day(main_template):
    rules = main_template["Resources"]["ArtifactBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    (rule,) = [r for r in rules if r["Id"] == "expire-world-transfers"]
    assert (rule["Prefix"], rule["ExpirationInDays"], rule["Status"]) == ("transfer/", 1, "Enabled")


def test_heartbeat_alarm_scales_to_zero_after_10_silent_minutes_in_service(main_template):
    alarm = main_template["Resources"]["HeartbeatMissingAlarm"]["Properties"]
    metrics = {m["Id"]: m for m in alarm["Metrics"]}
    heartbeat = metrics["heartbeat"]["MetricStat"]
    assert heartbeat["Metric"]["MetricName"] == "AgentHeartbeat"
    assert heartbeat["Metric"]["Namespace"] == {"Ref": "MetricsNamespace"}
    assert heartbeat["Metric"]["Dimensions"] == [
        {"Name": "AutoScalingGroupName", "Value": {"Ref": "AutoScalingGroup"}}]
    assert metrics["inservice"]["MetricStat"]["Metric"]["MetricName"] == "GroupInServiceInstances"
    (result,) = [m for m in alarm["Metrics"] if m["ReturnData"]]
    assert "inservice >= 1" in result["Expression"] and "FILL(heartbeat, 0) < 1" in result["Expression"]
    assert alarm["DatapointsToAlarm"] * heartbeat["Period"] == 600
    assert alarm["AlarmActions"] == [{"Ref": "ScaleToZeroPolicy"}, {"Ref": "AlertTopic"}]
    policy = main_template["Resources"]["ScaleToZeroPolicy"]["Properties"]
    assert (policy["AdjustmentType"], policy["ScalingAdjustment"]) == ("ExactCapacity", 0)
    collected = main_template["Resources"]["AutoScalingGroup"]["Properties"]["MetricsCollection"]
    assert "GroupInServiceInstances" in collected[0]["Metrics"]


def test_a_wake_that_brings_nothing_into_service_in_10_minutes_alerts_the_operator_once(main_template):
    """The failed-to-wake alarm: desired capacity at least 1 and no instance in service for 10
    one-minute periods in a row. It alerts (entering ALARM is one notification) and leaves the
    capacity alone: nothing runs, and the group keeps trying."""
    alarm = main_template["Resources"]["WakeFailedAlarm"]["Properties"]
    metrics = {m["Id"]: m for m in alarm["Metrics"]}
    for key, name, stat in (("desired", "GroupDesiredCapacity", "Minimum"),
                            ("inservice", "GroupInServiceInstances", "Maximum")):
        ms = metrics[key]["MetricStat"]
        assert (ms["Metric"]["Namespace"], ms["Metric"]["MetricName"], ms["Stat"], ms["Period"]) == (
            "AWS/AutoScaling", name, stat, 60)
        assert ms["Metric"]["Dimensions"] == [{"Name": "AutoScalingGroupName", "Value": {"Ref": "AutoScalingGroup"}}]
    (result,) = [m for m in alarm["Metrics"] if m["ReturnData"]]
    assert result["Expression"] == "IF(desired >= 1 AND FILL(inservice, 0) < 1, 1, 0)"
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == 10
    assert (alarm["ComparisonOperator"], alarm["Threshold"], alarm["TreatMissingData"]) == (
        "GreaterThanOrEqualToThreshold", 1, "notBreaching")
    # The operator through the topic; with a webhook, the players through WakeFailedFunction.
    assert alarm["AlarmActions"] == [{"Ref": "AlertTopic"}, {"Fn::If": [
        "HasWebhook", {"Fn::GetAtt": ["WakeFailedFunction", "Arn"]}, {"Ref": "AWS::NoValue"}]}]
    assert "OKActions" not in alarm
    res = main_template["Resources"]
    for logical in ("WakeFailedFunction", "WakeFailedRole", "WakeFailedLogGroup", "WakeFailedInvokePermission"):
        assert res[logical]["Condition"] == "HasWebhook", logical
    # Only this alarm may invoke it (the principal CloudWatch alarms invoke Lambda as).
    allow = res["WakeFailedInvokePermission"]["Properties"]
    assert (allow["Principal"], allow["SourceArn"], allow["SourceAccount"]) == (
        "lambda.alarms.cloudwatch.amazonaws.com",
        {"Fn::Sub": "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:" + alarm["AlarmName"]["Fn::Sub"]},
        {"Ref": "AWS::AccountId"})
    granted = {a: st["Resource"] for st in statements(res["WakeFailedRole"]) for a in as_list(st["Action"])}
    assert granted == {
        "logs:CreateLogStream": {"Fn::GetAtt": ["WakeFailedLogGroup", "Arn"]},
        "logs:PutLogEvents": {"Fn::GetAtt": ["WakeFailedLogGroup", "Arn"]},
        "autoscaling:DescribeScalingActivities": "*",
        "ssm:GetParameter": {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${WebhookUrlParameter}"}}
    text, values = alarm["AlarmDescription"]["Fn::Sub"]
    assert "describe-scaling-activities" in text and "cloud/cm sleep" in text
    assert values["ReadyIn"] == {"Fn::If": ["HasWarmPool", "1 minute", "4 minutes"]}
    collected = main_template["Resources"]["AutoScalingGroup"]["Properties"]["MetricsCollection"][0]["Metrics"]
    assert {"GroupDesiredCapacity", "GroupInServiceInstances"} <= set(collected)


def test_max_uptime_alarm_alerts_and_stops_only_when_asked(main_template):
    alarm = main_template["Resources"]["MaxUptimeAlarm"]["Properties"]
    assert alarm["MetricName"] == "GroupInServiceInstances"
    assert alarm["Statistic"] == "Minimum"
    periods = main_template["Mappings"]["UptimePeriods"]
    hours = main_template["Parameters"]["MaxUptimeHours"]
    assert set(periods) == {str(h) for h in range(hours["MinValue"], hours["MaxValue"] + 1)}
    for h, row in periods.items():
        assert row["Periods"] * alarm["Period"] == int(h) * 3600
    assert alarm["AlarmActions"][0] == {"Ref": "AlertTopic"}
    assert alarm["AlarmActions"][1] == {
        "Fn::If": ["StopsOnMaxUptime", {"Ref": "ScaleToZeroPolicy"}, {"Ref": "AWS::NoValue"}]}


def test_subscription_filter_selects_a_queries_whatever_the_letter_case(main_template, wake_template):
    # Not the name itself: filter patterns are case-sensitive, and DNS 0x20 randomises the case.
    # AAAA queries pass only with IPv6, as the function then wakes on them.
    for template in (main_template, wake_template):
        (flt,) = resources(template, "AWS::Logs::SubscriptionFilter").values()
        assert flt["Properties"]["FilterPattern"] == {"Fn::If": ["HasIPv6", '?" A " ?" AAAA "', '" A "']}
        assert template["Conditions"]["HasIPv6"] == {"Fn::Equals": [{"Ref": "IPv6"}, "true"]}
    # Which of those wake the game is the game's own tag.
    assert group_tags(main_template)["container-manager:wake-types"] == {"Fn::If": ["HasIPv6", "A AAAA", "A"]}


def own_or_base(base_output, own):
    """A game in a base takes the base's output (its Base* parameter); one server its own resource."""
    return {"Fn::If": ["InBase", {"Ref": f"Base{base_output}"}, {"Ref": own}]}


def group_tags(template):
    return {t["Key"]: t["Value"] for t in template["Resources"]["AutoScalingGroup"]["Properties"]["Tags"]}


def test_the_group_carries_the_tags_the_wake_function_finds_it_and_its_settings_by(main_template, wake_template):
    # tests/cloud/test_wake.py's game_tags() is the other side; test_deploy.py checks the values.
    tags = group_tags(main_template)
    path = {"Fn::Sub": "container-manager-${ServerName}"}
    assert tags == {
        "Name": path,
        "container-manager:wake-path": {"Fn::If": ["InBase", {"Fn::Sub": "container-manager-base-${BaseName}"}, path]}, "container-manager:record": {"Ref": "RecordName"},
        "container-manager:wake-types": {"Fn::If": ["HasIPv6", "A AAAA", "A"]},
        "container-manager:wake-budget": {"Ref": "UnusedWakesPerDay"},
        "container-manager:wake-notice": {"Fn::If": ["TellsWaking", {"Fn::Sub": [
            "${WebhookKind} ${Minutes} ${WebhookUrlParameter}", {"Minutes": {"Fn::If": ["HasWarmPool", 1, 4]}}]},
            "none"]}}
    assert all(t["PropagateAtLaunch"] is False for t in main_template["Resources"]["AutoScalingGroup"]["Properties"][
        "Tags"] if t["Key"] != "Name")
    # The function's environment names only the wake path and the region: no game, no list.
    for template, region in ((main_template, {"Ref": "AWS::Region"}), (wake_template, {"Ref": "ServerRegion"})):
        env = template["Resources"]["WakeFunction"]["Properties"]["Environment"]["Variables"]
        assert env == {"WAKE_PATH": path, "SERVER_REGION": region}
        statements = {s["Sid"]: s for s in template["Resources"]["WakeRole"]["Properties"]["Policies"][0][
            "PolicyDocument"]["Statement"] if isinstance(s, dict) and "Sid" in s}
        on_path = {"autoscaling:ResourceTag/container-manager:wake-path": path}
        assert statements["WakeOwnGroupOnly"]["Action"] == "autoscaling:SetDesiredCapacity"
        assert statements["WakeOwnGroupOnly"]["Condition"] == {"StringEquals": on_path}
        assert statements["MarkTheWakeOnly"]["Action"] == "autoscaling:CreateOrUpdateTags"
        assert statements["MarkTheWakeOnly"]["Condition"] == {
            "StringEquals": on_path, "ForAllValues:StringEquals": {"aws:TagKeys": ["container-manager:waking"]}}


def test_both_templates_carry_the_same_wake_chain(main_template, wake_template):
    for logical_id in ("WakeFunction", "HelperFunction"):
        code = function_code(main_template, logical_id)
        assert code == function_code(wake_template, logical_id)
        assert len(code) <= 4096  # this project's own limit for inline code (docs/aws-sources.md)
    for logical_id in ("QueryLogGroup", "QueryLogResourcePolicy", "QueryLogging", "WakeInvokePermission",
                       "WakeSubscriptionFilter", "WakeLogGroup"):
        main = dict(main_template["Resources"][logical_id])
        assert main.pop("Condition") == "CarriesWakeChain"
        assert main == wake_template["Resources"][logical_id], logical_id
    wake_env = wake_template["Resources"]["WakeFunction"]["Properties"]["Environment"]["Variables"]
    assert wake_env["SERVER_REGION"] == {"Ref": "ServerRegion"}
    assert main_template["Conditions"]["IsUsEast1"] == {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}


def test_the_stack_owns_the_record_only_through_the_cleanup_resource(main_template):
    assert not resources(main_template, "AWS::Route53::RecordSet")
    record = main_template["Resources"]["ServerRecord"]
    assert record["Type"] == "Custom::ServerRecord"
    assert record["Properties"]["Address"] == "0.0.0.0"
    # The group goes first on delete, so the agent can't rewrite a deleted record.
    assert "ServerRecord" in main_template["Resources"]["AutoScalingGroup"]["DependsOn"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_fits_the_template(path, main_template):
    params = main_template["Parameters"]
    given = {p["ParameterKey"]: p["ParameterValue"] for p in example_parameters(path)}
    assert set(given) <= set(params)
    assert {k for k, v in params.items() if "Default" not in v} <= set(given)
    for key, value in given.items():
        spec = params[key]
        values = value.split(",") if spec["Type"] == "CommaDelimitedList" else [value]
        for item in values:
            if "AllowedPattern" in spec:
                assert re.fullmatch(spec["AllowedPattern"], item), (key, item)
            if "AllowedValues" in spec:
                assert item in [str(v) for v in spec["AllowedValues"]], (key, item)
        if spec["Type"] == "Number":
            assert spec.get("MinValue", -1e18) <= float(value) <= spec.get("MaxValue", 1e18), key
    if spec_ports := given["GamePorts"].split(","):
        assert 1 <= len(spec_ports) <= 8


@pytest.mark.parametrize("name,ports,probe", [
    ("valheim", "udp:2456-2458", "a2s"),
    ("minecraft", "tcp:25565,udp:19132", "minecraft"),
    ("palworld", "udp:8211,udp:27015", "none"),
    ("terraria", "tcp:7777,udp:7777", "none"),
])
def test_examples_cover_the_four_games(name, ports, probe):
    (path,) = [p for p in EXAMPLES if p.stem == name]
    given = {p["ParameterKey"]: p["ParameterValue"] for p in example_parameters(path)}
    assert given["GamePorts"] == ports
    assert given["ProbeKind"] == probe


def test_warm_pool_is_optional_stopped_and_of_one_with_a_launching_hook(main_template):
    params = main_template["Parameters"]["WarmPool"]
    assert params["Default"] == "none" and params["AllowedValues"] == ["none", "stopped"]
    pool = main_template["Resources"]["WarmPoolOfOne"]
    assert pool["Type"] == "AWS::AutoScaling::WarmPool" and pool["Condition"] == "HasWarmPool"
    assert pool["Properties"]["PoolState"] == "Stopped"
    # No MaxGroupPreparedCapacity: the pool holds max (1) minus desired, so one while asleep.
    assert "MaxGroupPreparedCapacity" not in pool["Properties"]
    hooks = main_template["Resources"]["AutoScalingGroup"]["Properties"]["LifecycleHookSpecificationList"]
    (launching,) = [h for h in hooks if isinstance(h, dict) and "Fn::If" in h]
    condition, hook, otherwise = launching["Fn::If"]
    assert condition == "HasWarmPool" and otherwise == {"Ref": "AWS::NoValue"}
    assert hook["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
    assert hook["DefaultResult"] == "CONTINUE"


# --- issue 12: storage, IPv6, Spot, the hardened unit ------------------------------------------


def test_file_systems_are_one_zone_by_default_with_ia_lifecycle_and_bursting(main_template):
    params = main_template["Parameters"]["FileSystemType"]
    assert params["Default"] == "one-zone" and params["AllowedValues"] == ["one-zone", "regional"]
    resources_ = main_template["Resources"]
    for fs in resources(main_template, "AWS::EFS::FileSystem").values():
        props = fs["Properties"]
        # The zone of PublicSubnetA (the same expression), where the group launches.
        assert props["AvailabilityZoneName"] == {
            "Fn::If": ["IsOneZone", resources_["PublicSubnetA"]["Properties"]["AvailabilityZone"], {"Ref": "AWS::NoValue"}]}
        assert props["ThroughputMode"] == "bursting"
        assert props["LifecyclePolicies"] == [{"TransitionToIA": "AFTER_30_DAYS"},
                                             {"TransitionToPrimaryStorageClass": "AFTER_1_ACCESS"}]
    targets = resources(main_template, "AWS::EFS::MountTarget")
    assert {k: v.get("Condition") for k, v in targets.items()} == {
        "DataMountTargetA": None, "DataMountTargetB": "IsRegional",
        "ServerFilesMountTargetA": "HasServerFiles", "ServerFilesMountTargetB": "HasRegionalServerFiles"}
    for k, v in targets.items():
        assert v["Properties"]["SubnetId"] == own_or_base(f"Subnet{k[-1]}", f"PublicSubnet{k[-1]}")
    group = resources_["AutoScalingGroup"]
    assert group["Properties"]["VPCZoneIdentifier"] == {"Fn::If": [
        "IsOneZone", [own_or_base("SubnetA", "PublicSubnetA")],
        [own_or_base("SubnetA", "PublicSubnetA"), own_or_base("SubnetB", "PublicSubnetB")]]}
    assert "DataMountTargetB" not in group["DependsOn"]  # it may not exist
    # AWS Backup still backs up the data file system (and keeps its copies apart from the zone).
    (selection,) = resources(main_template, "AWS::Backup::BackupSelection").values()
    assert selection["Properties"]["BackupSelection"]["Resources"] == [WORLD_ARN]


def test_ipv6_is_dual_stack_and_opens_each_game_port_to_the_world(main_template):
    r = main_template["Resources"]
    assert main_template["Parameters"]["IPv6"]["Default"] == "false"
    assert r["VpcIpv6Block"]["Condition"] == "OwnNetworkIPv6"  # a base's game: the base's blocks
    assert r["VpcIpv6Block"]["Properties"] == {"VpcId": {"Ref": "Vpc"}, "AmazonProvidedIpv6CidrBlock": True}
    for n, subnet in enumerate(("PublicSubnetA", "PublicSubnetB")):
        block = r[f"{subnet}Ipv6Block"]
        assert (block["Condition"], block["DependsOn"]) == ("OwnNetworkIPv6", "VpcIpv6Block")
        assert block["Properties"]["SubnetId"] == {"Ref": subnet}
        assert block["Properties"]["Ipv6CidrBlock"] == {"Fn::Select": [n, {"Fn::Cidr": [
            {"Fn::Select": [0, {"Fn::GetAtt": ["Vpc", "Ipv6CidrBlocks"]}]}, 2, 64]}]}
    route = r["DefaultIpv6Route"]
    assert route["Condition"] == "OwnNetworkIPv6"
    assert route["Properties"]["DestinationIpv6CidrBlock"] == "::/0"
    assert route["Properties"]["GatewayId"] == {"Ref": "InternetGateway"}
    egress = r["InstanceEgressV6"]
    assert egress["Condition"] == "HasIPv6"
    assert egress["Properties"]["CidrIpv6"] == "::/0" and egress["Properties"]["IpProtocol"] == "-1"
    for n in range(1, 9):
        v4, v6 = r[f"GamePort{n}Ingress"], r[f"GamePort{n}IngressV6"]
        assert v6["Condition"] == ("HasIPv6" if n == 1 else f"HasIPv6Port{n}")
        assert v6["Properties"].pop("CidrIpv6") == "::/0"
        v4_props = dict(v4["Properties"])
        assert v4_props.pop("CidrIp") == "0.0.0.0/0"
        assert v6["Properties"].pop("Description") == v4_props.pop("Description") + " (IPv6)"
        assert v6["Properties"] == v4_props  # the same protocol and ports
    for n in range(2, 9):
        assert main_template["Conditions"][f"HasIPv6Port{n}"] == {
            "Fn::And": [{"Condition": "HasIPv6"}, {"Condition": f"HasPort{n}"}]}
    (eni,) = r["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["NetworkInterfaces"]
    assert eni["Ipv6AddressCount"] == {"Fn::If": ["HasIPv6", 1, {"Ref": "AWS::NoValue"}]}
    variables = r["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"][1]
    assert variables["Ipv6"] == {"Fn::If": ["HasIPv6", "true", "false"]}
    assert "IPv6=${IPv6}" in main_template["Outputs"]["WakeStackCommand"]["Value"]["Fn::If"][2]["Fn::If"][2]["Fn::Sub"]


def test_spot_is_a_mixed_instances_policy_of_spot_only(main_template):
    params = main_template["Parameters"]
    assert params["CapacityType"]["Default"] == "on-demand"
    assert params["CapacityType"]["AllowedValues"] == ["on-demand", "spot"]
    props = main_template["Resources"]["AutoScalingGroup"]["Properties"]
    assert props["LaunchTemplate"]["Fn::If"][:2] == ["IsSpot", {"Ref": "AWS::NoValue"}]
    condition, policy, otherwise = props["MixedInstancesPolicy"]["Fn::If"]
    assert condition == "IsSpot" and otherwise == {"Ref": "AWS::NoValue"}
    assert policy["LaunchTemplate"]["LaunchTemplateSpecification"] == props["LaunchTemplate"]["Fn::If"][2]
    assert policy["InstancesDistribution"] == {
        "OnDemandBaseCapacity": 0, "OnDemandPercentageAboveBaseCapacity": 0,
        "SpotAllocationStrategy": "price-capacity-optimized"}
    # The ECS agent's own Spot draining stays off: the agent saves the game in the notice.
    user_data = main_template["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]
    assert "ECS_ENABLE_SPOT_INSTANCE_DRAINING" not in user_data["Fn::Base64"]["Fn::Sub"][0]


def evaluate_rule(value, params):
    """CloudFormation's rule functions, for the values a user gives."""
    if isinstance(value, dict):
        (k, v), = value.items()
        if k == "Ref":
            return params[v]
        if k == "Fn::Equals":
            return evaluate_rule(v[0], params) == evaluate_rule(v[1], params)
        if k == "Fn::Not":
            return not evaluate_rule(v[0], params)
        if k == "Fn::Or":
            return any(evaluate_rule(x, params) for x in v)
        if k == "Fn::And":
            return all(evaluate_rule(x, params) for x in v)
        if k == "Fn::Contains":
            return evaluate_rule(v[1], params) in evaluate_rule(v[0], params)
        if k == "Fn::EachMemberEquals":
            return all(x == evaluate_rule(v[1], params) for x in evaluate_rule(v[0], params))
        raise AssertionError(f"not a rule function: {k}")
    if isinstance(value, list):
        return [evaluate_rule(x, params) for x in value]
    return value


def refusals(template, **given):
    params = {k: str(v.get("Default", "")) for k, v in template["Parameters"].items()}
    params["AgentPackageKey"] = PACKAGE_KEY  # as cloud/deploy.sh sets it
    params.update(given)
    for k, spec in template["Parameters"].items():
        if spec["Type"] == "CommaDelimitedList":
            params[k] = params[k].split(",")
    out = []
    for name, rule in template["Rules"].items():
        if "RuleCondition" in rule and not evaluate_rule(rule["RuleCondition"], params):
            continue
        out += [a["AssertDescription"] for a in rule["Assertions"] if not evaluate_rule(a["Assert"], params)]
    return out


@pytest.mark.parametrize("given, refused", [
    ({}, None),
    ({"WarmPool": "stopped"}, None),
    ({"CapacityType": "spot"}, "StopTimeoutSeconds must be 100 or less"),  # the default is 120
    ({"CapacityType": "spot", "StopTimeoutSeconds": "100"}, None),
    ({"CapacityType": "spot", "StopTimeoutSeconds": "101"}, "StopTimeoutSeconds must be 100 or less"),
    ({"CapacityType": "spot", "StopTimeoutSeconds": "90", "WarmPool": "stopped"}, "AWS does not allow a warm pool"),
    ({"CapacityType": "spot", "StopTimeoutSeconds": "50", "PreStopCommand": "rcon-cli,save-all"}, None),
    ({"CapacityType": "spot", "StopTimeoutSeconds": "51", "PreStopCommand": "rcon-cli,save-all"},
     "StopTimeoutSeconds must be 50 or less"),
    ({"CapacityType": "spot", "StopTimeoutSeconds": "60", "InstanceType": "t3a.large"}, "must list InstanceType"),
    ({"CapacityType": "spot", "StopTimeoutSeconds": "60", "InstanceType": "t3a.large",
      "SpotInstanceTypes": "t3a.large,t3.large"}, None),
    ({"StopTimeoutSeconds": "120", "PreStopCommand": "rcon-cli,save-all"}, None),  # on demand: the hook waits
])
def test_rules_refuse_what_spot_cannot_do(main_template, given, refused):
    out = refusals(main_template, **given)
    if refused is None:
        assert out == []
    else:
        assert len(out) == 1 and refused in out[0], out


def test_the_spot_bounds_are_the_worst_case_of_the_notice():
    # docs/cloud.md, "Spot: the worst case": 120 s notice; the agent polls IMDS every 5 s; the
    # pre-stop command runs at most min(stop_timeout, 60 s), the stop at most stop_timeout; the
    # DNS revert runs alongside; metrics and the lifecycle action need about 10 s after.
    notice, poll, after = 120, 5, 10
    assert poll + 100 + after <= notice < poll + 101 + after + 5
    assert poll + min(50, 60) + 50 + after <= notice
    assert poll + min(51, 60) + 51 + after > notice - 5


def test_the_bare_binary_gets_the_packaged_hardened_unit(main_template):
    script = main_template["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"][0]
    # The one unit user-data writes is the maintenance gate's ("Your world's files"); the
    # agent's comes from the binary.
    assert script.count("[Service]") == 1 and "ExecStart=/usr/local/sbin/container-manager-maintenance" in script
    assert "ExecStart=/usr/local/bin/container-manager-agent" not in script
    assert re.search(r"container-manager-agent print-unit --binary /usr/local/bin/container-manager-agent \\\n"
                     r"\s+> /etc/systemd/system/container-manager-agent.service\n", script)
    assert "print-sysusers > /etc/sysusers.d/container-manager-agent.conf" in script
    assert "systemd-sysusers /etc/sysusers.d/container-manager-agent.conf" in script


@pytest.mark.parametrize("given, refused", [
    ({"WebhookKind": "none"}, None),
    ({"WebhookKind": "slack"}, "needs WebhookUrlParameter"),
    ({"WebhookKind": "slack", "WebhookUrlParameter": "/container-manager/valheim/slack"}, None),
])
def test_a_webhook_needs_its_parameter(main_template, given, refused):
    out = refusals(main_template, **given)
    if refused is None:
        assert out == []
    else:
        assert len(out) == 1 and refused in out[0], out


def test_the_webhook_parameter_is_a_name_never_a_url(main_template, wake_template):
    pattern = re.compile(main_template["Parameters"]["WebhookUrlParameter"]["AllowedPattern"])
    assert pattern.fullmatch("") and pattern.fullmatch("/container-manager/valheim/discord")
    for bad in ["https://discord.com/api/webhooks/1/x", "container-manager/x", "/a b", '/a"b']:
        assert not pattern.fullmatch(bad), bad
    events = main_template["Parameters"]["WebhookEvents"]["Default"].split(",")
    assert events == ["waking", "online", "idle_stop", "crash", "max_uptime", "needs_operator", "never_started"]
    # moto's CloudFormation applies the policy resource; the template names exactly one parameter.
    policy = main_template["Resources"]["WebhookUrlPolicy"]
    assert policy["Condition"] == "HasWebhook"
    assert policy["Properties"]["Roles"] == [{"Ref": "InstanceRole"}]


@pytest.mark.parametrize("given, refused", [
    ({}, None),
    ({"AgentPackageKey": "", "AgentPackageUrl": "https://example.com/agent.rpm"}, None),
    ({"AgentPackageKey": "", "AgentPackageUrl": ""}, "Set exactly one of AgentPackageKey"),
    ({"AgentPackageUrl": "https://example.com/agent.rpm"}, "Set exactly one of AgentPackageKey"),
])
def test_the_agent_comes_from_the_bucket_or_a_url_never_both(main_template, given, refused):
    out = refusals(main_template, **given)
    assert (refused is None and out == []) or (refused is not None and any(refused in r for r in out)), out


def test_the_artifact_bucket_is_private_encrypted_and_read_only_through_the_vpc_endpoint(main_template):
    res = main_template["Resources"]
    props = res["ArtifactBucket"]["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        k: True for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")}
    (enc,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert enc["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    endpoint = res["S3Endpoint"]["Properties"]
    assert endpoint["VpcEndpointType"] == "Gateway" and endpoint["RouteTableIds"] == [{"Ref": "PublicRouteTable"}]
    assert "PolicyDocument" not in endpoint, "ECR layers and the OS repositories use the same endpoint"
    allow, deny = res["ArtifactBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    # The only grant: GetObject on agent/*, only through this stack's endpoint.
    assert (allow["Effect"], allow["Principal"], allow["Action"]) == ("Allow", "*", "s3:GetObject")
    assert allow["Resource"] == {"Fn::Sub": "${ArtifactBucket.Arn}/agent/*"}
    assert allow["Condition"] == {"StringEquals": {"aws:SourceVpce": own_or_base("S3EndpointId", "S3Endpoint")}}
    assert (deny["Effect"], deny["Action"], deny["Condition"]) == ("Deny", "s3:*", {"Bool": {"aws:SecureTransport": False}})
    # No secret in the outputs: the bucket's name only.
    outputs = main_template["Outputs"]
    assert outputs["ArtifactBucketName"]["Value"] == {"Ref": "ArtifactBucket"}


def test_the_first_step_of_a_deploy_makes_the_same_bucket(main_template):
    """cloud/deploy.sh creates a new stack from cloud/artifact-bucket.yaml, then updates it to the
    main template; the bucket must be the same resource in both, so the update keeps it."""
    from conftest import CLOUD
    bootstrap = load_template(CLOUD / "artifact-bucket.yaml")
    # Metadata included (the scanner's suppressions): moto's stack update would otherwise
    # "update" the bucket, and CloudFormation would record a change for nothing.
    assert bootstrap["Resources"] == {"ArtifactBucket": main_template["Resources"]["ArtifactBucket"]}
    assert bootstrap["Parameters"]["ServerName"]["AllowedPattern"] == main_template["Parameters"]["ServerName"]["AllowedPattern"]


DISCORD = ("DiscordLogGroup", "DiscordRole", "DiscordFunction", "DiscordUrl", "DiscordUrlPermission",
           "DiscordUrlInvokePermission")


def test_the_discord_role_can_only_wake_or_read_its_own_group_and_write_its_own_log(main_template):
    res = main_template["Resources"]
    assert main_template["Conditions"]["HasDiscord"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "DiscordPublicKey"}, ""]}]}
    for logical_id in DISCORD:
        assert res[logical_id].get("Condition") == "HasDiscord", f"{logical_id}: expected Condition HasDiscord"
    role = res["DiscordRole"]["Properties"]
    assert set(role) == {"AssumeRolePolicyDocument", "Policies"}, "no managed policies, no other grants"
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust == {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    granted = {}
    for s in statements(res["DiscordRole"]):
        assert s["Effect"] == "Allow" and "NotAction" not in s and "NotResource" not in s, s
        for action in as_list(s["Action"]):
            assert "*" not in action, f"DiscordRole: wildcard action {action}"
            granted[action] = s["Resource"]
    group_arn = {"Fn::Sub": "arn:${AWS::Partition}:autoscaling:${AWS::Region}:${AWS::AccountId}:autoScalingGroup:*"
                            ":autoScalingGroupName/container-manager-${ServerName}"}
    assert granted == {
        "logs:CreateLogStream": {"Fn::GetAtt": ["DiscordLogGroup", "Arn"]},
        "logs:PutLogEvents": {"Fn::GetAtt": ["DiscordLogGroup", "Arn"]},
        "autoscaling:SetDesiredCapacity": group_arn,
        "autoscaling:DescribeAutoScalingGroups": "*",
    }
    assert "autoscaling:DescribeAutoScalingGroups" in STAR_ONLY_ACTIONS
    # The ARN names this stack's group, whose MaxSize is 1.
    group = res["AutoScalingGroup"]["Properties"]
    assert group["AutoScalingGroupName"] == {"Fn::Sub": "container-manager-${ServerName}"} and group["MaxSize"] == "1"
    # The code calls the group only to read it and to set 1.
    code = (CLOUD_DIR / "discord_interactions.py").read_text()
    assert set(re.findall(r"autoscaling\.(\w+)\(", code)) == {"describe_auto_scaling_groups", "set_desired_capacity"}
    calls = re.findall(r"set_desired_capacity\(([^)]*)\)", code)
    assert calls and all("DesiredCapacity=1," in c for c in calls), calls
    fn = res["DiscordFunction"]["Properties"]
    assert fn["Role"] == {"Fn::GetAtt": ["DiscordRole", "Arn"]} and fn["Timeout"] <= 3
    assert fn["Environment"]["Variables"]["WAKE_BUDGET"] == {"Ref": "UnusedWakesPerDay"}


def test_the_discord_url_is_public_and_only_through_the_url(main_template):
    res = main_template["Resources"]
    assert res["DiscordUrl"]["Properties"] == {"AuthType": "NONE",
                                               "TargetFunctionArn": {"Fn::GetAtt": ["DiscordFunction", "Arn"]}}
    url, invoke = res["DiscordUrlPermission"]["Properties"], res["DiscordUrlInvokePermission"]["Properties"]
    assert url == {"FunctionName": {"Ref": "DiscordFunction"}, "Action": "lambda:InvokeFunctionUrl",
                   "Principal": "*", "FunctionUrlAuthType": "NONE"}
    assert invoke == {"FunctionName": {"Ref": "DiscordFunction"}, "Action": "lambda:InvokeFunction",
                      "Principal": "*", "InvokedViaFunctionUrl": True}
    out = main_template["Outputs"]["DiscordInteractionsEndpointUrl"]
    assert out["Condition"] == "HasDiscord" and out["Value"] == {"Fn::GetAtt": ["DiscordUrl", "FunctionUrl"]}


def test_inline_functions_stay_under_4096_and_the_discord_code_comes_from_the_bucket(main_template):
    for logical_id, fn in resources(main_template, "AWS::Lambda::Function").items():
        if "ZipFile" in fn["Properties"]["Code"]:
            assert len(fn["Properties"]["Code"]["ZipFile"]) <= 4096, logical_id
    # The endpoint's two modules together do not fit that, so the deploy command uploads them.
    size = sum(len((CLOUD_DIR / f).read_text()) for f in ("discord_interactions.py", "discord_verify.py"))
    assert size > 4096
    fn = main_template["Resources"]["DiscordFunction"]["Properties"]
    assert fn["Handler"] == "discord_interactions.handler"
    assert fn["Code"] == {"S3Bucket": {"Ref": "ArtifactBucket"},
                          "S3Key": {"Fn::Sub": "discord/${DiscordCodeSha256}/discord-interactions.zip"}}


@pytest.mark.parametrize("given, refused", [
    ({}, None),
    ({"DiscordApplicationId": "1234567890123456789", "DiscordPublicKey": "ab" * 32, "DiscordCodeSha256": "cd" * 32},
     None),
    ({"DiscordApplicationId": "1234567890123456789"}, "Set both DiscordApplicationId and DiscordPublicKey"),
    ({"DiscordApplicationId": "1234567890123456789", "DiscordPublicKey": "ab" * 32}, "needs DiscordCodeSha256"),
])
def test_discord_needs_the_id_the_key_and_the_code(main_template, given, refused):
    out = refusals(main_template, **given)
    assert (refused is None and out == []) or (refused is not None and len(out) == 1 and refused in out[0]), out


def test_an_existing_file_system_takes_the_place_of_the_stacks_own_everywhere(main_template):
    """With ExistingFileSystemId set the stack makes no file system, and every use of the world
    (mount targets, access points, the task's volume, the roles, the backup, the agent's and the
    maintenance boot's configuration, the output) names the given one."""
    param = main_template["Parameters"]["ExistingFileSystemId"]
    assert param["Default"] == "" and re.fullmatch(param["AllowedPattern"], "fs-0123456789abcdef0")
    assert not re.fullmatch(param["AllowedPattern"], "fsap-0123456789abcdef0")
    conditions = main_template["Conditions"]
    assert conditions["AdoptsWorld"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ExistingFileSystemId"}, ""]}]}
    assert conditions["MakesWorld"] == {"Fn::Equals": [{"Ref": "ExistingFileSystemId"}, ""]}
    data = main_template["Resources"]["DataFileSystem"]
    assert data["Condition"] == "MakesWorld" and data["UpdateReplacePolicy"] == "Retain"
    uses = []

    def walk(value, where, inside_world=False):
        if value == WORLD:
            uses.append(where)
            return
        if isinstance(value, dict):
            if value.get("Ref") == "DataFileSystem" or (
                    "Fn::Sub" in value and "${DataFileSystem}" in json.dumps(value["Fn::Sub"])):
                raise AssertionError(f"{where}: names DataFileSystem outside the world's If")
            for k, v in value.items():
                walk(v, where)
        elif isinstance(value, list):
            for v in value:
                walk(v, where)

    for name, resource in main_template["Resources"].items():
        walk(resource, name)
    for name, output in main_template["Outputs"].items():
        walk(output, f"Outputs.{name}")
    assert sorted(set(uses)) == sorted(["BackupSelection", "DataAccessPoint", "DataMountTargetA", "DataMountTargetB",
                                        "HostAccessPoint", "InstanceRole", "LaunchTemplate", "TaskDefinition",
                                        "TaskRole", "Outputs.DataFileSystemId"])


def test_the_dashboard_is_on_by_default_and_a_choice(main_template):
    param = main_template["Parameters"]["CreateDashboard"]
    assert (param["Default"], param["AllowedValues"]) == ("true", ["true", "false"])
    assert "$3.00 a month" in param["Description"]
    assert main_template["Conditions"]["HasDashboard"] == {"Fn::Equals": [{"Ref": "CreateDashboard"}, "true"]}
    assert main_template["Resources"]["Dashboard"]["Condition"] == "HasDashboard"
    assert main_template["Outputs"]["DashboardUrl"]["Condition"] == "HasDashboard"


def test_the_dashboard_shows_the_wakes_of_the_last_day_from_metrics_the_agent_publishes(main_template):
    body = main_template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "X", body))["widgets"]
    published = set(re.findall(r'"([A-Z][A-Za-z]+)",\s*StandardUnit::',
                               (ROOT / "agent/src/aws/cloudwatch.rs").read_text()))
    assert {"WakeJoined", "PlayersOnline", "AgentHeartbeat"} <= published, published
    shown = set()
    for w in widgets:
        last = None
        for m in w.get("properties", {}).get("metrics", []):
            names = [x for x in m if isinstance(x, str)]
            last = names[1] if names[1] != "." else last
            if names[0] in ("X", "."):
                shown.add(last)
    assert shown <= published, f"the dashboard shows metrics the agent does not publish: {shown - published}"
    (wakes,) = [w["properties"] for w in widgets if "Wakes" in w.get("properties", {}).get("title", "")]
    assert wakes["start"] == "-PT24H" and wakes["setPeriodToTimeRange"] is True and wakes["view"] == "singleValue"
    stats = [(m[1], m[-1]["stat"]) for m in wakes["metrics"]]
    assert stats == [("WakeJoined", "SampleCount"), (".", "Sum")], stats


def test_a_hard_memory_limit_and_cpu_units_are_choices_and_off_by_default(main_template):
    params = main_template["Parameters"]
    assert (params["ContainerMemoryLimitMiB"]["Default"], params["ContainerCpuUnits"]["Default"]) == (0, 0)
    (c,) = main_template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert c["MemoryReservation"] == {"Ref": "ContainerMemoryMiB"}
    assert c["Memory"] == {"Fn::If": ["HasMemoryLimit", {"Ref": "ContainerMemoryLimitMiB"}, {"Ref": "AWS::NoValue"}]}
    assert c["Cpu"] == {"Fn::If": ["HasCpuUnits", {"Ref": "ContainerCpuUnits"}, {"Ref": "AWS::NoValue"}]}


# Many servers in one account and domain (docs/many-servers.md): a base (cloud/base.yaml, with
# its wake path from cloud/wake-us-east-1.yaml) and a game stack per server, which is the main
# template with BaseName.

NETWORK = ["Vpc", "VpcIpv6Block", "InternetGateway", "GatewayAttachment", "PublicSubnetA", "PublicSubnetB",
           "PublicSubnetAIpv6Block", "PublicSubnetBIpv6Block", "PublicRouteTable", "DefaultRoute", "DefaultIpv6Route",
           "PublicSubnetARoutes", "PublicSubnetBRoutes", "S3Endpoint"]
WAKE_CHAIN = ["QueryLogGroup", "QueryLogResourcePolicy", "QueryLogging", "WakeLogGroup", "WakeRole", "WakeFunction",
              "WakeInvokePermission", "WakeSubscriptionFilter"]


def without_names(value):
    """A resource with its Name tags and its condition left out (they name the stack)."""
    value = json.loads(json.dumps(value))
    value.pop("Condition", None)
    value.get("Properties", {}).pop("Tags", None)
    return value


def test_the_base_has_the_same_network_as_one_servers_stack_and_nothing_else(main_template):
    base = load_template(CLOUD_DIR / "base.yaml")
    assert list(base["Resources"]) == NETWORK
    for logical_id in NETWORK:
        assert without_names(base["Resources"][logical_id]) == without_names(main_template["Resources"][logical_id]), \
            logical_id
        ipv6 = logical_id in ("VpcIpv6Block", "PublicSubnetAIpv6Block", "PublicSubnetBIpv6Block", "DefaultIpv6Route")
        assert base["Resources"][logical_id].get("Condition") == ("HasIPv6" if ipv6 else None)
        assert main_template["Resources"][logical_id]["Condition"] == ("OwnNetworkIPv6" if ipv6 else "OwnNetwork")
    assert {k: v["Value"] for k, v in base["Outputs"].items()} == {
        "VpcId": {"Ref": "Vpc"}, "SubnetA": {"Ref": "PublicSubnetA"}, "SubnetB": {"Ref": "PublicSubnetB"},
        "S3EndpointId": {"Ref": "S3Endpoint"}, "IPv6": {"Ref": "IPv6"},
        "WakePath": {"Fn::Sub": "container-manager-base-${BaseName}"}}


def test_a_game_in_a_base_makes_no_network_and_no_wake_chain_of_its_own(main_template):
    conditions = main_template["Conditions"]
    assert conditions["InBase"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "BaseName"}, ""]}]}
    assert conditions["CarriesWakeChain"] == {"Fn::And": [{"Condition": "IsUsEast1"}, {"Condition": "OwnNetwork"}]}
    for logical_id in WAKE_CHAIN:
        assert main_template["Resources"][logical_id]["Condition"] == "CarriesWakeChain", logical_id
    # Nor may its helper make the zone's query logging (the base's wake path has it).
    helper = main_template["Resources"]["HelperRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    (logging,) = [s["Fn::If"] for s in helper if "Fn::If" in s and s["Fn::If"][1]["Sid"] == "QueryLoggingOfOwnZone"]
    assert logging[0] == "CarriesWakeChain"
    # Every use of the network goes through InBase: nothing else names the stack's own network.
    text = json.dumps({k: v for k, v in main_template["Resources"].items() if k not in NETWORK})
    for own, base in (("Vpc", "VpcId"), ("PublicSubnetA", "SubnetA"), ("PublicSubnetB", "SubnetB"),
                      ("S3Endpoint", "S3EndpointId")):
        uses = text.count(json.dumps({"Ref": own}))
        assert uses > 0 and uses == text.count(json.dumps(own_or_base(base, own))), own
    # The four ids come with BaseName, and only with it.
    rules = main_template["Rules"]
    assert rules["BaseGivesItsNetwork"]["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "BaseName"}, ""]}]}
    assert rules["OwnNetworkTakesNoBaseIds"]["RuleCondition"] == {"Fn::Equals": [{"Ref": "BaseName"}, ""]}
    for key in ("BaseName", "BaseVpcId", "BaseSubnetA", "BaseSubnetB", "BaseS3EndpointId"):
        assert main_template["Parameters"][key]["Default"] == ""
    assert main_template["Outputs"]["WakeStackCommand"]["Value"]["Fn::If"][:2] == [
        "InBase", {"Fn::Sub": "none (the wake path of the base ${BaseName} wakes this game)"}]


def test_a_bases_wake_path_may_wake_any_of_its_games_and_read_their_webhooks(wake_template):
    role = wake_template["Resources"]["WakeRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    by_sid = {s["Sid"]: s for s in role if isinstance(s, dict) and "Sid" in s}
    any_game = "arn:${AWS::Partition}:autoscaling:${ServerRegion}:${AWS::AccountId}:autoScalingGroup:*:autoScalingGroupName/container-manager-*"
    for sid in ("WakeOwnGroupOnly", "MarkTheWakeOnly"):
        resource = by_sid[sid]["Resource"]["Fn::If"]
        assert resource[:2] == ["ManyGames", {"Fn::Sub": any_game}]
        # Still only a group with this wake path's tag.
        assert "autoscaling:ResourceTag/container-manager:wake-path" in by_sid[sid]["Condition"]["StringEquals"]
    (webhooks,) = [s for s in role if isinstance(s, dict) and "Fn::If" in s]
    assert webhooks["Fn::If"][0] == "ReadsWebhooks"
    assert webhooks["Fn::If"][1]["Resource"]["Fn::If"][1] == {
        "Fn::Sub": "arn:${AWS::Partition}:ssm:${ServerRegion}:${AWS::AccountId}:parameter/container-manager/*"}
    assert wake_template["Conditions"]["ReadsWebhooks"] == {"Fn::Or": [{"Condition": "HasWebhook"},
                                                                       {"Condition": "ManyGames"}]}
