"""AWS Backup's recovery points and restores of EFS, which moto does not have (moto 5.2 keeps
vaults and plans only). The twin plays AWS Backup's daily job (`/_shim/backup`: a copy of the
file system's folder, registered as a recovery point with its creation date); this module
answers the three calls cloud/world.sh makes, as AWS Backup's REST API does:

  GET  /backup-vaults/<vault>/recovery-points/?byResourceArn=...   ListRecoveryPointsByBackupVault
  GET  /resources/<resource ARN>/recovery-points/                   ListRecoveryPointsByResource
  PUT  /restore-jobs                                               StartRestoreJob
  GET  /restore-jobs/<id>                                          DescribeRestoreJob

A restore into the source file system (newFileSystem=false) copies the recovery point into
`aws-backup-restore_<time>/` at the file system's root, in the background (RUNNING, then
COMPLETED), as docs/world-sources.md cites.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any


class Backup:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.points: list[dict[str, Any]] = []
        self.jobs: dict[str, dict[str, Any]] = {}

    # --- the twin's side: AWS Backup's scheduled job -----------------------------------------

    def add_point(self, vault: str, resource_arn: str, created: str, snapshot: str, efs_root: str) -> dict[str, Any]:
        """A recovery point of `resource_arn` made at `created` (ISO 8601): `snapshot` is the copy
        of the file system's folder; `efs_root` holds one folder per file system id."""
        arn = f"arn:aws:backup:us-east-1:123456789012:recovery-point:{uuid.uuid4()}"
        point = {"vault": vault, "RecoveryPointArn": arn, "ResourceArn": resource_arn, "CreationDate": created,
                 "Status": "COMPLETED", "ResourceType": "EFS", "snapshot": snapshot, "efs_root": efs_root}
        with self.lock:
            self.points.append(point)
        return {"RecoveryPointArn": arn}

    # --- the API ------------------------------------------------------------------------------

    def handles(self, method: str, path: str, authorization: str) -> bool:
        if "/backup/aws4_request" not in authorization:
            return False
        return (method == "GET" and re.fullmatch(r"/backup-vaults/[^/]+/recovery-points/?", path) is not None) \
            or (method == "GET" and re.fullmatch(r"/resources/.+/recovery-points/?", path) is not None) \
            or (method == "PUT" and path.rstrip("/") == "/restore-jobs") \
            or (method == "GET" and re.fullmatch(r"/restore-jobs/[^/]+", path) is not None)

    def call(self, method: str, raw_path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        u = urllib.parse.urlparse(raw_path)
        path, query = u.path, urllib.parse.parse_qs(u.query)
        m = re.fullmatch(r"/backup-vaults/([^/]+)/recovery-points/?", path)
        if method == "GET" and m:
            vault = urllib.parse.unquote(m.group(1))
            by = query.get("byResourceArn", [None])[0]
            with self.lock:
                points = [{k: v for k, v in p.items() if k not in ("vault", "snapshot", "efs_root")}
                          | {"BackupVaultName": vault}
                          for p in self.points if p["vault"] == vault and (by is None or p["ResourceArn"] == by)]
            for p in points:
                p["CreationDate"] = dt.datetime.fromisoformat(p["CreationDate"]).timestamp()
            return 200, {"RecoveryPoints": points}
        m = re.fullmatch(r"/resources/(.+)/recovery-points/?", path)
        if method == "GET" and m:
            resource = urllib.parse.unquote(m.group(1))
            with self.lock:
                points = [{k: v for k, v in p.items() if k not in ("vault", "snapshot", "efs_root", "ResourceArn")}
                          | {"BackupVaultName": p["vault"]} for p in self.points if p["ResourceArn"] == resource]
            for p in points:
                p["CreationDate"] = dt.datetime.fromisoformat(p["CreationDate"]).timestamp()
            return 200, {"RecoveryPoints": points}
        if method == "PUT":
            return self.start_restore(body)
        m = re.fullmatch(r"/restore-jobs/([^/]+)", path)
        if m:
            with self.lock:
                job = self.jobs.get(m.group(1))
            if job is None:
                return 404, {"__type": "ResourceNotFoundException", "Message": f"no restore job {m.group(1)}"}
            return 200, {k: v for k, v in job.items() if not k.startswith("_")}
        return 404, {"__type": "ResourceNotFoundException", "Message": f"{method} {path}"}

    def start_restore(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        arn = body.get("RecoveryPointArn")
        meta = body.get("Metadata") or {}
        if not body.get("IamRoleArn"):
            return 400, {"__type": "InvalidParameterValueException", "Message": "IamRoleArn is required"}
        with self.lock:
            point = next((p for p in self.points if p["RecoveryPointArn"] == arn), None)
            token = body.get("IdempotencyToken")
            same = next((j for j in self.jobs.values() if token and j["_token"] == token), None)
        if same is not None:
            return 200, {"RestoreJobId": same["RestoreJobId"]}
        if point is None:
            return 404, {"__type": "ResourceNotFoundException", "Message": f"no recovery point {arn}"}
        fs = meta.get("file-system-id")
        if meta.get("newFileSystem", "").lower() != "false" or not fs:
            return 400, {"__type": "InvalidParameterValueException",
                         "Message": "the twin restores into an existing file system only: newFileSystem=false, file-system-id"}
        if not point["ResourceArn"].endswith(f"/{fs}"):
            return 400, {"__type": "InvalidParameterValueException",
                         "Message": f"the recovery point is of {point['ResourceArn']}, not {fs}"}
        job_id = str(uuid.uuid4()).upper()
        now = time.time()
        job = {"RestoreJobId": job_id, "RecoveryPointArn": arn, "Status": "PENDING", "CreationDate": now,
               "ResourceType": "EFS", "IamRoleArn": body["IamRoleArn"], "_token": token}
        with self.lock:
            self.jobs[job_id] = job
        threading.Thread(target=self._restore, args=(job, point, fs, meta), daemon=True).start()
        return 200, {"RestoreJobId": job_id}

    def _restore(self, job: dict[str, Any], point: dict[str, Any], fs: str, meta: dict[str, str]) -> None:
        time.sleep(1)
        with self.lock:
            job["Status"] = "RUNNING"
        try:
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H-%M-%S-%f")[:-3] + "Z"
            target = Path(point["efs_root"]) / fs / f"aws-backup-restore_{stamp}"
            # cp -a: owners, modes and times as they were, as AWS Backup restores them. An
            # item-level restore keeps each item's path below the restore folder.
            items = json.loads(meta.get("ItemsToRestore") or "[]")
            if not items:
                subprocess.run(["cp", "-a", point["snapshot"], str(target)], check=True, capture_output=True, timeout=600)
            for item in items:
                source = Path(point["snapshot"]) / item.lstrip("/")
                (target / item.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
                subprocess.run(["cp", "-a", str(source), str(target / item.lstrip("/"))], check=True,
                               capture_output=True, timeout=600)
            time.sleep(1)
            with self.lock:
                job.update(Status="COMPLETED", CompletionDate=time.time(), CreatedResourceArn=point["ResourceArn"])
        except Exception as e:  # noqa: BLE001 - reported as AWS Backup would
            with self.lock:
                job.update(Status="FAILED", StatusMessage=repr(e))
