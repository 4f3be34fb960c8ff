"""cloud/deploy.sh (make deploy / make destroy) against the emulator, behind the test shim (which
reads a TemplateURL from moto's S3 and leaves the custom resources out, tests/shim/awsshim.py):
what it refuses before any AWS call, and the two-region deploy and destroy. The whole loop on an
instance is in tests/twin/test_twin_deploy.py."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from conftest import EXAMPLES, ROOT, VENV_BIN, agent_rpm, rpm_holding, small_linux_binary

sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import world  # noqa: E402

DEPLOY = ROOT / "cloud" / "deploy.sh"


def run(args, env_extra=None, cwd=ROOT):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"PATH": f"{VENV_BIN}:{env['PATH']}", "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing"})
    env.update(env_extra or {})
    return subprocess.run(["bash", str(DEPLOY), *args], env=env, capture_output=True, text=True, timeout=600, cwd=cwd)


def write_params(tmp_path, overrides=None, drop=()):
    (path,) = [p for p in EXAMPLES if p.stem == "valheim"]
    items = [i for i in json.loads(path.read_text()) if i["ParameterKey"] not in drop]
    for k, v in (overrides or {}).items():
        items = [i for i in items if i["ParameterKey"] != k] + [{"ParameterKey": k, "ParameterValue": v}]
    out = tmp_path / "my-valheim.json"
    out.write_text(json.dumps(items))
    return out


@pytest.mark.parametrize("content, expected", [
    ("not json", "my-valheim.json: not valid JSON"),
    ('{"ServerName": "valheim"}', "my-valheim.json: expected a JSON list"),
    ('[{"ParameterKey": "ServerName"}]', 'my-valheim.json: [0]: expected {"ParameterKey": "Name", "ParameterValue": "text"}'),
    (None, "my-valheim.json: HostedZoneId: missing"),
])
def test_deploy_refuses_a_bad_parameter_file_naming_the_file_and_the_key(tmp_path, content, expected):
    if content is None:
        path = write_params(tmp_path, drop=("HostedZoneId",))
    else:
        path = tmp_path / "my-valheim.json"
        path.write_text(content)
    r = run(["deploy", str(path), "--region", "eu-west-1"], {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert r.returncode == 2 and expected in r.stderr, r.stderr


def test_deploy_refuses_a_url_without_its_sha256_and_an_unknown_option(tmp_path):
    path = write_params(tmp_path, {"AgentPackageUrl": "https://example.com/agent.rpm"})
    r = run(["deploy", str(path), "--region", "eu-west-1"], {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert r.returncode == 2 and "AgentPackageSha256: expected the 64 hex digits" in r.stderr, r.stderr
    r = run(["deploy", str(path), "--kind", "deb"])
    assert r.returncode == 2 and "--kind must be rpm or bin (got 'deb')" in r.stderr
    r = run(["deploy", str(tmp_path / "nowhere.json")])
    assert r.returncode == 2 and "nowhere.json: no such parameter file" in r.stderr


NOWHERE = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}  # any AWS call would fail: these refuse before one
# The agent `make build` made (the twin boots the same one).
DEBUG_AGENT = Path(os.environ.get("AGENT_BIN", Path(os.environ.get("CARGO_TARGET_DIR", "/var/cache/container-manager/target"))
                                  / "debug" / "container-manager-agent"))


def elf_header(machine):
    """The first 64 bytes of a 64-bit little-endian ELF executable for `machine` (e_machine)."""
    return (b"\x7fELF\x02\x01\x01" + bytes(9) + (2).to_bytes(2, "little") + machine.to_bytes(2, "little")
            + bytes(44))


@pytest.mark.parametrize("content, name, reason", [
    (elf_header(0xB7), "container-manager-agent", "is built for aarch64 (arm64), but the instance is x86_64"),
    (elf_header(0x28), "container-manager-agent", "is built for another architecture (ELF machine 0x2800)"),
    (b"\xcf\xfa\xed\xfe" + bytes(60), "container-manager-agent",
     "is a macOS (Mach-O) binary, but the instance runs Linux x86_64"),
    (b"#!/bin/sh\n", "container-manager-agent", "is not a Linux (ELF) binary"),
    (b"rpm", "container-manager-agent-0.1.0-1.aarch64.rpm", "is an .rpm for aarch64, but the instance is x86_64"),
])
def test_a_package_that_cannot_run_on_the_instance_is_refused_with_the_reason(tmp_path, content, name, reason):
    package = tmp_path / name
    package.write_bytes(content)
    r = run(["deploy", str(write_params(tmp_path)), "--region", "eu-west-1", "--package", str(package)], NOWHERE)
    assert r.returncode == 2, r.stderr
    assert f"deploy: error: {package} {reason}" in r.stderr
    assert "release's .rpm with --package" in r.stderr or name.endswith(".rpm")


def test_a_binary_that_needs_a_newer_glibc_than_amazon_linux_2023_is_refused(tmp_path):
    """arc4random is in glibc from 2.36 on (this machine's); Amazon Linux 2023 has 2.34."""
    source = tmp_path / "new.c"
    source.write_text("#include <stdlib.h>\nint main(void) { return (int)(arc4random() & 1); }\n")
    binary = tmp_path / "container-manager-agent"
    subprocess.run(["gcc", "-o", str(binary), str(source)], check=True, capture_output=True)
    r = run(["deploy", str(write_params(tmp_path)), "--region", "eu-west-1", "--package", str(binary)], NOWHERE)
    assert r.returncode == 2, r.stderr
    assert (f"{binary} needs a newer glibc than Amazon Linux 2023's 2.34, so it would not start on the instance "
            "(glibc: newest symbol version GLIBC_2.36 (limit GLIBC_2.34))") in r.stderr
    # The agent as built here passes (the debug build: Linux x86_64, GLIBC_2.34 at most).
    agent = str(DEBUG_AGENT)
    r = run(["deploy", str(write_params(tmp_path)), "--region", "eu-west-1", "--package", agent], NOWHERE)
    assert f"deploy: checked {agent}: Linux x86_64, newest symbol version GLIBC_2.34" in r.stderr, r.stderr
    assert r.returncode == 1, "it went on, to the AWS calls (which fail here)"


def test_an_rpm_whose_agent_needs_a_newer_glibc_is_refused_and_a_good_one_passes(tmp_path):
    """The binary inside an .rpm gets the bare binary's checks: an .rpm built on a newer system
    holds an agent the instance cannot start."""
    source = tmp_path / "new.c"
    source.write_text("#include <stdlib.h>\nint main(void) { return (int)(arc4random() & 1); }\n")
    subprocess.run(["gcc", "-o", str(tmp_path / "new"), str(source)], check=True, capture_output=True)
    bad = rpm_holding(tmp_path / "bad", tmp_path / "new")
    r = run(["deploy", str(write_params(tmp_path)), "--region", "eu-west-1", "--package", str(bad)], NOWHERE)
    assert r.returncode == 2, r.stderr
    assert (f"deploy: error: {bad}: the agent inside it: needs a newer glibc than Amazon Linux 2023's 2.34, so it "
            "would not start on the instance (glibc: newest symbol version GLIBC_2.36 (limit GLIBC_2.34))") in r.stderr
    # An .rpm that is not the agent's.
    other = rpm_holding(tmp_path / "other", small_linux_binary(tmp_path / "hello", "hello"), dest="/usr/bin/hello")
    r = run(["deploy", str(write_params(tmp_path)), "--region", "eu-west-1", "--package", str(other)], NOWHERE)
    assert r.returncode == 2 and f"{other} holds no /usr/bin/container-manager-agent" in r.stderr, r.stderr
    # The agent as built here, packaged: checked inside, then on to the AWS calls (which fail here).
    good = rpm_holding(tmp_path / "good", DEBUG_AGENT)
    r = run(["deploy", str(write_params(tmp_path)), "--region", "eu-west-1", "--package", str(good)], NOWHERE)
    assert f"deploy: checked the agent inside {good}: newest symbol version GLIBC_2.34" in r.stderr, r.stderr
    assert r.returncode == 1, r.stderr


def test_each_missing_tool_is_named_with_its_install_line_before_anything_runs(tmp_path):
    """A PATH with only bash, python3 and the AWS CLI: a deploy that builds needs the rest."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "python3", "aws", "dirname", "sed", "cat"):
        found = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True, text=True,
                               env={"PATH": f"{VENV_BIN}:{os.environ['PATH']}"}).stdout.strip()
        (bin_dir / tool).symlink_to(found)
    r = run(["deploy", str(write_params(tmp_path)), "--region", "eu-west-1"], {**NOWHERE, "PATH": str(bin_dir)})
    assert r.returncode == 2, r.stderr
    for tool, line in (("sha256sum", "apt-get install coreutils"), ("od", "apt-get install coreutils"),
                       ("make", "apt-get install make"), ("objdump", "apt-get install binutils"),
                       ("cargo", "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh"), ("cargo-generate-rpm", "cargo install cargo-generate-rpm")):
        assert f"deploy: error: {tool} is required and not found; install it: {line}" in r.stderr, r.stderr
    assert "6 tool(s) missing (README, \"Prerequisites\"): nothing was built or changed" in r.stderr


@pytest.fixture
def shim():
    s = world.Shim()
    yield s
    s.close()


def client(shim, service, region):
    return boto3.client(service, region_name=region, endpoint_url=shim.moto,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def stacks(shim, region):
    summaries = client(shim, "cloudformation", region).list_stacks()["StackSummaries"]
    return sorted(s["StackName"] for s in summaries if s["StackStatus"] != "DELETE_COMPLETE")


def put_secret(shim, region, name="/container-manager/valheim/server-pass"):
    """The Valheim example's Secret1, as the user puts it into SSM (docs/cloud.md, "Deploy")."""
    client(shim, "ssm", region).put_parameter(Name=name, Type="SecureString", Value="a password")


def test_a_missing_registry_secret_is_named_with_its_region_and_nothing_is_created(tmp_path, shim):
    """RegistryCredentialsSecretArn (issue 39): the private registry's login must exist in the
    region its ARN names (the deploy's or another), or ECS could not pull the image; then the
    stack's task definition names it."""
    zone = client(shim, "route53", "us-east-1").create_hosted_zone(
        Name="example.com", CallerReference=str(time.time()))["HostedZone"]["Id"].split("/")[-1]
    put_secret(shim, "us-east-1")
    missing = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:registry-AbCdEf"
    path = write_params(tmp_path, {"HostedZoneId": zone, "RegistryCredentialsSecretArn": missing})
    package = agent_rpm(tmp_path)
    r = run(["deploy", str(path), "--region", "us-east-1", "--package", str(package)], {"AWS_ENDPOINT_URL": shim.aws})
    assert r.returncode == 2, r.stderr
    assert (f"my-valheim.json: RegistryCredentialsSecretArn: no secret {missing} in eu-west-1; create it with: "
            "aws secretsmanager create-secret --region eu-west-1") in r.stderr, r.stderr
    assert "nothing was changed" in r.stderr and stacks(shim, "us-east-1") == []
    arn = client(shim, "secretsmanager", "eu-west-1").create_secret(
        Name="registry", SecretString=json.dumps({"username": "me", "password": "pw"}))["ARN"]
    path = write_params(tmp_path, {"HostedZoneId": zone, "RegistryCredentialsSecretArn": arn})
    r = run(["deploy", str(path), "--region", "us-east-1", "--package", str(package)], {"AWS_ENDPOINT_URL": shim.aws})
    assert r.returncode == 0, r.stderr
    cf, ecs = client(shim, "cloudformation", "us-east-1"), client(shim, "ecs", "us-east-1")
    td = [r for r in cf.list_stack_resources(StackName="valheim")["StackResourceSummaries"]
          if r["LogicalResourceId"] == "TaskDefinition"][0]["PhysicalResourceId"]
    (c,) = ecs.describe_task_definition(taskDefinition=td)["taskDefinition"]["containerDefinitions"]
    assert c["repositoryCredentials"] == {"credentialsParameter": arn}


def test_deploy_names_each_missing_secret_with_its_region_and_creates_nothing(tmp_path, shim):
    zone = client(shim, "route53", "us-east-1").create_hosted_zone(
        Name="example.com", CallerReference=str(time.time()))["HostedZone"]["Id"].split("/")[-1]
    put_secret(shim, "us-east-1")  # the right name, the wrong region
    path = write_params(tmp_path, {"HostedZoneId": zone, "Secret2": "ADMIN_PASS=/container-manager/valheim/admin",
                                   "WebhookKind": "discord", "WebhookUrlParameter": "/container-manager/valheim/discord"})
    package = agent_rpm(tmp_path)
    r = run(["deploy", str(path), "--region", "eu-west-1", "--package", str(package)], {"AWS_ENDPOINT_URL": shim.aws})
    assert r.returncode == 2, r.stderr
    for key, name in (("Secret1", "/container-manager/valheim/server-pass"), ("Secret2", "/container-manager/valheim/admin"),
                      ("WebhookUrlParameter", "/container-manager/valheim/discord")):
        assert (f"my-valheim.json: {key}: no SSM parameter {name} in eu-west-1; create it with: aws ssm put-parameter "
                f"--region eu-west-1 --type SecureString --name {name} --value") in r.stderr, r.stderr
    assert "3 SSM parameter(s) missing in eu-west-1 (the region this deploy goes to): nothing was changed" in r.stderr
    assert stacks(shim, "eu-west-1") == [] and stacks(shim, "us-east-1") == []

    # A secret of another server: the task's role may not read it.
    path = write_params(tmp_path, {"HostedZoneId": zone, "Secret1": "SERVER_PASS=/container-manager/other/pass"})
    r = run(["deploy", str(path), "--region", "us-east-1", "--package", str(package)], {"AWS_ENDPOINT_URL": shim.aws})
    assert r.returncode == 2, r.stderr
    assert ("my-valheim.json: Secret1: /container-manager/other/pass is not under /container-manager/valheim/"
            in r.stderr)
    assert stacks(shim, "us-east-1") == []


def test_deploy_names_a_hosted_zone_that_does_not_exist_and_creates_nothing(tmp_path, shim):
    path = write_params(tmp_path, {"HostedZoneId": "Z0123456789ABCDEFGHIJ"})
    r = run(["deploy", str(path), "--region", "eu-west-1"], {"AWS_ENDPOINT_URL": shim.aws})
    assert r.returncode == 2, r.stderr
    assert "my-valheim.json: HostedZoneId: no hosted zone Z0123456789ABCDEFGHIJ in this account" in r.stderr
    assert stacks(shim, "eu-west-1") == []


def test_deploy_outside_us_east_1_makes_both_stacks_and_destroy_removes_both_keeping_the_world(tmp_path, shim):
    zone = client(shim, "route53", "us-east-1").create_hosted_zone(
        Name="example.com", CallerReference=str(time.time()))["HostedZone"]["Id"].split("/")[-1]
    path = write_params(tmp_path, {"HostedZoneId": zone, "WebhookKind": "discord", "WebhookEvents": "waking,online",
                                   "WebhookUrlParameter": "/container-manager/valheim/discord"})
    put_secret(shim, "eu-west-1")
    put_secret(shim, "eu-west-1", "/container-manager/valheim/discord")
    package = agent_rpm(tmp_path)
    r = run(["deploy", str(path), "--region", "eu-west-1", "--package", str(package)], {"AWS_ENDPOINT_URL": shim.aws})
    assert r.returncode == 0, r.stderr
    assert stacks(shim, "eu-west-1") == ["valheim"] and stacks(shim, "us-east-1") == ["container-manager-valheim-wake"]
    cf = client(shim, "cloudformation", "eu-west-1")
    given = {p["ParameterKey"]: p["ParameterValue"] for p in cf.describe_stacks(StackName="valheim")["Stacks"][0]["Parameters"]}
    import hashlib
    sha = hashlib.sha256(package.read_bytes()).hexdigest()
    assert given["AgentPackageSha256"] == sha and given["AgentPackageUrl"] == ""
    assert given["AgentPackageKey"] == f"agent/{sha}/{package.name}"
    resources = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in cf.list_stack_resources(StackName="valheim")["StackResourceSummaries"]}
    s3 = client(shim, "s3", "eu-west-1")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=resources["ArtifactBucket"])["Contents"])
    assert keys == [given["AgentPackageKey"], f"agent/{sha}/install-agent.sh"]
    wake = client(shim, "cloudformation", "us-east-1").describe_stacks(StackName="container-manager-valheim-wake")["Stacks"][0]
    wake_params = {p["ParameterKey"]: p["ParameterValue"] for p in wake["Parameters"]}
    assert (wake_params["ServerRegion"], wake_params["HostedZoneId"]) == ("eu-west-1", zone)
    # The wake function in us-east-1 may read the players' webhook, whose URL stays in the server's
    # region; how and when to tell them is the game's group's tag, in the server's region.
    assert (wake_params["WebhookKind"], wake_params["WebhookUrlParameter"]) == (
        "discord", "/container-manager/valheim/discord")
    (group,) = client(shim, "autoscaling", "eu-west-1").describe_auto_scaling_groups(
        AutoScalingGroupNames=["container-manager-valheim"])["AutoScalingGroups"]
    tags = {t["Key"]: t["Value"] for t in group["Tags"]}
    assert (tags["container-manager:wake-path"], tags["container-manager:wake-notice"]) == (
        "container-manager-valheim", "discord 4 /container-manager/valheim/discord")

    r = run(["destroy", str(path), "--region", "eu-west-1"], {"AWS_ENDPOINT_URL": shim.aws})
    assert r.returncode == 0, r.stderr
    assert stacks(shim, "eu-west-1") == [] and stacks(shim, "us-east-1") == []
    fs = resources["DataFileSystem"]
    assert f"the world's file system {fs}" in r.stdout
    (kept,) = client(shim, "efs", "eu-west-1").describe_file_systems(FileSystemId=fs)["FileSystems"]
    assert kept["LifeCycleState"] == "available"


