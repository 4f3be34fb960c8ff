"""The world survives every redeploy (cloud/deploy.sh with cloud/worlds.py), against moto behind
the test shim: a destroy then a deploy finds the retained world and adopts it, a change that would
replace the world's file system is refused before anything changes, and ExistingFileSystemId is
checked. The shim reports what a change set replaces (moto does not: tests/shim/awsshim.py)."""

import base64
import json
import re
import time

import pytest

from conftest import agent_rpm
from test_deploy_command import client, run, shim, stacks, write_params  # noqa: F401 - shim is a fixture

REGION = "us-east-1"  # the wake-up chain lives in the stack itself: one stack per deploy


@pytest.fixture
def setup(tmp_path, shim):  # noqa: F811
    zone = client(shim, "route53", REGION).create_hosted_zone(
        Name="example.com", CallerReference=str(time.time()))["HostedZone"]["Id"].split("/")[-1]
    client(shim, "ssm", REGION).put_parameter(Name="/container-manager/valheim/server-pass", Type="SecureString",
                                              Value="secret")
    package = agent_rpm(tmp_path)
    return shim, zone, package


def deploy(shim, path, package, *flags):
    return run(["deploy", str(path), "--region", REGION, "--package", str(package), *flags],
               {"AWS_ENDPOINT_URL": shim.aws})


def stack_params(shim):
    desc = client(shim, "cloudformation", REGION).describe_stacks(StackName="valheim")["Stacks"][0]
    return {p["ParameterKey"]: p["ParameterValue"] for p in desc["Parameters"]}


