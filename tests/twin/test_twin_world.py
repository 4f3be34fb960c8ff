"""The operator's hands on the world (issue 20), in the cloud twin: cloud/world.sh against the
stack the deploy command made. Each job is a maintenance boot: the instance starts with no game
and no agent, takes the job from the stack's bucket, works on the data file system (the twin's
EFS, mounted the way amazon-efs-utils would: tests/twin/ami/mount.efs), and goes back to zero.
AWS Backup's recovery points and restores are tests/shim/backup.py."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from twin import AGENT, Twin, sh  # noqa: E402

pytestmark = pytest.mark.skipif(not AGENT.exists(), reason=f"build the agent first: {AGENT} is missing")

BOOT = 180
# The game's user for the stories that look at owners: not root (the valheim example's image runs
# as root, FilesOwnerUid 0), so that an owner set by the access point shows.
GAME_USER = {"FilesOwnerUid": "1000", "FilesOwnerGid": "1000"}
OWNER = (1000, 1000)


def tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path -> sha256), skipping nothing."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def a_world(folder: Path, world: str, sessions: int, blobs: int = 2, blob_bytes: int = 64 * 1024) -> Path:
    """A world as a player brings it from another host: the save the twin's game loads, a config
    file and some mod files (random, so that gzip cannot shrink them)."""
    (folder / "worlds").mkdir(parents=True)
    (folder / "worlds" / f"{world}.json").write_text(json.dumps(
        {"sessions": sessions, "saved_at": 1700000000.0, "players_seen": 7}))
    (folder / "config").mkdir()
    (folder / "config" / "server.cfg").write_text("motd=brought from another host\n")
    (folder / "mods").mkdir()
    for i in range(blobs):
        (folder / "mods" / f"mod-{i:04d}.bin").write_bytes(os.urandom(blob_bytes))
    return folder


def world_name(tw: Twin) -> str:
    return tw.save_file().stem


def transfer_keys(tw: Twin) -> list[str]:
    s3 = tw.client("s3", direct=True)
    objects = s3.list_objects_v2(Bucket=tw.deployed.physical["ArtifactBucket"], Prefix="transfer/").get("Contents", [])
    return sorted(o["Key"] for o in objects)


def game_log(tw: Twin, inst) -> str:
    return tw.game_log(inst)


def maintenance_log(tw: Twin, iid: str) -> str:
    return "\n".join(e.get("message", "") for e in tw.journal(iid, "cloud-final.service"))


def wake_and_play(tw: Twin) -> str:
    """A lookup and a short game on the instance it wakes; returns what the game printed."""
    tw.player("--play-seconds", "3", "--rate", "10")
    resolved = tw.wait_for("resolved", BOOT, source="player", after=time.time() - 1)
    (game,) = tw.active()
    tw.wait_for("connected", 30, source="player", after=resolved["t"])
    return game_log(tw, game)


def play_once(tw: Twin, after: float = 0.0) -> None:
    """A lookup, a short game, and the sleep after it (the game saves on the way). The server
    goes to sleep through the operator's path (Twin.sleep_now: the same save, no idle wait)."""
    tw.player("--play-seconds", "4", "--rate", "10")
    resolved = tw.wait_for("resolved", BOOT, source="player", after=after)
    tw.wait_for("connected", 30, source="player", after=resolved["t"])
    tw.wait_for("left", 40, source="player", after=resolved["t"])
    tw.sleep_now()
    tw.wait_instances(0, 150)


def maintenance_instances(tw: Twin, before: set[str]) -> list:
    return [i for iid, i in tw.instances.items() if iid not in before]


def assert_a_maintenance_boot(tw: Twin, inst) -> None:
    """No game ran, DNS was never pointed at it, and it completed its own termination hook."""
    end = time.time() + 60  # the group is at zero; the twin may still be powering it off
    while time.time() < end and inst.state != "Terminated":
        time.sleep(0.2)
    assert inst.game_started == 0, "no game in a maintenance boot"
    assert inst.state == "Terminated" and inst.hook_result == "CONTINUE", (inst.state, inst.hook_result)
    assert not [e for e in tw.named("dns_updated", "agent") if e.get("instance") == inst.iid]
    assert tw.record_values() == ["0.0.0.0"]
    assert "no game and no agent this boot" in maintenance_log(tw, inst.iid)