def test_a_parameter_file_with_its_own_url_is_deployed_without_a_build_or_an_upload(tmp_path, shim):
    zone = client(shim, "route53", "us-east-1").create_hosted_zone(
        Name="example.com", CallerReference=str(time.time()))["HostedZone"]["Id"].split("/")[-1]
    url, sha = "https://downloads.example.com/agent.rpm", "cd" * 32
    path = write_params(tmp_path, {"HostedZoneId": zone, "AgentPackageUrl": url, "AgentPackageSha256": sha})
    put_secret(shim, "us-east-1")
    r = run(["deploy", str(path), "--region", "us-east-1"], {"AWS_ENDPOINT_URL": shim.aws})
    assert r.returncode == 0, r.stderr
    assert "deploying that package, nothing is built or uploaded" in r.stderr
    cf = client(shim, "cloudformation", "us-east-1")
    given = {p["ParameterKey"]: p["ParameterValue"] for p in cf.describe_stacks(StackName="valheim")["Stacks"][0]["Parameters"]}
    assert (given["AgentPackageUrl"], given["AgentPackageSha256"], given["AgentPackageKey"]) == (url, sha, "")
    assert stacks(shim, "us-east-1") == ["valheim"]


def test_deploy_refuses_half_of_the_discord_parameters_before_any_aws_call(tmp_path):
    path = write_params(tmp_path, {"DiscordApplicationId": "1234567890123456789"})
    r = run(["deploy", str(path), "--region", "eu-west-1"], {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert r.returncode == 2 and "my-valheim.json: DiscordPublicKey: missing; the Discord /wake endpoint needs both" \
        in r.stderr, r.stderr
    path = write_params(tmp_path, {"DiscordApplicationId": "1234567890123456789", "DiscordPublicKey": "XYZ"})
    r = run(["deploy", str(path), "--region", "eu-west-1"], {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert r.returncode == 2 and "DiscordPublicKey: expected the 64 hex digits" in r.stderr, r.stderr


def test_deploy_with_discord_uploads_the_endpoints_code_and_the_function_runs_it(tmp_path, shim):
    import hashlib
    import io
    import zipfile
    zone = client(shim, "route53", "us-east-1").create_hosted_zone(
        Name="example.com", CallerReference=str(time.time()))["HostedZone"]["Id"].split("/")[-1]
    path = write_params(tmp_path, {"HostedZoneId": zone, "DiscordApplicationId": "1234567890123456789",
                                   "DiscordPublicKey": "ab" * 32})
    package = small_linux_binary(tmp_path / "container-manager-agent", "an agent, as far as the stack is concerned")
    put_secret(shim, "us-east-1")
    r = run(["deploy", str(path), "--region", "us-east-1", "--package", str(package)], {"AWS_ENDPOINT_URL": shim.aws})
    assert r.returncode == 0, r.stderr
    assert "set your application's Interactions Endpoint URL to" in r.stdout, r.stdout
    cf = client(shim, "cloudformation", "us-east-1")
    given = {p["ParameterKey"]: p["ParameterValue"] for p in cf.describe_stacks(StackName="valheim")["Stacks"][0]["Parameters"]}
    resources = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in cf.list_stack_resources(StackName="valheim")["StackResourceSummaries"]}
    s3 = client(shim, "s3", "us-east-1")
    key = f"discord/{given['DiscordCodeSha256']}/discord-interactions.zip"
    code = s3.get_object(Bucket=resources["ArtifactBucket"], Key=key)["Body"].read()
    assert hashlib.sha256(code).hexdigest() == given["DiscordCodeSha256"]
    with zipfile.ZipFile(io.BytesIO(code)) as z:
        assert sorted(z.namelist()) == ["discord_interactions.py", "discord_verify.py"]
        assert z.read("discord_verify.py") == (ROOT / "cloud" / "discord_verify.py").read_bytes()
    conf = client(shim, "lambda", "us-east-1").get_function(FunctionName=resources["DiscordFunction"])["Configuration"]
    assert (conf["Handler"], conf["Runtime"], conf["Timeout"]) == ("discord_interactions.handler", "python3.15", 3)
    env = conf["Environment"]["Variables"]
    assert (env["PUBLIC_KEY"], env["APPLICATION_ID"], env["AUTO_SCALING_GROUP"]) == (
        "ab" * 32, "1234567890123456789", "container-manager-valheim")
    assert conf["CodeSha256"], conf

    # Deployed again with the same files: the same zip, so nothing is uploaded again. (Turning
    # Discord off again is not run here: moto's CloudFormation fails with HTTP 500 on an update
    # that deletes the function URL.)
    r = run(["deploy", str(path), "--region", "us-east-1", "--package", str(package)], {"AWS_ENDPOINT_URL": shim.aws})
    assert r.returncode == 0 and "the Discord endpoint's code is in place" in r.stderr, r.stderr
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=resources["ArtifactBucket"]).get("Contents", [])]
    assert [k for k in keys if k.startswith("discord/")] == [key], keys


def test_a_second_deploy_with_a_new_package_updates_the_stack_without_discord(tmp_path, shim):
    # Without Discord the endpoint's resources are not there; an update must not touch them
    # (moto's would, hence the shim's keep_resources_moto_cannot_update).
    zone = client(shim, "route53", "us-east-1").create_hosted_zone(
        Name="example.com", CallerReference=str(time.time()))["HostedZone"]["Id"].split("/")[-1]
    path = write_params(tmp_path, {"HostedZoneId": zone})
    put_secret(shim, "us-east-1")
    package = tmp_path / "container-manager-agent"
    for version in ("1", "2"):
        small_linux_binary(package, f"agent version {version}")
        r = run(["deploy", str(path), "--region", "us-east-1", "--package", str(package)],
                {"AWS_ENDPOINT_URL": shim.aws})
        assert r.returncode == 0, r.stderr
    cf = client(shim, "cloudformation", "us-east-1")
    given = {p["ParameterKey"]: p["ParameterValue"] for p in cf.describe_stacks(StackName="valheim")["Stacks"][0]["Parameters"]}
    import hashlib
    assert given["AgentPackageSha256"] == hashlib.sha256(package.read_bytes()).hexdigest()
    assert given["DiscordCodeSha256"] == ""
    resources = {r["LogicalResourceId"] for r in cf.list_stack_resources(StackName="valheim")["StackResourceSummaries"]}
    assert not {"DiscordFunction", "DiscordRole", "DiscordUrl"} & resources, resources


ENV_FILE_REFUSALS = [
    (b"MOTD=hello\nJVM_OPTS\n", ["line 2: expected NAME=value; ECS would skip this line"]),
    (b" MOTD=hello\n", ["line 1: ' MOTD' is not a variable name"]),
    (b"1ST=x\n", ["line 1: '1ST' is not a variable name"]),
    (b"EMPTY=\n", ["line 1: EMPTY has an empty value; ECS skips such a line, so EMPTY would not be set"]),
    (b"A=1\n# B=2\nA=3\n", ["line 3: A is already set on line 1"]),
    (b"SLOT=x\n", ["line 1: SLOT is also set by Env1, which ECS gives precedence"]),
    (b"A=\xff\xfe\n", ["line 1: not UTF-8 text"]),
    (b"A=" + b"x" * 70000 + b"\n", ["line 1: 70002 bytes long; ECS's agent reads lines up to 65535 bytes"]),
    (b"# nothing\n\n", ["sets no variable"]),
    (b"OK=1\nBAD\n=x\n", ["line 2: expected NAME=value", "line 3: '' is not a variable name"]),
]


@pytest.mark.parametrize("content, said", ENV_FILE_REFUSALS)
def test_a_wrong_line_of_the_environment_file_is_refused_by_its_number_before_any_aws_call(tmp_path, content, said):
    """Issue 39: the deploy command reads the environment file as the ECS agent would, and names
    the parameter, the file and each line the agent would skip or misread."""
    (tmp_path / "game.env").write_bytes(content)
    path = write_params(tmp_path, {"EnvironmentFile": "game.env", "Env1": "SLOT=from the slot"})
    r = run(["deploy", str(path), "--region", "eu-west-1"], NOWHERE)
    assert r.returncode == 2, r.stderr
    for s in said:
        assert f"{path}: EnvironmentFile: {tmp_path / 'game.env'}, {s}" in r.stderr or (
            f"{path}: EnvironmentFile: {tmp_path / 'game.env'}" in r.stderr and s in r.stderr), r.stderr
    assert "creating the stack" not in r.stderr


def test_quotes_and_comments_kept_in_a_value_are_pointed_out_and_the_file_is_taken(tmp_path):
    """Valid for ECS, and often not what was meant (a compose file's habits): said, not refused."""
    (tmp_path / "game.env").write_text('TITLE="World of Pals"\nPORT=8211 # recommended\nOK=plain\n')
    path = write_params(tmp_path, {"EnvironmentFile": "game.env"})
    r = subprocess.run([sys.executable, str(ROOT / "cloud/params.py"), str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "line 1: TITLE's value keeps its quotes" in r.stderr, r.stderr
    assert "line 2: PORT's value includes ' # recommended'" in r.stderr, r.stderr
    assert "line 3" not in r.stderr


@pytest.mark.parametrize("given, said", [
    ({"EnvironmentFile": "missing.env"}, "EnvironmentFile: "),
    ({"EnvironmentFile": ""}, "EnvironmentFile: empty; expected the path of the game's environment file"),
    ({"EnvironmentFile": "game.env", "EnvironmentFileKey": "env/" + "0" * 64 + "/game.env"},
     "EnvironmentFileKey: set by the deploy command from EnvironmentFile"),
    ({"GamePorts": "udp:1,udp:2,udp:3,udp:4,udp:5,udp:6,udp:7,udp:8,udp:9"},
     "GamePorts: 9 entries; the stack opens at most 8"),
    ({"GamePorts": "udp:2456,icmp:0"}, "GamePorts: 'icmp:0' is not udp:N, tcp:N, udp:N-M or tcp:N-M"),
    ({"GamePorts": "udp:2458-2456"}, "GamePorts: 'udp:2458-2456': ports are 1 to 65535"),
    ({"GamePorts": "tcp:70000"}, "GamePorts: 'tcp:70000': ports are 1 to 65535"),
    ({"ContainerUlimits": "nofile=1:2,nproc=1:2,core=0:0,stack=1:1"}, "ContainerUlimits: 4 entries; the stack takes at most 3"),
    ({"ContainerUlimits": "files=1:2"}, "ContainerUlimits: 'files=1:2' is not name=soft:hard"),
    ({"ContainerUlimits": "nofile=65536"}, "ContainerUlimits: 'nofile=65536' is not name=soft:hard"),
    ({"ContainerUlimits": "nofile=9:8"}, "ContainerUlimits: 'nofile=9:8': the soft limit is above the hard one"),
    ({"ContainerUlimits": "nofile=1:2,nofile=3:4"}, "ContainerUlimits: nofile is given twice"),
    ({"PreStopCommand": '["rcon-cli", "save-all"'}, "PreStopCommand: not a JSON list"),
    ({"PreStopCommand": '[]'}, "PreStopCommand: expected a list of strings with the program first"),
    ({"PreStopCommand": '["rcon-cli", 3]'}, "PreStopCommand: expected a list of strings with the program first"),
    ({"PreStopCommand": '["sh", "-c", "echo a\\/b"]'}, "PreStopCommand: write \"/\""),
    ({"PreStopCommand": 'rcon-cli, save-all'}, "PreStopCommand: 'rcon-cli, save-all' has a space next to a comma"),
    ({"PreStopCommand": 'sh,-c,echo "x"'}, "PreStopCommand: the comma-separated form takes no quote or backslash"),
])
def test_a_wrong_environment_file_or_pre_stop_command_is_refused_before_any_aws_call(tmp_path, given, said):
    (tmp_path / "game.env").write_text("A=1\n")
    path = write_params(tmp_path, given)
    r = run(["deploy", str(path), "--region", "eu-west-1"], NOWHERE)
    assert r.returncode == 2, r.stderr
    assert f"{path}: {said}" in r.stderr, r.stderr


def test_the_environment_file_is_uploaded_by_its_hash_and_the_bucket_keeps_only_the_one_in_use(tmp_path, shim):
    """EnvironmentFile (issue 39) against moto: the deploy uploads it as env/<sha256>/game.env and
    sets EnvironmentFileKey; a changed file is a new key and the old one is removed after the
    update; a file no longer named leaves no key and no object."""
    zone = client(shim, "route53", "us-east-1").create_hosted_zone(
        Name="example.com", CallerReference=str(time.time()))["HostedZone"]["Id"].split("/")[-1]
    put_secret(shim, "us-east-1")
    package = tmp_path / "container-manager-agent"
    small_linux_binary(package, "agent")
    cf, s3 = client(shim, "cloudformation", "us-east-1"), client(shim, "s3", "us-east-1")
    env = tmp_path / "game.env"
    import hashlib
    for text in ("MOTD=first = one\n", "MOTD=second, with \"quotes\"\nJVM_OPTS=-Da=b -Xmx2G\n", None):
        if text is None:
            path = write_params(tmp_path, {"HostedZoneId": zone})
        else:
            env.write_text(text)
            path = write_params(tmp_path, {"HostedZoneId": zone, "EnvironmentFile": "game.env"})
        r = run(["deploy", str(path), "--region", "us-east-1", "--package", str(package)], {"AWS_ENDPOINT_URL": shim.aws})
        assert r.returncode == 0, r.stderr
        given = {p["ParameterKey"]: p["ParameterValue"] for p in cf.describe_stacks(StackName="valheim")["Stacks"][0]["Parameters"]}
        bucket = [r for r in cf.list_stack_resources(StackName="valheim")["StackResourceSummaries"]
                  if r["LogicalResourceId"] == "ArtifactBucket"][0]["PhysicalResourceId"]
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="env/").get("Contents", [])]
        if text is None:
            assert given["EnvironmentFileKey"] == "" and keys == [], (given["EnvironmentFileKey"], keys)
            continue
        key = f"env/{hashlib.sha256(text.encode()).hexdigest()}/game.env"
        assert given["EnvironmentFileKey"] == key and keys == [key], (given["EnvironmentFileKey"], keys)
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == text.encode()
        # The task definition the service runs reads that file (a new revision when it changes).
        ecs = client(shim, "ecs", "us-east-1")
        cluster = [r for r in cf.list_stack_resources(StackName="valheim")["StackResourceSummaries"]
                   if r["LogicalResourceId"] == "Cluster"][0]["PhysicalResourceId"]
        (service,) = ecs.describe_services(cluster=cluster, services=["game"])["services"]
        (c,) = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]["containerDefinitions"]
        assert [f for f in c.get("environmentFiles") or [] if f] == [
            {"type": "s3", "value": f"arn:aws:s3:::{bucket}/{key}"}], (text, service["taskDefinition"], c.get("environmentFiles"))
        assert f"Environment file: {env} as s3://{bucket}/{key}" in r.stdout, r.stdout


