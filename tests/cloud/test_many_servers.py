"""Many servers in one account and domain (docs/many-servers.md), deployed into moto's
CloudFormation: one base (cloud/base.yaml in the servers' region, its wake path from
cloud/wake-us-east-1.yaml with Games "many" in us-east-1) and three game stacks of
cloud/container-manager.yaml with BaseName. The base's deployed wake function, with its deployed
environment, is woken by real-shaped query-log events; the whole loop on instances is the twin's."""

import time

import pytest

from conftest import EXAMPLES, MAIN_TEMPLATE, WAKE_TEMPLATE, load_template
from test_deploy import create, given, with_overrides
from test_wake import query_line, subscription_event

REGION = "eu-west-1"
ZONE = "Z0123456789ABCDEFGHIJ"
BASE = "community"
GAMES = ("valheim", "minecraft", "palworld")


@pytest.fixture
def base(aws):
    """The base and its wake path; returns its outputs and the deployed wake function."""
    from conftest import CLOUD, load_function

    _, outputs = create(aws, load_template(CLOUD / "base.yaml"), [
        {"ParameterKey": "BaseName", "ParameterValue": BASE}], REGION, name=f"container-manager-base-{BASE}")
    wake_params = {"ServerName": f"base-{BASE}", "Games": "many", "ServerRegion": REGION, "HostedZoneId": ZONE,
                   "IPv6": "true"}
    wake_template = load_template(WAKE_TEMPLATE)
    physical, _ = create(aws, wake_template, [{"ParameterKey": k, "ParameterValue": v} for k, v in wake_params.items()],
                         "us-east-1", name=f"container-manager-base-{BASE}-wake")
    function = aws("lambda").get_function(FunctionName=physical["WakeFunction"])["Configuration"]
    code = wake_template["Resources"]["WakeFunction"]["Properties"]["Code"]["ZipFile"]
    wake = load_function(code, "base_wake", function["Environment"]["Variables"])
    return outputs, wake, physical


TEMPLATE = load_template(MAIN_TEMPLATE)


def in_base(name, outputs):
    """The example `name`'s parameters as a game of the base, with the base's outputs as the
    deploy command passes them."""
    (path,) = [p for p in EXAMPLES if p.stem == name]
    return with_overrides(path, BaseName=BASE, BaseVpcId=outputs["VpcId"], BaseSubnetA=outputs["SubnetA"],
                          BaseSubnetB=outputs["SubnetB"], BaseS3EndpointId=outputs["S3EndpointId"])


def game_in(aws, outputs, name):
    params = in_base(name, outputs)
    physical, game_outputs = create(aws, TEMPLATE, params, REGION, name=name)
    return given(params), physical, game_outputs


def desired(aws, name):
    (group,) = aws("autoscaling", REGION).describe_auto_scaling_groups(
        AutoScalingGroupNames=[f"container-manager-{name}"])["AutoScalingGroups"]
    return group["DesiredCapacity"]


def look_up(wake, *names):
    return wake.handler(subscription_event(*(query_line(n) for n in names)), None).split()


def test_three_games_share_the_bases_network_and_its_one_wake_path(aws, base):
    outputs, wake, wake_physical = base
    games = {name: game_in(aws, outputs, name) for name in GAMES}
    ec2 = aws("ec2", REGION)
    # One network, the base's: no game made a VPC, a subnet or an endpoint.
    ours = [v for v in ec2.describe_vpcs()["Vpcs"] if not v.get("IsDefault")]
    assert [v["VpcId"] for v in ours] == [outputs["VpcId"]]
    assert len(ec2.describe_vpc_endpoints()["VpcEndpoints"]) == 1
    for name, (values, physical, game_outputs) in games.items():
        assert not {"Vpc", "PublicSubnetA", "S3Endpoint", "InternetGateway"} & set(physical), name
        # No wake chain of its own either (these stacks are not in us-east-1 anyway; the last
        # test checks a game in a base in us-east-1).
        assert "none (the wake path of the base community wakes this game)" == game_outputs["WakeStackCommand"]
        (group,) = aws("autoscaling", REGION).describe_auto_scaling_groups(
            AutoScalingGroupNames=[f"container-manager-{name}"])["AutoScalingGroups"]
        assert set(group["VPCZoneIdentifier"].split(",")) <= {outputs["SubnetA"], outputs["SubnetB"]}
        tags = {t["Key"]: t["Value"] for t in group["Tags"]}
        assert (tags["container-manager:wake-path"], tags["container-manager:record"]) == (
            f"container-manager-base-{BASE}", values["RecordName"])
        (sg,) = ec2.describe_security_groups(GroupIds=[physical["InstanceSecurityGroup"]])["SecurityGroups"]
        assert sg["VpcId"] == outputs["VpcId"]
    # The base's wake function names no game: a wake path and a region.
    assert wake.PATH == f"container-manager-base-{BASE}" and wake.REGION == REGION

    records = {name: games[name][0]["RecordName"] for name in GAMES}
    # A lookup of each name wakes only its game.
    for name in GAMES:
        assert look_up(wake, records[name]) == ["woken"]
        assert [g for g in GAMES if desired(aws, g)] == [name]
        aws("autoscaling", REGION).set_desired_capacity(AutoScalingGroupName=f"container-manager-{name}",
                                                       DesiredCapacity=0)
    # Two at once, in one batch, one of them in random letter case (DNS 0x20).
    assert look_up(wake, records["minecraft"].upper(), records["palworld"]) == ["woken", "woken"]
    assert {g for g in GAMES if desired(aws, g)} == {"minecraft", "palworld"}
    # A name no game has wakes nothing.
    assert look_up(wake, f"nobody.{records['valheim'].split('.', 1)[1]}") == ["ignored"]
    assert desired(aws, "valheim") == 0