def test_import_a_world_then_wake_and_the_game_loads_it(tmp_path):
    with Twin(GAME_USER) as tw:
        source = a_world(tmp_path / "my-world", world_name(tw), sessions=41)
        before = set(tw.instances)
        run = tw.world("import", str(source))
        assert run.returncode == 0, run.stderr[-3000:]
        print(f"import of {sum(1 for _ in source.rglob('*'))} entries: {run.seconds:.1f} s (command, boot to zero)")
        assert "Imported" in run.stdout and "The next wake plays it." in run.stdout, run.stdout
        (inst,) = maintenance_instances(tw, before)
        assert_a_maintenance_boot(tw, inst)
        # Byte for byte, owned by the game's user, and nothing left in the bucket.
        assert tree(tw.data_dir()) == tree(source)
        owners = {(p.stat().st_uid, p.stat().st_gid) for p in [tw.data_dir(), *tw.data_dir().rglob("*")]}
        assert owners == {OWNER}, owners
        assert transfer_keys(tw) == []
        assert tw.desired() == 0

        # The next wake plays it: the game loads the imported save.
        log = wake_and_play(tw)
        assert "loaded save" in log and "sessions=41" in log, log


def test_play_sleep_export_and_the_archive_matches_the_save_byte_for_byte(tmp_path):
    with Twin() as tw:
        play_once(tw)
        save = tw.save_file().read_bytes()
        assert b'"sessions": 1' in save
        expected = tree(tw.data_dir())
        before = set(tw.instances)
        out = tmp_path / "valheim-world.tar.gz"
        run = tw.world("export", str(out))
        assert run.returncode == 0, run.stderr[-3000:]
        print(f"export of {len(expected)} files: {run.seconds:.1f} s, archive {out.stat().st_size} bytes")
        assert f"to {out}" in run.stdout and hashlib.sha256(out.read_bytes()).hexdigest() in run.stdout
        (inst,) = maintenance_instances(tw, before)
        assert_a_maintenance_boot(tw, inst)
        unpacked = tmp_path / "unpacked"
        with tarfile.open(out) as tar:
            tar.extractall(unpacked, filter="data")
        assert tree(unpacked) == expected
        assert (unpacked / "worlds" / tw.save_file().name).read_bytes() == save
        assert tw.save_file().read_bytes() == save, "the export changed nothing"
        assert transfer_keys(tw) == []

        # An export is what import takes: a second run would refuse an existing file.
        again = tw.world("export", str(out))
        assert again.returncode == 2 and f"{out} exists already" in again.stderr