@pytest.mark.parametrize("given, said", [
    ({"ContainerMemoryLimitMiB": "4096"}, "ContainerMemoryLimitMiB: 4096 must be more than ContainerMemoryMiB (4096)"),
    ({"ContainerMemoryLimitMiB": "512", "ContainerMemoryMiB": "2048"},
     "ContainerMemoryLimitMiB: 512 must be more than ContainerMemoryMiB (2048)"),
    ({"ContainerMemoryLimitMiB": "lots"}, "ContainerMemoryLimitMiB: 'lots' is not a whole number"),
])
def test_a_memory_limit_under_the_reservation_is_refused_before_any_aws_call(tmp_path, given, said):
    """ECS would refuse it only when the task definition is registered, halfway through the
    stack update; the deploy command says so first, naming the file and both parameters."""
    path = write_params(tmp_path, given)
    r = run(["deploy", str(path), "--region", "eu-west-1"], NOWHERE)
    assert r.returncode == 2, r.stderr
    assert f"{path}: {said}" in r.stderr, r.stderr


def test_the_readmes_full_example_is_the_minecraft_example_and_its_checks_pass():
    """The README's configuration example is cloud/examples/minecraft.json with its environment
    file (each README line is in them), and the deploy command's checks take both."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("#### The game's settings", 1)[1]
    shown = json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])
    example = json.loads((ROOT / "cloud/examples/minecraft.json").read_text())
    assert all(item in example for item in shown), [i for i in shown if i not in example]
    env_lines = section.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()[1:]
    file_lines = (ROOT / "cloud/examples/minecraft.env").read_text().splitlines()
    assert env_lines and all(line in file_lines for line in env_lines), env_lines
    r = subprocess.run([sys.executable, str(ROOT / "cloud/params.py"), str(ROOT / "cloud/examples/minecraft.json")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"p_EnvironmentFile={ROOT / 'cloud/examples/minecraft.env'}" in r.stdout


def write_base(tmp_path, zone, **extra):
    out = tmp_path / "base.json"
    out.write_text(json.dumps([{"ParameterKey": k, "ParameterValue": v}
                               for k, v in {"BaseName": "community", "HostedZoneId": zone, **extra}.items()]))
    return out


def test_a_base_then_two_games_in_it_then_destroy_in_order(tmp_path, shim):
    """Many servers (docs/many-servers.md): the deploy command makes a base (its network, and its
    one wake path in us-east-1), then games with BaseName in it, which make neither; a second
    game may not take the first one's name; the base is not destroyed while it has games."""
    zone = client(shim, "route53", "us-east-1").create_hosted_zone(
        Name="example.com", CallerReference=str(time.time()))["HostedZone"]["Id"].split("/")[-1]
    env = {"AWS_ENDPOINT_URL": shim.aws}
    package = str(agent_rpm(tmp_path))
    # A game before its base: refused, naming the base's deploy.
    game = write_params(tmp_path, {"HostedZoneId": zone, "BaseName": "community"})
    r = run(["deploy", str(game), "--region", "eu-west-1", "--package", package], env)
    assert r.returncode == 2 and "BaseName: no base community in eu-west-1; deploy it first" in r.stderr, r.stderr

    base = write_base(tmp_path, zone)
    r = run(["deploy", str(base), "--region", "eu-west-1"], env)
    assert r.returncode == 0, r.stderr
    assert "Deployed the base community in eu-west-1: games: none yet." in r.stdout
    assert stacks(shim, "eu-west-1") == ["container-manager-base-community"]
    assert stacks(shim, "us-east-1") == ["container-manager-base-community-wake"]
    wake = client(shim, "cloudformation", "us-east-1").describe_stacks(
        StackName="container-manager-base-community-wake")["Stacks"][0]
    wake_params = {p["ParameterKey"]: p["ParameterValue"] for p in wake["Parameters"]}
    assert {k: wake_params[k] for k in ("ServerName", "Games", "ServerRegion", "HostedZoneId", "IPv6")} == {
        "ServerName": "base-community", "Games": "many", "ServerRegion": "eu-west-1", "HostedZoneId": zone,
        "IPv6": "true"}

    put_secret(shim, "eu-west-1")
    r = run(["deploy", str(game), "--region", "eu-west-1", "--package", package], env)
    assert r.returncode == 0, r.stderr
    assert "(the wake path of the base community wakes it)" in r.stdout
    # No wake stack of its own, and the base's network, filled in from the base's outputs.
    assert stacks(shim, "us-east-1") == ["container-manager-base-community-wake"]
    cf = client(shim, "cloudformation", "eu-west-1")
    outputs = {o["OutputKey"]: o["OutputValue"]
               for o in cf.describe_stacks(StackName="container-manager-base-community")["Stacks"][0]["Outputs"]}
    given = {p["ParameterKey"]: p["ParameterValue"] for p in cf.describe_stacks(StackName="valheim")["Stacks"][0]["Parameters"]}
    assert (given["BaseName"], given["BaseVpcId"], given["BaseSubnetA"], given["BaseS3EndpointId"]) == (
        "community", outputs["VpcId"], outputs["SubnetA"], outputs["S3EndpointId"])
    resources = {r["LogicalResourceId"] for r in cf.list_stack_resources(StackName="valheim")["StackResourceSummaries"]}
    assert "Vpc" not in resources and "AutoScalingGroup" in resources

    # A second game that takes the first one's name: refused before anything changes.
    second = tmp_path / "second"
    second.mkdir()
    other = write_params(second, {"HostedZoneId": zone, "BaseName": "community", "ServerName": "other"})
    r = run(["deploy", str(other), "--region", "eu-west-1", "--package", package], env)
    assert r.returncode == 2, r.stderr
    assert "RecordName: valheim.example.com is already the name of container-manager-valheim in the base community" \
        in r.stderr
    # A game named in another zone than its base's: refused.
    other_zone = client(shim, "route53", "us-east-1").create_hosted_zone(
        Name="example.org", CallerReference=str(time.time()))["HostedZone"]["Id"].split("/")[-1]
    elsewhere = write_params(second, {"HostedZoneId": other_zone, "BaseName": "community",
                                      "ServerName": "other", "RecordName": "other.example.org"})
    r = run(["deploy", str(elsewhere), "--region", "eu-west-1", "--package", package], env)
    assert r.returncode == 2 and f"the base community wakes the names of the zone {zone}" in r.stderr, r.stderr

    # A server does not move out of its base (or into one) by an update: EFS keeps mount targets
    # in one VPC at a time; the refusal names the destroy and the adopting deploy.
    third = tmp_path / "third"
    third.mkdir()
    alone = write_params(third, {"HostedZoneId": zone})
    r = run(["deploy", str(alone), "--region", "eu-west-1", "--package", package], env)
    assert r.returncode == 2, r.stderr
    assert ("BaseName: the stack valheim is in the base community, and the file says a server of its own: a server "
            "moves between layouts by a destroy") in r.stderr and "--adopt-world" in r.stderr
    assert given == {p["ParameterKey"]: p["ParameterValue"]
                     for p in cf.describe_stacks(StackName="valheim")["Stacks"][0]["Parameters"]}, "nothing changed"

    # The base is not destroyed while it has a game; the game first, then the base.
    r = run(["destroy", str(base), "--region", "eu-west-1"], env)
    assert r.returncode == 2 and "the base community still has games: container-manager-valheim" in r.stderr, r.stderr
    assert stacks(shim, "eu-west-1") == ["container-manager-base-community", "valheim"]
    r = run(["destroy", str(game), "--region", "eu-west-1"], env)
    assert r.returncode == 0, r.stderr
    r = run(["destroy", str(base), "--region", "eu-west-1"], env)
    assert r.returncode == 0, r.stderr
    assert stacks(shim, "eu-west-1") == [] and stacks(shim, "us-east-1") == []


