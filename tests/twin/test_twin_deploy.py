"""The deploy command's stories (issue 19): the twin deploys as a user does, with cloud/deploy.sh
(what `make deploy` and `make destroy` run), pointed at the emulator with the AWS CLI's standard
variables; the instance takes the agent from the stack's artifact bucket through the VPC's S3
gateway endpoint, with the stack's bucket policy (tests/twin/s3gateway.py). Nothing is hosted by
hand: the twin's release page serves only the AgentPackageUrl stories (5 and 6)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bake  # noqa: E402
import stack  # noqa: E402
from test_twin_world import tree  # noqa: E402
from twin import AGENT, Twin, sh  # noqa: E402

pytestmark = pytest.mark.skipif(not AGENT.exists(), reason=f"build the agent first: {AGENT} is missing")

BOOT = 180


def bucket_keys(tw: Twin) -> list[str]:
    s3 = tw.client("s3", direct=True)
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=tw.deployed.physical["ArtifactBucket"]).get("Contents", []))


def user_data_log(tw: Twin, iid: str) -> str:
    return "\n".join(e["message"] for e in tw.journal(iid, "cloud-final.service"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_deploy_from_a_fresh_checkout_wakes_plays_and_sleeps_with_nothing_hosted_by_hand():
    with Twin() as tw:
        run = tw.deployed.deploy_run
        assert run is not None and run.returncode == 0, run
        print(f"deploy command: {run.seconds:.1f} s")
        key = tw.params["AgentPackageKey"]
        assert tw.params["AgentPackageUrl"] == "" and key == f"agent/{sha256(AGENT)}/container-manager-agent"
        assert tw.params["AgentPackageSha256"] == sha256(AGENT)
        assert bucket_keys(tw) == sorted([key.rsplit("/", 1)[0] + "/install-agent.sh", key]), "the package, its installer, no template"
        assert f"Deployed valheim in us-east-1" in run.stdout
        tw.player("--play-seconds", "5", "--rate", "10")
        resolved = tw.wait_for("resolved", BOOT, source="player")
        (inst,) = tw.active()
        assert resolved["address"] == inst.ip
        # The one download: from the bucket, through the stack's endpoint, allowed by its policy.
        (got,) = [d for d in tw.package.downloads if d["client"] == inst.ip]
        assert (got["status"], got["key"]) == (200, key), got
        assert got["why"] == f"allowed through {tw.package.s3.endpoint}" and tw.package.s3.endpoint.startswith("vpce-")
        log = user_data_log(tw, inst.iid)
        assert f"sha256 check passed: https://{tw.deployed.physical['ArtifactBucket']}.s3.us-east-1.amazonaws.com/{key}" in log, log
        installed = sh("docker", "exec", inst.container, "sha256sum", "/usr/local/bin/container-manager-agent").stdout
        assert installed.split()[0] == sha256(AGENT)
        tw.wait_for("connected", 30, source="player")
        tw.wait_for("left", 40, source="player")
        # Asleep again through the operator's path (the stories about idle wait for idle).
        assert tw.sleep_now()["instance"] == inst.iid
        tw.wait_instances(0, 150)
        assert tw.desired() == 0 and tw.record_values() == ["0.0.0.0"]


def test_redeploy_with_a_changed_agent_boots_the_new_version():
    with Twin() as tw:
        old_key = tw.params["AgentPackageKey"]
        changed = tw.dir / "container-manager-agent"
        shutil.copyfile(AGENT, changed)
        with changed.open("ab") as f:  # the same program, another build: another sha256
            f.write(b"\0container-manager twin: a changed build\n")
        changed.chmod(0o755)
        run = tw.redeploy(changed)
        print(f"redeploy: {run.seconds:.1f} s")
        new_key = f"agent/{sha256(changed)}/container-manager-agent"
        assert tw.params["AgentPackageKey"] == new_key != old_key
        assert bucket_keys(tw) == sorted([new_key.rsplit("/", 1)[0] + "/install-agent.sh", new_key]), "the old package is gone"
        assert f"removed the old package s3://{tw.deployed.physical['ArtifactBucket']}/{old_key}" in run.stderr
        tw.player("--lookups-only", "1")
        tw.wait_for("dns_updated", BOOT, source="agent")
        (inst,) = tw.active()
        installed = sh("docker", "exec", inst.container, "sha256sum", "/usr/local/bin/container-manager-agent").stdout
        assert installed.split()[0] == sha256(changed), "the next boot runs the new package"
        assert f"is package {sha256(changed)}" in user_data_log(tw, inst.iid)
        # A third run with nothing changed changes nothing.
        again = tw.redeploy(changed)
        assert again.returncode == 0 and "the package is in place" in again.stderr
        assert tw.params["AgentPackageKey"] == new_key


def test_a_package_missing_from_the_bucket_fails_loudly_and_the_heartbeat_alarm_sees_it():
    with Twin() as tw:
        key = tw.params["AgentPackageKey"]
        tw.client("s3", direct=True).delete_object(Bucket=tw.deployed.physical["ArtifactBucket"], Key=key)
        tw.player("--lookups-only", "1")
        tw.wait_for("instance_started", 60, source="asg")
        (inst,) = tw.active()
        failed = tw.wait_for("user_data_output", 120, source="instance",
                             pred=lambda e: "user-data exited with status" in e["message"])
        assert "status 1" in failed["message"]
        log = user_data_log(tw, inst.iid)
        assert "The requested URL returned error: 403" in log, log
        assert f"cannot download the agent from https://{tw.deployed.physical['ArtifactBucket']}.s3.us-east-1.amazonaws.com/{key}" in log
        assert "the package is missing there or the request did not come through the VPC endpoint: run cloud/deploy.sh again" in log
        assert "the agent is not installed" in log
        (got,) = [d for d in tw.package.downloads if d["client"] == inst.ip][:1]
        assert got["status"] == 403 and "no such key" in got["why"], got
        heartbeats = [m for m in tw.metrics() if m["name"] == "AgentHeartbeat"]
        assert len(heartbeats) == 1 and all(p["max"] == 0 for p in heartbeats[0]["datapoints"]), heartbeats
        assert tw.record_values() == ["0.0.0.0"]


def test_destroy_leaves_the_world_data_in_place():
    with Twin() as tw:
        fs = tw.deployed.physical["DataFileSystem"]
        save = tw.save_file()
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text('{"sessions": 3}\n')  # a world, as the game leaves it on the file system
        run = tw.destroy()
        assert run.returncode == 0, run.stderr
        assert f"Kept, on purpose: the world's file system {fs}" in run.stdout, run.stdout
        cf = tw.client("cloudformation", direct=True)
        assert "valheim" not in [s["StackName"] for s in cf.list_stacks()["StackSummaries"]
                                 if s["StackStatus"] != "DELETE_COMPLETE"]
        (kept,) = tw.client("efs", direct=True).describe_file_systems(FileSystemId=fs)["FileSystems"]
        assert kept["LifeCycleState"] == "available"
        assert save.read_text() == '{"sessions": 3}\n'
        buckets = [b["Name"] for b in tw.client("s3", direct=True).list_buckets()["Buckets"]]
        assert tw.deployed.physical["ArtifactBucket"] not in buckets, "the artifact bucket goes with the stack"


def test_a_baked_image_boots_with_no_download():
    with Twin() as tw:
        image = bake.bake(tw)
        tw.redeploy_image(image)
        tw.player("--lookups-only", "1")
        tw.wait_for("dns_updated", BOOT, source="agent")
        (inst,) = tw.active()
        assert inst.image == image.docker_image
        log = user_data_log(tw, inst.iid)
        assert (f"sha256 check passed: the agent baked into this image is package {tw.params['AgentPackageSha256']}; "
                "nothing to download") in log, log
        assert [d for d in tw.package.downloads if d["client"] == inst.ip] == [], "no download at boot"


def stack_parameters(tw: Twin) -> dict[str, str]:
    desc = tw.client("cloudformation", direct=True).describe_stacks(StackName=tw.deployed.name)["Stacks"][0]
    return {p["ParameterKey"]: p["ParameterValue"] for p in desc["Parameters"]}


def a_wake_loads_the_save(tw: Twin, sessions: int) -> None:
    """A player's lookup wakes the server, the player connects, and the game's log says it loaded
    the save with that many sessions."""
    tw.player("--play-seconds", "3", "--rate", "10")
    resolved = tw.wait_for("resolved", BOOT, source="player")
    (game,) = tw.active()
    tw.wait_for("connected", 30, source="player", after=resolved["t"])
    log = tw.game_log(game)
    assert "loaded save" in log and f"sessions={sessions}" in log, log


def deploy_with(tw: Twin, workdir: Path, **changes: str) -> stack.DeployRun:
    """The user's deploy command with their parameter file changed (written beside it, so that
    the twin's own file stays as deployed)."""
    workdir.mkdir(exist_ok=True)
    return stack.run_deploy(tw.shim.aws, "deploy", {**tw.user_params(), **changes}, workdir, "--package", str(AGENT))