def test_deleting_one_game_stack_leaves_the_other_two_waking(aws, base):
    outputs, wake, _ = base
    records = {name: game_in(aws, outputs, name)[0]["RecordName"] for name in GAMES}
    cf = aws("cloudformation", REGION)
    cf.delete_stack(StackName="minecraft")
    for _ in range(120):
        if not [s for s in cf.list_stacks()["StackSummaries"]
                if s["StackName"] == "minecraft" and s["StackStatus"] != "DELETE_COMPLETE"]:
            break
        time.sleep(0.5)
    groups = {g["AutoScalingGroupName"] for g in aws("autoscaling", REGION).describe_auto_scaling_groups()[
        "AutoScalingGroups"]}
    assert groups == {"container-manager-valheim", "container-manager-palworld"}
    # Its entry went with its group: its name wakes nothing now; the others still wake.
    assert look_up(wake, records["minecraft"]) == ["ignored"]
    assert look_up(wake, records["valheim"], records["palworld"]) == ["woken", "woken"]
    assert desired(aws, "valheim") == desired(aws, "palworld") == 1


def test_the_bases_wake_role_may_wake_only_games_of_its_wake_path(aws, base):
    from test_deploy import policy_document

    _, _, physical = base
    role = policy_document(aws("iam").get_role_policy(RoleName=physical["WakeRole"], PolicyName="wake"))
    by_sid = {s["Sid"]: s for s in role["Statement"] if s is not None}
    any_game = f"arn:aws:autoscaling:{REGION}:123456789012:autoScalingGroup:*:autoScalingGroupName/container-manager-*"
    on_path = {"autoscaling:ResourceTag/container-manager:wake-path": f"container-manager-base-{BASE}"}
    assert (by_sid["WakeOwnGroupOnly"]["Resource"], by_sid["WakeOwnGroupOnly"]["Condition"]) == (
        any_game, {"StringEquals": on_path})
    assert by_sid["MarkTheWakeOnly"]["Condition"]["StringEquals"] == on_path
    assert by_sid["ReadOwnWebhookUrlOnly"]["Resource"] == (
        f"arn:aws:ssm:{REGION}:123456789012:parameter/container-manager/*")


def test_in_us_east_1_a_game_in_a_base_still_makes_no_wake_chain_of_its_own(aws):
    from conftest import CLOUD

    _, outputs = create(aws, load_template(CLOUD / "base.yaml"), [
        {"ParameterKey": "BaseName", "ParameterValue": BASE}], "us-east-1", name=f"container-manager-base-{BASE}")
    physical, _ = create(aws, TEMPLATE, in_base("valheim", outputs), "us-east-1", name="valheim")
    assert not {"QueryLogGroup", "QueryLogging", "WakeFunction", "WakeRole", "WakeSubscriptionFilter", "Vpc"} & set(
        physical)
    assert {"AutoScalingGroup", "HelperFunction", "DataFileSystem", "InstanceSecurityGroup"} <= set(physical)
    # One server in us-east-1, by contrast, carries its own.
    (path,) = [p for p in EXAMPLES if p.stem == "valheim"]
    alone, _ = create(aws, TEMPLATE, with_overrides(path, ServerName="alone"), "us-east-1", name="alone")
    assert {"QueryLogGroup", "WakeFunction", "Vpc"} <= set(alone)