def world_of(shim):
    desc = client(shim, "cloudformation", REGION).describe_stacks(StackName="valheim")["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}["DataFileSystemId"]


def data_file_systems(shim):
    return sorted(f["FileSystemId"] for f in client(shim, "efs", REGION).describe_file_systems()["FileSystems"]
                  if f.get("Name") == "container-manager-valheim-data")


def task_definition(shim):
    cf = client(shim, "cloudformation", REGION)
    arn = {r["LogicalResourceId"]: r["PhysicalResourceId"]
           for r in cf.list_stack_resources(StackName="valheim")["StackResourceSummaries"]}["TaskDefinition"]
    return client(shim, "ecs", REGION).describe_task_definition(taskDefinition=arn)["taskDefinition"]


def user_data(shim):
    """The user-data of the launch template version the group launches."""
    group = client(shim, "autoscaling", REGION).describe_auto_scaling_groups(
        AutoScalingGroupNames=["container-manager-valheim"])["AutoScalingGroups"][0]["LaunchTemplate"]
    (version,) = client(shim, "ec2", REGION).describe_launch_template_versions(
        LaunchTemplateId=group["LaunchTemplateId"], Versions=[group["Version"]])["LaunchTemplateVersions"]
    return base64.b64decode(version["LaunchTemplateData"]["UserData"]).decode()


def test_redeploy_after_destroy_names_the_retained_world_and_adopts_it(tmp_path, setup):
    shim, zone, package = setup
    path = write_params(tmp_path, {"HostedZoneId": zone})
    r = deploy(shim, path, package)
    assert r.returncode == 0, r.stderr
    old = world_of(shim)
    assert data_file_systems(shim) == [old]
    # AWS Backup's daily copy, in the stack's vault (moto's CloudFormation makes no vault).
    client(shim, "backup", REGION).create_backup_vault(BackupVaultName="container-manager-valheim-1a2b3c4d")
    shim.post("/_shim/backup", {"vault": "container-manager-valheim-1a2b3c4d",
                                "resource_arn": f"arn:aws:elasticfilesystem:{REGION}:123456789012:file-system/{old}",
                                "created": "2026-12-05T05:00:00+00:00", "snapshot": "/nowhere", "efs_root": "/nowhere"})
    r = run(["destroy", str(path), "--region", REGION], {"AWS_ENDPOINT_URL": shim.aws})
    assert r.returncode == 0, r.stderr
    assert f"--adopt-world" in r.stdout

    # A plain deploy refuses, names the world and its backups, and creates nothing.
    r = deploy(shim, path, package)
    assert r.returncode == 2, r.stderr
    assert f"a world of valheim is left in {REGION} from an earlier stack" in r.stderr
    assert f"{old} (one-zone {REGION}a" in r.stderr
    assert "1 recovery points, the latest of 2026-12-05" in r.stderr
    assert f'{{"ParameterKey": "ExistingFileSystemId", "ParameterValue": "{old}"}}' in r.stderr
    assert "Nothing was changed." in r.stderr
    assert stacks(shim, REGION) == []

    # --adopt-world plays it: the stack makes no file system and names the old one everywhere.
    r = deploy(shim, path, package, "--adopt-world")
    assert r.returncode == 0, r.stderr
    assert f"adopting the world {old}" in r.stderr
    assert stack_params(shim)["ExistingFileSystemId"] == old
    assert world_of(shim) == old
    assert data_file_systems(shim) == [old], "no second world"
    cf = client(shim, "cloudformation", REGION)
    logical = {r["LogicalResourceId"] for r in cf.list_stack_resources(StackName="valheim")["StackResourceSummaries"]}
    assert "DataFileSystem" not in logical
    efs = client(shim, "efs", REGION)
    assert len(efs.describe_mount_targets(FileSystemId=old)["MountTargets"]) == 1  # one-zone: one mount target
    assert len(efs.describe_access_points(FileSystemId=old)["AccessPoints"]) == 2  # the game's and the host's

    # Deploying again with the same file keeps it (the stack's ExistingFileSystemId carries over).
    r = deploy(shim, path, package)
    assert r.returncode == 0, r.stderr
    assert world_of(shim) == old and stack_params(shim)["ExistingFileSystemId"] == old


def test_a_new_world_beside_a_retained_one_needs_replace_world_and_names_both(tmp_path, setup):
    shim, zone, package = setup
    path = write_params(tmp_path, {"HostedZoneId": zone})
    assert deploy(shim, path, package).returncode == 0
    old = world_of(shim)
    assert run(["destroy", str(path), "--region", REGION], {"AWS_ENDPOINT_URL": shim.aws}).returncode == 0
    r = deploy(shim, path, package, "--replace-world")
    assert r.returncode == 0, r.stderr
    assert f"starting a new, empty world (--replace-world); kept beside it: {old}" in r.stderr
    new = world_of(shim)
    assert new != old and data_file_systems(shim) == sorted([old, new])


def test_a_change_that_would_replace_the_world_is_refused_before_anything_changes(tmp_path, setup):
    shim, zone, package = setup
    path = write_params(tmp_path, {"HostedZoneId": zone})
    assert deploy(shim, path, package).returncode == 0
    world = world_of(shim)
    path = write_params(tmp_path, {"HostedZoneId": zone, "FileSystemType": "regional"})
    r = deploy(shim, path, package)
    assert r.returncode == 2, r.stderr
    assert (f"this deploy replaces the world's file system {world} (DataFileSystem, Modify, Replacement True)"
            in r.stderr)
    # moto's describe-stacks lists only the parameters given; CloudFormation lists them all.
    assert re.search(r"Changed: FileSystemType '(one-zone|at its default)' -> 'regional'", r.stderr), r.stderr
    assert "pass --replace-world" in r.stderr
    assert stack_params(shim)["FileSystemType"] == "one-zone" and world_of(shim) == world
    cf = client(shim, "cloudformation", REGION)
    waiting = [c for c in cf.list_change_sets(StackName="valheim")["Summaries"] if c["ExecutionStatus"] == "AVAILABLE"]
    assert waiting == [], "the reviewed change set is deleted, not left to execute"

    # --replace-world moves the world across in maintenance boots, which need the server asleep:
    # while it is up, refused before anything changes, with what to run.
    group = "container-manager-valheim"
    asg = client(shim, "autoscaling", REGION)
    asg.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=1)
    (instance,) = [i["InstanceId"] for i in asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=[group])["AutoScalingGroups"][0]["Instances"]]
    r = deploy(shim, path, package, "--replace-world")
    assert r.returncode == 2, r.stderr
    assert (f"this deploy replaces the world's file system {world} (--replace-world), and the world is moved to "
            f"the new one by maintenance boots, which run only while the server sleeps; it is up ({instance}, "
            f"players unknown). Nothing was changed. Run: cloud/cm sleep {path} (it saves the world first)") in r.stderr
    assert stack_params(shim)["FileSystemType"] == "one-zone" and world_of(shim) == world
    asg.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=0)

    # --empty-world: the change goes through as CloudFormation makes it (docs/aws-sources.md §18).
    efs = client(shim, "efs", REGION)
    old_task = task_definition(shim)
    r = deploy(shim, path, package, "--replace-world", "--empty-world")
    assert r.returncode == 0, r.stderr
    assert f"this deploy replaces the world's file system {world} (--replace-world, --empty-world)" in r.stderr
    assert stack_params(shim)["FileSystemType"] == "regional"
    new = world_of(shim)
    assert new != world, "a create-only property changed: a new file system, with a new id"
    assert data_file_systems(shim) == sorted([world, new]), "the old one is retained (UpdateReplacePolicy: Retain)"
    assert f"Its previous world {world} is kept, unused" in r.stdout
    (fs,) = efs.describe_file_systems(FileSystemId=new)["FileSystems"]
    assert "AvailabilityZoneName" not in fs, "regional"
    # The replacement's dependents: its own mount targets (one per zone) and access points; the
    # old file system's are gone with the stack's references to it.
    assert len(efs.describe_mount_targets(FileSystemId=new)["MountTargets"]) == 2
    assert len(efs.describe_access_points(FileSystemId=new)["AccessPoints"]) == 2
    assert efs.describe_mount_targets(FileSystemId=world)["MountTargets"] == []
    assert efs.describe_access_points(FileSystemId=world)["AccessPoints"] == []
    # Everything that named the world names the new one: the task definition (a new revision; moto
    # keeps no volume's EFS configuration to read back), the instances' user-data (the group
    # follows the launch template's new version), the roles' policies.
    assert task_definition(shim)["taskDefinitionArn"] != old_task["taskDefinitionArn"]
    assert new in user_data(shim) and world not in user_data(shim)
    cf = client(shim, "cloudformation", REGION)
    role = {r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cf.list_stack_resources(StackName="valheim")["StackResourceSummaries"]}["InstanceRole"]
    iam = client(shim, "iam", REGION)
    policies = [json.dumps(iam.get_role_policy(RoleName=role, PolicyName=n)["PolicyDocument"])
                for n in iam.list_role_policies(RoleName=role)["PolicyNames"]]
    assert any(f"file-system/{new}" in p for p in policies) and not any(f"file-system/{world}" in p for p in policies)

    # A change the world does not feel goes through without the flag.
    r = deploy(shim, write_params(tmp_path, {"HostedZoneId": zone, "FileSystemType": "regional", "IdleMinutes": "12"}),
               package)
    assert r.returncode == 0, r.stderr
    assert stack_params(shim)["IdleMinutes"] == "12"