def test_a_file_system_type_change_is_refused_naming_the_world_and_the_next_wake_plays_it():
    """FileSystemType would replace the data file system (a new, empty world): the deploy command
    reads the change set, refuses, names the world, and changes nothing; the world plays on."""
    with Twin() as tw:
        fs = tw.deployed.physical["DataFileSystem"]
        save = tw.save_file()
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(json.dumps({"sessions": 7, "saved_at": 1700000000.0, "players_seen": 2}))
        before = stack_parameters(tw)
        run = deploy_with(tw, tw.dir / "changed", FileSystemType="regional")
        print(f"refused deploy: {run.seconds:.1f} s")
        assert run.returncode == 2, run.stderr[-3000:]
        assert (f"this deploy replaces the world's file system {fs} (DataFileSystem, Modify, Replacement True): "
                "the server would start on a new, empty world") in run.stderr
        assert "Nothing was changed." in run.stderr and "pass --replace-world" in run.stderr
        assert stack_parameters(tw) == before
        # The next wake plays the world it had.
        a_wake_loads_the_save(tw, sessions=7)


def test_a_file_system_type_change_with_replace_world_moves_the_world_byte_for_byte_and_a_wake_loads_it():
    """Issue 42's story: deploy, a saved world, FileSystemType changed with the deploy command:
    refused, naming the world; with --replace-world the stack gets a new file system (CloudFormation
    replaces it), the world goes across through the export and import path, every file's sha256
    the same on both, the old file system kept as it was; and a wake plays the save."""
    with Twin() as tw:
        old = tw.world_fs()
        save = tw.save_file()
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(json.dumps({"sessions": 9, "saved_at": 1700000000.0, "players_seen": 2}))
        (tw.data_dir() / "config").mkdir()
        (tw.data_dir() / "config" / "server.cfg").write_text("motd=kept across file systems\n")
        (tw.data_dir() / "mods").mkdir()
        for i in range(3):
            (tw.data_dir() / "mods" / f"mod-{i}.bin").write_bytes(os.urandom(96 * 1024))
        world = tree(tw.data_dir())
        size = sum(p.stat().st_size for p in tw.data_dir().rglob("*") if p.is_file())

        refused = deploy_with(tw, tw.dir / "changed", FileSystemType="regional")
        assert refused.returncode == 2, refused.stderr[-3000:]
        assert (f"this deploy replaces the world's file system {old} (DataFileSystem, Modify, Replacement True)"
                in refused.stderr)
        assert "Nothing was changed." in refused.stderr and "pass --replace-world" in refused.stderr
        assert tw.world_fs() == old

        before = set(tw.instances)
        run = tw.redeploy(AGENT, "--replace-world", FileSystemType="regional")
        print(f"deploy with --replace-world: {run.seconds:.1f} s (export boot, stack update, import boot)")
        new = tw.world_fs()
        assert new != old, "a new file system"
        assert stack_parameters(tw)["FileSystemType"] == "regional"
        assert (f"The world moved to {new}: {len(world)} files, {size} bytes, every file's sha256 the same as "
                f"on {old}.") in run.stdout, run.stdout + run.stderr[-3000:]
        assert f"The previous file system {old} is kept, unused, with the world as it was" in run.stdout
        # Byte for byte on the new file system, and the old one as it was (never deleted by us).
        assert tree(tw.efs / new / "data") == world
        assert tree(tw.efs / old / "data") == world
        assert old in [f["FileSystemId"] for f in tw.client("efs", direct=True).describe_file_systems()["FileSystems"]]
        # Two maintenance boots, no game, and the server asleep after them.
        booted = [i for iid, i in tw.instances.items() if iid not in before]
        assert len(booted) == 2 and all(i.game_started == 0 for i in booted), [(i.iid, i.game_started) for i in booted]
        assert tw.desired() == 0
        # The next wake plays it, from the new file system.
        a_wake_loads_the_save(tw, sessions=9)
        assert tw.task["volumes"][0]["efs"]["FilesystemId"] == new