def test_restore_yesterdays_recovery_point_and_the_next_wake_plays_it():
    with Twin() as tw:
        play_once(tw)
        yesterday = dt.datetime.now(dt.timezone.utc).replace(hour=5, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
        tw.backup_now(yesterday)
        first = tw.save_file().read_bytes()
        assert b'"sessions": 1' in first
        play_once(tw, after=time.time())
        second = tw.save_file().read_bytes()
        assert b'"sessions": 2' in second
        tw.backup_now(yesterday + dt.timedelta(days=1))

        listed = tw.world("backups")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.count("COMPLETED") == 2 and f"{yesterday:%Y-%m-%d}" in listed.stdout, listed.stdout

        before = set(tw.instances)
        run = tw.world("restore", "--date", f"{yesterday:%Y-%m-%d}")
        assert run.returncode == 0, run.stderr[-3000:]
        print(f"restore: {run.seconds:.1f} s (restore job, maintenance boot, back to zero)")
        assert f"Restored the backup of {yesterday:%Y-%m-%d}" in run.stdout, run.stdout
        (inst,) = maintenance_instances(tw, before)
        assert_a_maintenance_boot(tw, inst)
        assert tw.save_file().read_bytes() == first
        # The world it replaced is kept, and the restore's own folder is gone.
        root = tw.data_dir().parent
        (kept,) = (root / "previous").iterdir()
        assert kept.name.endswith("-before-restore")
        assert (kept / "worlds" / tw.save_file().name).read_bytes() == second
        assert f"/previous/{kept.name}" in run.stdout
        assert not list(root.glob("aws-backup-restore_*"))

        assert "sessions=1" in wake_and_play(tw)


def test_an_import_while_a_player_is_on_is_refused_and_nothing_changes(tmp_path):
    with Twin() as tw:
        source = a_world(tmp_path / "my-world", world_name(tw), sessions=99)
        tw.player("--play-seconds", "150", "--rate", "10")
        resolved = tw.wait_for("resolved", BOOT, source="player")
        (inst,) = tw.active()
        tw.wait_for("connected", 30, source="player", after=resolved["t"])
        # Once the agent has published a player count, the refusal names it.
        assert tw.wait_for_players_counted(1), "the agent counts the player"
        before = tree(tw.data_dir())
        run = tw.world("import", str(source))
        assert run.returncode == 2, run
        assert "the server is up" in run.stderr and "players online: 1" in run.stderr, run.stderr
        assert "Nothing was changed" in run.stderr
        assert tree(tw.data_dir()) == before
        assert transfer_keys(tw) == []
        assert tw.active() == [inst] and inst.game_started == 1, "the game was not touched"
        assert not tw.named("left", "player"), "the player is still on"


def test_an_import_killed_halfway_leaves_the_old_world_playable(tmp_path):
    with Twin() as tw:
        play_once(tw)
        old = tree(tw.data_dir())
        # Big enough that the instance is killed while it unpacks: 160 files of 512 KiB.
        source = a_world(tmp_path / "big-world", world_name(tw), sessions=77, blobs=160, blob_bytes=512 * 1024)
        before = set(tw.instances)
        result: dict = {}
        command = threading.Thread(target=lambda: result.update(run=tw.world("import", str(source))), daemon=True)
        command.start()
        # The moment the new world's folder has files in it, the instance dies (power, hardware).
        root = tw.data_dir().parent
        end = time.time() + 300
        incoming = []
        while time.time() < end:
            incoming = [p for p in root.glob(".cm-incoming-*") if any(p.rglob("mod-*.bin"))]
            if incoming:
                break
            time.sleep(0.01)
        assert incoming, "the import never started unpacking"
        (inst,) = maintenance_instances(tw, before)
        sh("docker", "kill", inst.container)
        unpacked = len(list(incoming[0].rglob("mod-*.bin")))
        print(f"killed the instance with {unpacked} of 160 mod files unpacked")
        assert unpacked < 160, "killed halfway, not after"
        asg = tw.client("autoscaling", direct=True)
        asg.terminate_instance_in_auto_scaling_group(InstanceId=inst.iid, ShouldDecrementDesiredCapacity=True)
        # Nobody completes a dead instance's termination hook; the operator abandons it (or its
        # timeout would, 10 minutes later).
        end = time.time() + 60
        while time.time() < end and inst.state not in ("Terminating:Wait", "Terminated"):
            time.sleep(0.2)
        tw.client("autoscaling").complete_lifecycle_action(
            AutoScalingGroupName=tw.deployed.group, LifecycleHookName="container-manager-termination",
            InstanceId=inst.iid, LifecycleActionResult="ABANDON")
        command.join(120)
        run = result["run"]
        assert run.returncode == 1, run
        assert f"the maintenance boot on {inst.iid} ended without a result" in run.stderr, run.stderr
        assert "the previous world is unchanged" in run.stderr
        assert tree(tw.data_dir()) == old, "the old world, as it was"
        assert "transfer/in/job.json" not in transfer_keys(tw), "the job is not waiting for the next boot"
        tw.wait_instances(0, 60)

        # The old world plays.
        assert "sessions=1" in wake_and_play(tw)


def test_the_host_mount_is_there_with_the_containers_owner(tmp_path):
    with Twin(GAME_USER) as tw:
        # A session command that does what a Session Manager shell would: look at /mnt/world.
        session = tmp_path / "session"
        session.write_text(f"#!/bin/sh\nexec docker exec \"{tw.names.prefix}-$1\" stat -c '%u:%g %m' /mnt/world\n")
        session.chmod(0o755)
        tw.player("--play-seconds", "30", "--rate", "10")
        resolved = tw.wait_for("resolved", BOOT, source="player")
        (inst,) = tw.active()
        tw.wait_for("connected", 30, source="player", after=resolved["t"])
        fstab = sh("docker", "exec", inst.container, "cat", "/etc/fstab").stdout
        fs, ap = tw.deployed.physical["DataFileSystem"], tw.deployed.physical["HostAccessPoint"]
        assert f"{fs}:/ /mnt/world efs _netdev,noresvport,tls,iam,accesspoint={ap} 0 0" in fstab, fstab
        assert sh("docker", "exec", inst.container, "stat", "-c", "%u:%g", "/mnt/world").stdout.strip() == "1000:1000"
        # What the game writes, the operator sees; what the operator writes (as root) is the game's.
        end = time.time() + 60
        while time.time() < end and not tw.save_file().exists():
            time.sleep(1)
        sh("docker", "exec", inst.container, "sh", "-c", "echo 'motd=edited by the operator' > /mnt/world/notes.txt")
        notes = tw.data_dir() / "notes.txt"
        assert notes.read_text() == "motd=edited by the operator\n"
        assert (notes.stat().st_uid, notes.stat().st_gid) == OWNER
        shell = tw.world("shell", env={"CM_SESSION_COMMAND": str(session)})
        assert shell.returncode == 0, shell.stderr
        assert shell.stdout.strip() == "1000:1000 /mnt/world" and inst.iid in shell.stderr, shell
        tw.wait_for("left", 60, source="player")
        tw.wait_instances(0, 150)

        # Asleep: the shell command starts the instance with no game, the world mounted.
        before = set(tw.instances)
        held = tw.world("shell", "--minutes", "5", env={"CM_SESSION_COMMAND": str(session)})
        assert held.returncode == 0, held.stderr[-3000:]
        assert "1000:1000 /mnt/world" in held.stdout and "the server sleeps again" in held.stdout.lower(), held
        (inst2,) = maintenance_instances(tw, before)
        assert_a_maintenance_boot(tw, inst2)
        print(f"a shell on a sleeping server: {held.seconds:.1f} s from the command to zero instances")