def test_existing_file_system_id_must_name_a_file_system_of_the_right_type(tmp_path, setup):
    shim, zone, package = setup
    path = write_params(tmp_path, {"HostedZoneId": zone, "ExistingFileSystemId": "fs-0123456789abcdef0"})
    r = deploy(shim, path, package)
    assert r.returncode == 2, r.stderr
    assert (f"my-valheim.json: ExistingFileSystemId: no file system fs-0123456789abcdef0 in {REGION} "
            "(and no world of valheim is left here)") in r.stderr
    regional = client(shim, "efs", REGION).create_file_system(CreationToken="elsewhere", Encrypted=True)["FileSystemId"]
    path = write_params(tmp_path, {"HostedZoneId": zone, "ExistingFileSystemId": regional})
    r = deploy(shim, path, package)
    assert r.returncode == 2, r.stderr
    assert (f"my-valheim.json: ExistingFileSystemId: {regional} is a regional file system, but FileSystemType is "
            "one-zone: set FileSystemType to regional") in r.stderr
    assert stacks(shim, REGION) == []


def test_a_new_task_definition_waits_for_the_server_to_sleep_unless_the_game_may_restart(tmp_path, setup):
    """A change to the game's configuration (here an environment variable) registers a new task
    definition, which ECS rolls out at once, stopping the running game without its pre-stop
    command (docs/aws-sources.md §16). While the server is up the deploy command refuses, with the
    players the agent last counted, and changes nothing; asleep, it goes through; with
    --restart-game, it goes through while up and says so."""
    shim, zone, package = setup
    path = write_params(tmp_path, {"HostedZoneId": zone})
    assert deploy(shim, path, package).returncode == 0
    group = "container-manager-valheim"
    asg = client(shim, "autoscaling", REGION)
    asg.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=1)
    (instance,) = [i["InstanceId"] for i in asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=[group])["AutoScalingGroups"][0]["Instances"]]
    client(shim, "cloudwatch", REGION).put_metric_data(Namespace="ContainerManager", MetricData=[{
        "MetricName": "PlayersOnline", "Value": 2, "Unit": "Count",
        "Dimensions": [{"Name": "AutoScalingGroupName", "Value": group}]}])
    changed = write_params(tmp_path, {"HostedZoneId": zone, "Env3": "MODIFIERS=raids=none"})
    r = deploy(shim, changed, package)
    assert r.returncode == 2, r.stderr
    assert (f"the server is up ({instance}, 2 player(s) online), and this deploy changes the game's task "
            "definition: ECS would restart the game at once") in r.stderr, r.stderr
    assert "Nothing was changed." in r.stderr and "--restart-game" in r.stderr
    assert stack_params(shim).get("Env3", "") != "MODIFIERS=raids=none"
    # A change the game does not feel (the idle policy is the agent's) goes through while up.
    quiet = write_params(tmp_path, {"HostedZoneId": zone, "IdleMinutes": "12"})
    r = deploy(shim, quiet, package)
    assert r.returncode == 0, r.stderr
    # (moto's stack update remakes the group's instances; CloudFormation would leave them.)
    asg.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=1)
    (instance,) = [i["InstanceId"] for i in asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=[group])["AutoScalingGroups"][0]["Instances"]]
    # With the flag it goes through, and says so.
    changed = write_params(tmp_path, {"HostedZoneId": zone, "IdleMinutes": "12", "Env3": "MODIFIERS=raids=none"})
    r = deploy(shim, changed, package, "--restart-game")
    assert r.returncode == 0, r.stderr
    assert f"this deploy restarts the running game on {instance} (--restart-game)" in r.stderr
    assert stack_params(shim)["Env3"] == "MODIFIERS=raids=none"
    # Asleep: no flag needed.
    asg.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=0)
    asleep = write_params(tmp_path, {"HostedZoneId": zone, "IdleMinutes": "12", "Env3": "MODIFIERS=raids=muchless"})
    r = deploy(shim, asleep, package)
    assert r.returncode == 0, r.stderr
    assert stack_params(shim)["Env3"] == "MODIFIERS=raids=muchless"