def test_a_missing_secret_is_refused_before_any_stack_change():
    with Twin() as tw:
        before = stack_parameters(tw)
        run = deploy_with(tw, tw.dir / "changed", Secret2="ADMIN_PASS=/container-manager/valheim/admin-pass")
        assert run.returncode == 2, run.stderr[-3000:]
        assert ("Secret2: no SSM parameter /container-manager/valheim/admin-pass in us-east-1; create it with: "
                "aws ssm put-parameter --region us-east-1 --type SecureString --name "
                "/container-manager/valheim/admin-pass") in run.stderr
        assert "deploying cloud/container-manager.yaml" not in run.stderr
        assert stack_parameters(tw) == before


def test_a_world_left_by_an_earlier_stack_is_offered_then_adopted_and_a_wake_loads_its_save():
    """A world an earlier stack of this server left (a data file system kept by destroy): the
    deploy command refuses to start an empty world beside it and names it; with
    ExistingFileSystemId the stack makes no file system, mounts that one, and a wake plays it."""
    seen: dict = {}

    def leave_a_world(tw: Twin, params: dict[str, str]) -> dict[str, str]:
        efs = tw.client("efs", direct=True)
        fs = efs.create_file_system(CreationToken="an-earlier-stack", Encrypted=True, AvailabilityZoneName="us-east-1a",
                                    Tags=[{"Key": "Name", "Value": "container-manager-valheim-data"}])["FileSystemId"]
        (tw.efs / fs).mkdir(parents=True)
        first = tw.dir / "first"
        first.mkdir()
        seen["fs"], seen["refused"] = fs, stack.run_deploy(tw.shim.aws, "deploy", params, first, "--package", str(AGENT))
        return {"ExistingFileSystemId": fs}

    with Twin(before_deploy=leave_a_world) as tw:
        fs, refused = seen["fs"], seen["refused"]
        assert refused.returncode == 2, refused.stderr[-3000:]
        assert "a world of valheim is left in us-east-1 from an earlier stack" in refused.stderr
        assert f'{{"ParameterKey": "ExistingFileSystemId", "ParameterValue": "{fs}"}}' in refused.stderr
        assert "DataFileSystem" not in tw.deployed.physical, "no second world"
        assert tw.world_fs() == fs and tw.deployed.outputs["DataFileSystemId"] == fs
        assert {ap["logical"]: ap["fs"] for ap in tw.deployed.access_points.values()
                if ap["logical"] != "ServerFilesAccessPoint"} == {"DataAccessPoint": fs, "HostAccessPoint": fs}
        save = tw.save_file()  # the earlier stack's game left it there
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(json.dumps({"sessions": 12, "saved_at": 1700000000.0, "players_seen": 3}))
        a_wake_loads_the_save(tw, sessions=12)


