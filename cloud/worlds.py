"""The world's safety for cloud/deploy.sh (docs/cloud.md, "Keeping your world"): which world a
deploy plays, checked before anything changes. With the AWS CLI, standard library only.

  python3 cloud/worlds.py before PARAMS.json --region R --stack S [--adopt-world] [--replace-world]
      Finds the worlds this server name left behind (data file systems named
      container-manager-<ServerName>-data, and recovery points in its retained backup vaults) and
      checks the world the deploy asks for: ExistingFileSystemId (from the file, else the stack's),
      or a new one. Prints shell assignments for deploy.sh (world_override, world_before) or exits
      2 with the reason and the way on.
  python3 cloud/worlds.py changeset PARAMS.json --region R --stack S --change-set ARN [--replace-world]
                                                                   [--empty-world] [--restart-game]
      Exits 2 when the change set replaces or removes the stack's own file system (DataFileSystem),
      or changes the game's task definition while the server is up (ECS would restart the game).
      With --replace-world, a replacement moves the world across (deploy.sh exports it before the
      change and imports it after), which needs the server asleep; --empty-world starts the new
      file system empty instead. Prints a shell assignment for deploy.sh: world_move (the file
      system to move the world from, or nothing).

Exit codes: 0 go on; 1 an AWS call failed; 2 refused (nothing was changed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import subprocess
import sys


class Refused(Exception):
    pass


class Failed(Exception):
    pass


def aws(region: str, *args: str, missing_ok: str = "") -> dict:
    r = subprocess.run(["aws", *args, "--region", region, "--output", "json"], capture_output=True, text=True)
    if r.returncode != 0:
        if missing_ok and missing_ok in r.stderr:
            return {}
        last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed"
        raise Failed(f"aws {' '.join(args[:2])}: {last}")
    return json.loads(r.stdout) if r.stdout.strip() else {}


def day(v: object) -> str:
    if isinstance(v, (int, float)):
        return dt.datetime.fromtimestamp(v, dt.timezone.utc).strftime("%Y-%m-%d")
    return str(v)[:10]


def size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def kind(fs: dict) -> str:
    return "one-zone" if fs.get("AvailabilityZoneName") else "regional"


def params_of(path: str) -> dict[str, str]:
    return {i["ParameterKey"]: i["ParameterValue"] for i in json.load(open(path))}


class Worlds:
    def __init__(self, params_file: str, region: str, stack: str) -> None:
        self.file, self.region, self.stack = params_file, region, stack
        self.params = params_of(params_file)
        self.server = self.params["ServerName"]
        desc = aws(region, "cloudformation", "describe-stacks", "--stack-name", stack, missing_ok="does not exist")
        st = (desc.get("Stacks") or [None])[0]
        self.stack_params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in (st or {}).get("Parameters", [])}
        outputs = {o["OutputKey"]: o["OutputValue"] for o in (st or {}).get("Outputs", []) or []}
        # The world the stack plays now (none for a stack that is only its artifact bucket).
        self.current = outputs.get("DataFileSystemId", "")
        self.account = aws(region, "sts", "get-caller-identity").get("Account", "")

    def file_systems(self) -> list[dict]:
        name = f"container-manager-{self.server}-data"
        out = aws(self.region, "efs", "describe-file-systems").get("FileSystems", [])
        return sorted((f for f in out if f.get("Name") == name or any(
            t.get("Key") == "Name" and t.get("Value") == name for t in f.get("Tags", []))),
            key=lambda f: str(f.get("CreationTime")))

    def recovery_points(self) -> dict[str, list[dict]]:
        """The completed recovery points in this server's vaults, by file system id."""
        prefix = f"container-manager-{self.server}-"
        vaults = [v["BackupVaultName"] for v in aws(self.region, "backup", "list-backup-vaults").get("BackupVaultList", [])
                  if v["BackupVaultName"].startswith(prefix)]
        points: dict[str, list[dict]] = {}
        for vault in vaults:
            for p in aws(self.region, "backup", "list-recovery-points-by-backup-vault",
                         "--backup-vault-name", vault).get("RecoveryPoints", []):
                if p.get("Status", "COMPLETED") in ("COMPLETED", "AVAILABLE"):
                    points.setdefault(p.get("ResourceArn", "").rsplit("/", 1)[-1], []).append(p | {"vault": vault})
        return points

    def describe(self, fs: dict, points: dict[str, list[dict]]) -> str:
        where = fs.get("AvailabilityZoneName") or "regional"
        mine = points.get(fs["FileSystemId"], [])
        backups = (f"{len(mine)} recovery points, the latest of {max(day(p['CreationDate']) for p in mine)}"
                   if mine else "no recovery point")
        return (f"{fs['FileSystemId']} ({'one-zone ' + where if fs.get('AvailabilityZoneName') else where}, "
                f"{size(float((fs.get('SizeInBytes') or {}).get('Value', 0)))}, made {day(fs.get('CreationTime'))}): {backups}")

    def before(self, adopt: bool, replace: bool) -> dict[str, str]:
        systems = self.file_systems()
        points = self.recovery_points()
        by_id = {f["FileSystemId"]: f for f in systems}
        left = [f for f in systems if f["FileSystemId"] != self.current and f.get("LifeCycleState") == "available"]
        for fs_id, mine in points.items():
            if fs_id not in by_id:
                latest = max(mine, key=lambda p: str(p["CreationDate"]))
                log(f"note: the recovery points of a deleted world {fs_id} are kept in {latest['vault']} "
                    f"({len(mine)}, the latest of {day(latest['CreationDate'])}); a restore to a new file system "
                    "(aws backup start-restore-job) can bring it back, then ExistingFileSystemId adopts it")
        given = "ExistingFileSystemId" in self.params
        want = self.params.get("ExistingFileSystemId", "") if given else self.stack_params.get("ExistingFileSystemId", "")
        if adopt and not want:
            if self.current:
                raise Refused(f"--adopt-world: the stack {self.stack} already plays its world {self.current}")
            if not left:
                raise Refused(f"--adopt-world: no world of {self.server} is left in {self.region} to adopt")
            if len(left) > 1:
                raise Refused(f"--adopt-world: {len(left)} worlds of {self.server} are left; name the one to play "
                              "with ExistingFileSystemId in " + self.file + ":\n  "
                              + "\n  ".join(self.describe(f, points) for f in left))
            want = left[0]["FileSystemId"]
            log(f"adopting the world {self.describe(left[0], points)}")
        out = {"world_override": f"ExistingFileSystemId={want}" if want and not given else "",
               "world_before": self.current}
        if want:
            fs = by_id.get(want) or next(iter(aws(self.region, "efs", "describe-file-systems", "--file-system-id", want,
                                                  missing_ok="FileSystemNotFound").get("FileSystems", [])), None)
            if fs is None:
                raise Refused(f"{self.file}: ExistingFileSystemId: no file system {want} in {self.region}"
                              + (": the worlds of " + self.server + " here are " + ", ".join(f["FileSystemId"] for f in systems)
                                 if systems else f" (and no world of {self.server} is left here)"))
            if fs.get("LifeCycleState") != "available":
                raise Refused(f"{self.file}: ExistingFileSystemId: {want} is {fs.get('LifeCycleState')}, not available")
            wanted_kind = self.params.get("FileSystemType") or self.stack_params.get("FileSystemType") or "one-zone"
            if kind(fs) != wanted_kind:
                raise Refused(f"{self.file}: ExistingFileSystemId: {want} is a {kind(fs)} file system, but FileSystemType "
                              f"is {wanted_kind}: set FileSystemType to {kind(fs)} (a file system keeps its type)")
            if want != self.current and fs.get("NumberOfMountTargets", 0):
                raise Refused(f"{self.file}: ExistingFileSystemId: {want} has {fs['NumberOfMountTargets']} mount "
                              "target(s): another stack still uses it; destroy that stack first")
            if self.current and want != self.current and not replace:
                raise Refused(f"this deploy would move the server from its world {self.current} to {want}. "
                              f"{self.current} would be kept, unused. Nothing was changed; to go ahead, pass --replace-world")
        elif self.current and self.stack_params.get("ExistingFileSystemId") and not replace:
            raise Refused(f"{self.file} sets ExistingFileSystemId to \"\": the stack would make a new, empty world "
                          f"instead of {self.current}, which would be kept, unused. Nothing was changed; remove the "
                          "line to keep the world, or pass --replace-world")
        elif not self.current and left and not replace:
            raise Refused(
                f"a world of {self.server} is left in {self.region} from an earlier stack, and this deploy would "
                f"start a new, empty one beside it:\n  " + "\n  ".join(self.describe(f, points) for f in left)
                + f"\nTo keep playing it: pass --adopt-world"
                + (f", or add {{\"ParameterKey\": \"ExistingFileSystemId\", \"ParameterValue\": \"{left[-1]['FileSystemId']}\"}} "
                   f"to {self.file}" if len(left) == 1 else f" after naming one in {self.file} as ExistingFileSystemId")
                + ".\nTo start a new, empty world (the old one stays, and is still billed): pass --replace-world."
                + "\nNothing was changed.")
        elif not self.current and left:
            log("starting a new, empty world (--replace-world); kept beside it: "
                + "; ".join(self.describe(f, points) for f in left))
        return out

    def game_running(self) -> tuple[str, int | None] | None:
        """The instance of this server's group that is in service or on its way, and the players
        the agent last counted (None when it has published no count in 5 minutes); None when the
        server sleeps."""
        group = f"container-manager-{self.server}"
        groups = aws(self.region, "autoscaling", "describe-auto-scaling-groups",
                     "--auto-scaling-group-names", group).get("AutoScalingGroups", [])
        up = [i for g in groups for i in g.get("Instances", [])
              if not i.get("LifecycleState", "").startswith(("Terminat", "Warmed"))]
        if not up:
            return None
        now = dt.datetime.now(dt.timezone.utc)
        stats = aws(self.region, "cloudwatch", "get-metric-statistics",
                    "--namespace", self.params.get("MetricsNamespace", "ContainerManager"),
                    "--metric-name", "PlayersOnline", "--dimensions", f"Name=AutoScalingGroupName,Value={group}",
                    "--start-time", (now - dt.timedelta(minutes=5)).isoformat(), "--end-time", now.isoformat(),
                    "--period", "60", "--statistics", "Maximum").get("Datapoints", [])
        latest = max(stats, key=lambda d: str(d.get("Timestamp")), default=None)
        return up[0]["InstanceId"], (int(latest["Maximum"]) if latest else None)

    def changeset(self, arn: str, replace: bool, restart_game: bool = False, empty: bool = False) -> dict[str, str]:
        cs = aws(self.region, "cloudformation", "describe-change-set", "--change-set-name", arn)
        # The world first: a move needs the server asleep whatever else the change does.
        world = self.world_change(cs, replace, empty)
        # A new task definition: the ECS service rolls it out at once, and with one task per
        # instance and MinimumHealthyPercent 0 it stops the running game first, with SIGTERM and
        # without the pre-stop command (docs/aws-sources.md §16).
        new_task = any(c.get("ResourceChange", {}).get("LogicalResourceId") == "TaskDefinition"
                       and c.get("ResourceChange", {}).get("Action") in ("Modify", "Add", "Remove")
                       for c in cs.get("Changes", []))
        if new_task:
            running = self.game_running()
            if running and not restart_game:
                instance, players = running
                who = ("players unknown: the agent has published no count in 5 minutes" if players is None
                       else f"{players} player(s) online")
                raise Refused(
                    f"the server is up ({instance}, {who}), and this deploy changes the game's task definition: "
                    "ECS would restart the game at once, without its pre-stop command, so the players would be "
                    "thrown out and the world saved only by the game's own SIGTERM handling. Nothing was changed. "
                    f"Deploy while it sleeps (cloud/cm sleep {self.file}, which saves the world first), or pass "
                    "--restart-game")
            if running:
                log(f"this deploy restarts the running game on {running[0]} (--restart-game)")
        return world

    def world_change(self, cs: dict, replace: bool, empty: bool) -> dict[str, str]:
        """What the change set does to the stack's own file system: refused (Refused), gone ahead
        with a new, empty world, or a world to move across ({"world_move": its file system})."""
        for change in cs.get("Changes", []):
            rc = change.get("ResourceChange", {})
            if rc.get("LogicalResourceId") != "DataFileSystem":
                continue
            action, replacement = rc.get("Action"), rc.get("Replacement", "False")
            if action == "Modify" and replacement in ("True", "Conditional"):
                what = "replaces" if replacement == "True" else "may replace"
            elif action == "Remove" and self.params.get("ExistingFileSystemId", self.stack_params.get(
                    "ExistingFileSystemId", "")) != self.current:
                what = "removes"
            else:
                continue
            # (A parameter the stack took at its default may be missing from describe-stacks.)
            changed = [f"{k} {self.stack_params.get(k, 'at its default')!r} -> {v!r}"
                       for k, v in sorted(self.params.items())
                       if self.stack_params.get(k) != v and not k.startswith("AgentPackage")]
            if replace and (empty or action == "Remove"):
                log(f"this deploy {what} the world's file system {self.current} (--replace-world"
                    + (", --empty-world" if empty and action != "Remove" else "") + "): the server "
                    f"starts on a new, empty world, and {self.current} is kept, unused")
                return {"world_move": ""}
            if replace:
                # The copy runs in maintenance boots (cloud/world.sh), which work only while the
                # server sleeps: checked here, before anything changes.
                running = self.game_running()
                if running:
                    instance, players = running
                    who = ("players unknown" if players is None else f"{players} player(s) online")
                    raise Refused(
                        f"this deploy {what} the world's file system {self.current} (--replace-world), and the "
                        "world is moved to the new one by maintenance boots, which run only while the server "
                        f"sleeps; it is up ({instance}, {who}). Nothing was changed. Run: cloud/cm sleep "
                        f"{self.file} (it saves the world first), then this deploy again; or add --empty-world "
                        f"to start the new file system empty, keeping {self.current} as it is")
                log(f"this deploy {what} the world's file system {self.current} (--replace-world): the world is "
                    "exported first, then imported into the new file system and checked file by file; "
                    f"{self.current} is kept")
                return {"world_move": self.current}
            raise Refused(
                f"this deploy {what} the world's file system {self.current} (DataFileSystem, {action}"
                + (f", Replacement {replacement}" if action == "Modify" else "") + "): the server would start on a "
                f"new, empty world, and {self.current} would be kept, unused."
                + (f" Changed: {'; '.join(changed)}." if changed else "")
                + f" Nothing was changed. To keep the world, undo that change in {self.file}; to go ahead and move "
                "the world to the new file system (the old one is kept), pass --replace-world (docs/cloud.md, "
                "\"Keeping your world\")")
        return {"world_move": ""}


def log(msg: str) -> None:
    print(f"deploy: {msg}", file=sys.stderr)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="cloud/worlds.py")
    ap.add_argument("step", choices=("before", "changeset"))
    ap.add_argument("params")
    ap.add_argument("--region", required=True)
    ap.add_argument("--stack", required=True)
    ap.add_argument("--change-set")
    ap.add_argument("--adopt-world", action="store_true")
    ap.add_argument("--replace-world", action="store_true")
    ap.add_argument("--restart-game", action="store_true")
    ap.add_argument("--empty-world", action="store_true")
    args = ap.parse_args(argv)
    try:
        w = Worlds(args.params, args.region, args.stack)
        if args.step == "before":
            out = w.before(args.adopt_world, args.replace_world)
        else:
            out = w.changeset(args.change_set, args.replace_world, args.restart_game, args.empty_world)
        for k, v in out.items():
            print(f"{k}={shlex.quote(v)}")
        return 0
    except Refused as e:
        log(f"error: {e}")
        return 2
    except Failed as e:
        log(f"error: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