@pytest.mark.parametrize("items, expected", [
    ({"BaseName": "Community", "HostedZoneId": "Z1"}, "BaseName: 'Community' is not 1 to 24 lower-case"),
    ({"BaseName": "community"}, "HostedZoneId: missing"),
    ({"BaseName": "community", "HostedZoneId": "Z1", "GamePorts": "udp:2456"}, "GamePorts: not a base's parameter"),
    ({"BaseName": "community", "HostedZoneId": "Z1", "IPv6": "yes"}, "IPv6: 'yes'; expected true or false"),
])
def test_a_bad_base_file_is_refused_naming_the_key(tmp_path, items, expected):
    path = tmp_path / "base.json"
    path.write_text(json.dumps([{"ParameterKey": k, "ParameterValue": v} for k, v in items.items()]))
    r = run(["deploy", str(path), "--region", "eu-west-1"], {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert r.returncode == 2 and f"base.json: {expected}" in r.stderr, r.stderr


@pytest.mark.parametrize("overrides, expected", [
    ({"BaseName": "community", "BaseVpcId": "vpc-12345678"}, "BaseVpcId: the deploy command sets it"),
    ({"BaseName": "community", "WebhookKind": "discord", "WebhookUrlParameter": "/hooks/discord"},
     "WebhookUrlParameter: '/hooks/discord'; a game in a base keeps its webhook's URL under /container-manager/"),
])
def test_a_game_file_for_a_base_is_refused_naming_the_key(tmp_path, overrides, expected):
    path = write_params(tmp_path, overrides)
    r = run(["deploy", str(path), "--region", "eu-west-1"], {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert r.returncode == 2 and expected in r.stderr, r.stderr