def test_destroy_then_deploy_again_offers_the_old_world_and_a_wake_after_adopting_it_loads_its_save():
    """The whole round a user makes (issue 42): deploy, the game saves its world, destroy (which
    keeps the world and says how to get it back), deploy again with the same server name: the
    deploy command refuses to start an empty world, names the old one and offers --adopt-world;
    adopted, a wake plays the old save."""
    seen: dict = {}

    def deploy_play_destroy(tw: Twin, params: dict[str, str]) -> dict[str, str]:
        earlier = tw.dir / "earlier"
        earlier.mkdir()
        first = stack.run_deploy(tw.shim.aws, "deploy", params, earlier, "--package", str(AGENT))
        assert first.returncode == 0, first.stderr[-3000:]
        (desc,) = tw.client("cloudformation", direct=True).describe_stacks(StackName="valheim")["Stacks"]
        fs = next(o["OutputValue"] for o in desc["Outputs"] if o["OutputKey"] == "DataFileSystemId")
        # The world as the game leaves it on the file system (DataAccessPoint's /data).
        world = params.get("Env2", "WORLD_NAME=world").split("=", 1)[1]
        save = tw.efs / fs / "data" / "worlds" / f"{world}.json"
        save.parent.mkdir(parents=True)
        save.write_text(json.dumps({"sessions": 21, "saved_at": 1700000000.0, "players_seen": 4}))
        destroyed = stack.run_deploy(tw.shim.aws, "destroy", params, earlier)
        assert destroyed.returncode == 0, destroyed.stderr[-3000:]
        again = tw.dir / "again"
        again.mkdir()
        seen.update(fs=fs, destroyed=destroyed,
                    refused=stack.run_deploy(tw.shim.aws, "deploy", params, again, "--package", str(AGENT)))
        # What --adopt-world sets (tests/cloud/test_deploy_world.py runs the flag itself).
        return {"ExistingFileSystemId": fs}

    with Twin(before_deploy=deploy_play_destroy) as tw:
        fs, destroyed, refused = seen["fs"], seen["destroyed"], seen["refused"]
        assert f"Kept, on purpose: the world's file system {fs}" in destroyed.stdout, destroyed.stdout
        assert "--adopt-world" in destroyed.stdout
        assert refused.returncode == 2, refused.stderr[-3000:]
        assert "a world of valheim is left in us-east-1 from an earlier stack" in refused.stderr
        assert fs in refused.stderr and "--adopt-world" in refused.stderr
        assert "creating the stack" not in refused.stderr, "refused before anything changed"
        assert tw.world_fs() == fs and "DataFileSystem" not in tw.deployed.physical
        assert json.loads(tw.save_file().read_text())["sessions"] == 21
        a_wake_loads_the_save(tw, sessions=21)


def test_the_memory_limit_and_cpu_units_reach_the_game_container():
    """ContainerMemoryLimitMiB, ContainerCpuUnits and ContainerUlimits (issue 39): the task
    definition's memory, cpu and ulimits, which the ECS agent gives Docker as --memory,
    --cpu-shares and --ulimit, with the reservation as --memory-reservation; checked on the
    running game container."""
    with Twin(overrides={"ContainerMemoryMiB": "512", "ContainerMemoryLimitMiB": "1536", "ContainerCpuUnits": "512",
                         # Below the limits of this machine's Docker, which the twin's instances
                         # inherit (a container may lower a limit, not raise it past its daemon's).
                         "ContainerUlimits": "nofile=1024:2048,nproc=4096:8192"}) as tw:
        (c,) = tw.task["containerDefinitions"]
        assert (c["memory"], c["cpu"], c["memoryReservation"]) == (1536, 512, 512), c
        tw.player("--play-seconds", "3", "--rate", "10")
        tw.wait_for("connected", BOOT, source="player")
        (inst,) = tw.active()
        host = json.loads(inst.dockercmd("inspect", "-f", "{{json .HostConfig}}", inst.game).stdout)
        mib = 1024 * 1024
        assert (host["Memory"], host["MemoryReservation"], host["CpuShares"]) == (1536 * mib, 512 * mib, 512), host
        # ContainerUlimits, as ECS gives them to Docker, and as the game's process has them.
        assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048},
                                   {"Name": "nproc", "Soft": 4096, "Hard": 8192}], host["Ulimits"]
        limits = inst.dockercmd("exec", inst.game, "cat", "/proc/1/limits").stdout
        assert re.search(r"Max open files\s+1024\s+2048", limits), limits


def test_an_environment_file_a_command_and_a_pre_stop_list_reach_the_game_as_written(tmp_path):
    """Issue 39: the game's settings in an environment file (EnvironmentFile), with values that
    the EnvN slots cannot hold ("=", spaces, quotes, "#", a CRLF line), an entry point and a
    command, a private registry's login, and the pre-stop command as a JSON list with an argument
    holding a comma and quotes.
    The deploy command uploads the file, the twin's ECS agent reads it from S3 as ECS does, and
    each value is read back from the game's process byte for byte; the pre-stop command runs at
    the sleep with its arguments as written."""
    values = {
        "JVM_OPTS": "-Xms1G -Xmx4G -Dlog4j2.formatMsgNoLookups=true",
        "MOTD": '  Welcome, "friends" = all of you  ',
        "WEBHOOK": "https://example.test/hook?a=1&b=2#top",
        "NOT_A_COMMENT": "#kept as it is",
        "QUOTED": "'single' and \"double\"",
        "UNICODE": "Ünïcödé ✓",
    }
    env = tmp_path / "game.env"
    text = "# the game's settings\n\n" + "".join(f"{k}={v}\n" for k, v in values.items()) + "WINDOWS=crlf\r\n"
    env.write_bytes(text.encode())
    values |= {"WINDOWS": "crlf", "SLOT": "from the slot", "CM_FROM_ENTRYPOINT": "yes"}
    pre_stop = ["sh", "-c", 'printf "%s" "$1" > /config/pre-stop-args', "sh", 'save, now "all"']
    overrides = {
        "EnvironmentFile": str(env), "Env1": "SLOT=from the slot",
        # The image's own entry point is python3 game.py: env runs it with one more variable.
        "ContainerEntryPoint": "/usr/bin/env,CM_FROM_ENTRYPOINT=yes",
        "ContainerCommand": "/usr/bin/python3,-u,/usr/local/bin/game.py",
        "PreStopCommand": json.dumps(pre_stop),
    }

    def registry_login(tw: Twin, params: dict[str, str]) -> dict[str, str]:
        """The private registry's login in Secrets Manager, as the user puts it there."""
        arn = tw.client("secretsmanager", direct=True).create_secret(
            Name="registry-login", SecretString=json.dumps({"username": "gamer", "password": "pw"}))["ARN"]
        return {"RegistryCredentialsSecretArn": arn}

    with Twin(overrides=overrides, before_deploy=registry_login) as tw:
        key = tw.params["EnvironmentFileKey"]
        assert key == f"env/{sha256(env)}/game.env", key
        assert key in bucket_keys(tw)
        (c,) = tw.task["containerDefinitions"]
        assert c["environmentFiles"] == [{"type": "s3", "value": f"arn:aws:s3:::{tw.deployed.physical['ArtifactBucket']}/{key}"}], c
        assert c["entryPoint"] == ["/usr/bin/env", "CM_FROM_ENTRYPOINT=yes"]
        assert c["command"] == ["/usr/bin/python3", "-u", "/usr/local/bin/game.py"]
        assert c["repositoryCredentials"] == {"credentialsParameter": tw.params["RegistryCredentialsSecretArn"]}
        tw.player("--play-seconds", "3", "--rate", "10")
        tw.wait_for("connected", BOOT, source="player")
        (inst,) = tw.active()
        # The ECS agent read the registry's login before it started the game.
        assert tw.named("registry_login", "ecs")[0]["username"] == "gamer"
        environ = inst.dockercmd("exec", inst.game, "cat", "/proc/1/environ").stdout
        got = dict(v.split("=", 1) for v in environ.split("\0") if v)
        for name, value in values.items():
            assert got.get(name) == value, (name, got.get(name), value)
        cmdline = inst.dockercmd("exec", inst.game, "cat", "/proc/1/cmdline").stdout.split("\0")
        assert cmdline[:3] == ["/usr/bin/python3", "-u", "/usr/local/bin/game.py"], cmdline
        toml = sh("docker", "exec", inst.container, "grep", "pre_stop_command", "/etc/container-manager/agent.toml").stdout
        print(f"agent.toml: {toml.strip()}")
        # The player leaves; at the sleep the agent runs the pre-stop command, then stops the game.
        tw.wait_for("instance_terminated", 300, source="asg")
        ran = tw.data_dir() / "pre-stop-args"
        assert ran.exists(), "the pre-stop command ran"
        assert ran.read_text() == 'save, now "all"'
        print(f"{len(values)} variables read back byte for byte; pre-stop argument {ran.read_text()!r}")


def test_a_settings_change_while_a_player_is_on_is_refused_and_reaches_the_next_wake(tmp_path):
    """Issue 39: a changed environment file is a new task definition, which ECS would roll out at
    once, stopping the game without its pre-stop command. While a player is on, the deploy
    command refuses, naming the instance and the player, and nothing changes: the same game
    plays on. Once the server sleeps (its pre-stop save first), the same deploy goes through and
    the next wake starts the game with the new settings."""
    env = tmp_path / "game.env"
    env.write_text("MOTD=first settings\n")
    with Twin(overrides={"EnvironmentFile": str(env),
                         "PreStopCommand": '["sh", "-c", "date +%s > /config/pre-stop-ran"]'}) as tw:
        first_key = tw.params["EnvironmentFileKey"]
        player = tw.player("--play-seconds", "120", "--rate", "10")
        resolved = tw.wait_for("resolved", BOOT, source="player")
        (inst,) = tw.active()
        tw.wait_for("connected", 30, source="player", after=resolved["t"])
        assert tw.wait_for_players_counted(1), "the agent counts the player"
        game, revision = inst.game, tw.task["revision"]

        changed = tmp_path / "changed"
        changed.mkdir()
        (changed / "game.env").write_text("MOTD=second settings, with = and spaces\n")
        refused = deploy_with(tw, changed / "deploy", EnvironmentFile=str(changed / "game.env"))
        assert refused.returncode == 2, refused
        assert f"the server is up ({inst.iid}, 1 player(s) online)" in refused.stderr, refused.stderr
        assert "Nothing was changed" in refused.stderr and "--restart-game" in refused.stderr
        cf = tw.client("cloudformation", direct=True)
        given = {p["ParameterKey"]: p["ParameterValue"] for p in cf.describe_stacks(StackName=tw.deployed.name)["Stacks"][0]["Parameters"]}
        assert given["EnvironmentFileKey"] == first_key
        time.sleep(5)  # the twin's ECS looks at the service every 3 s
        assert tw.active() == [inst] and inst.game == game and inst.game_exited_at is None, "the game plays on"
        assert not tw.named("task_replaced", "ecs") and not tw.named("left", "player")
        assert not (tw.data_dir() / "pre-stop-ran").exists()

        # The player leaves (now: the story needs no more of the 120 s); the server saves (the
        # pre-stop command, then SIGTERM) and sleeps.
        player.terminate()
        tw.wait_for("instance_terminated", 400, source="asg")
        assert (tw.data_dir() / "pre-stop-ran").exists(), "the sleep ran the pre-stop command"
        saved = json.loads(tw.save_file().read_text())
        run = tw.redeploy(EnvironmentFile=str(changed / "game.env"))
        assert run.returncode == 0
        assert tw.params["EnvironmentFileKey"] != first_key

        tw.player("--play-seconds", "3", "--rate", "10")
        resolved = tw.wait_for("resolved", BOOT, source="player", after=time.time())
        (inst2,) = tw.active()
        tw.wait_for("connected", 30, source="player", after=resolved["t"])
        assert tw.task["revision"] > revision, (tw.task["revision"], revision)
        environ = inst2.dockercmd("exec", inst2.game, "cat", "/proc/1/environ").stdout
        motd = [v for v in environ.split("\0") if v.startswith("MOTD=")]
        assert motd == ["MOTD=second settings, with = and spaces"], motd
        assert f"sessions={saved['sessions']}" in tw.game_log(inst2), "the next wake loads the saved world"
        print(f"refused while up in {refused.seconds:.1f} s; revision {revision} -> {tw.task['revision']}")
