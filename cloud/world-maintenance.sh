#!/bin/bash
# A maintenance boot's work, on the instance (docs/cloud.md, "Your world's files").
#
# cloud/world.sh uploads this file with each job to the stack's bucket (transfer/in/), so the
# instance always runs the version of the command that posted the job. The instance's gate
# (/usr/local/sbin/container-manager-maintenance, from the launch template's user-data) runs it
# as root at boot, before ECS and the agent start: no game has the world open while it works.
#
#   world-maintenance.sh JOB.json
#
# JOB.json: {"id", "action": import|export|restore|hold, "archive", "sha256", "minutes"}.
# From the gate: CM_BUCKET, CM_REGION, CM_FILE_SYSTEM, CM_GROUP, CM_HOOK, CM_NAMESPACE, CM_UID,
# CM_GID.
#
# What it does, whatever happens: it claims the job (transfer/out/<id>/claimed.json, and the job
# leaves transfer/in/ so that no later boot runs it again), publishes the agent's heartbeat while
# it works (the heartbeat alarm stays the backstop), writes transfer/out/<id>/result.json, then
# sets the group to zero and completes its own termination hook.
#
# The world is /data on the file system (HostAccessPoint and the game's access point both root
# there). A new world is written to /.cm-incoming-<id> and switched in at the end with two
# renames; the world it replaces moves to /previous/<time>-before-<action> (the newest 3 kept).
set -Eeuo pipefail

job_file=$1
mode=${2:-supervise}
root=/run/container-manager/efs
work=/run/container-manager/job
log() { echo "container-manager maintenance: $*"; }
field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' "$job_file" "$1"; }
id=$(field id)
action=$(field action)
out=s3://$CM_BUCKET/transfer/out/$id
export AWS_REGION=$CM_REGION AWS_DEFAULT_REGION=$CM_REGION

# The result, as JSON of string values: ok=true|false message=... and the action's figures.
write_result() {
    python3 -c 'import json, sys; print(json.dumps(dict(a.split("=", 1) for a in sys.argv[2:])), file=open(sys.argv[1], "w"))' \
        "$work/result.json" "action=$action" "$@"
}

imds() {
    local md token
    md=$(echo "${AWS_EC2_METADATA_SERVICE_ENDPOINT:-http://169.254.169.254}" | sed 's:/*$::')
    token=$(curl -sf -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "$md/latest/api/token" || true)
    curl -sf -H "X-aws-ec2-metadata-token: $token" "$md/latest/meta-data/$1" || true
}

# ------------------------------------------------------------------------------- the work itself
if [[ $mode == --work ]]; then
    step="mounting the file system"
    trap 'write_result ok=false "message=failed while $step; the previous world is unchanged"' ERR

    mkdir -p "$root"
    mountpoint -q "$root" || mount -t efs -o tls,iam "$CM_FILE_SYSTEM:/" "$root"

    # A switch that an earlier boot did not finish. Once the old world has moved to previous/,
    # the new one goes in (EFS recreates an access point's missing root directory, empty, at the
    # next mount through it, so /data may be there, empty: docs/world-sources.md); before that,
    # the old world stays and the new one is dropped below.
    if [[ -f $root/.cm-switch ]]; then
        { read -r new; read -r prev; } < "$root/.cm-switch"
        if [[ -n $prev && -d $prev && -d $new ]]; then
            rmdir "$root/data" 2>/dev/null || true
            if [[ ! -e $root/data ]]; then
                mv "$new" "$root/data"
                log "finished a switch an earlier boot left halfway: the new world is in; the one before is $prev"
            else
                log "warning: a switch was left halfway and /data is not empty: kept /data, the new world at $new and the one before at $prev"
                mv "$new" "$root/previous/$(basename "$new")-unfinished"
            fi
        fi
        rm -f "$root/.cm-switch"
    fi
    for stale in "$root"/.cm-incoming-*; do
        [[ -e $stale ]] || continue
        log "removing $stale, which an interrupted job left (it was never the world)"
        rm -rf "$stale"
    done

    switch_in() { # the new world's folder: it becomes /data, the world before it goes to previous/
        local new=$1 prev
        step="switching the new world in"
        chown -R "$CM_UID:$CM_GID" "$new"
        chmod 0775 "$new"
        sync
        prev=$root/previous/$(date -u +%Y-%m-%dT%H%M%SZ)-before-$action
        mkdir -p "$root/previous"
        printf '%s\n%s\n' "$new" "$prev" > "$root/.cm-switch"
        sync
        # An empty /data (no world yet: the host mount made it) is not worth keeping.
        rmdir "$root/data" 2>/dev/null || true
        if [[ -d $root/data ]]; then mv "$root/data" "$prev"; else prev=""; fi
        mv "$new" "$root/data"
        rm -f "$root/.cm-switch"
        sync
        # The newest 3 earlier worlds stay; the daily backups hold the rest.
        find "$root/previous" -mindepth 1 -maxdepth 1 -type d | sort | head -n -3 | xargs -r rm -rf
        previous=${prev#"$root"}
    }
    count() { find "$1" -type f | wc -l | tr -d ' '; }
    # Every file of a world, as JSON: {"relative/path": ["sha256", bytes]}; the deploy command
    # compares the one an export wrote with the one an import wrote (a world moved across).
    manifest() {
        python3 - "$1" <<'PY'
import hashlib, json, os, sys
top, out = sys.argv[1], {}
for folder, _, names in os.walk(top):
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isfile(path) and not os.path.islink(path):
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            out[os.path.relpath(path, top)] = [h.hexdigest(), os.path.getsize(path)]
print(json.dumps(out, sort_keys=True))
PY
    }
    size() { du -sb "$1" | cut -f1; }
    previous=""

    case $action in
        import)
            archive=$(field archive) want=$(field sha256)
            new=$root/.cm-incoming-$id
            step="downloading and unpacking s3://$CM_BUCKET/$archive"
            log "$step into $new"
            rm -rf "$new" "$work/fifo"
            mkdir -p "$new"
            mkfifo "$work/fifo"
            tar -xzf "$work/fifo" -C "$new" --no-same-owner &
            untar=$!
            got=$(aws s3 cp --quiet "s3://$CM_BUCKET/$archive" - | tee "$work/fifo" | sha256sum | cut -d' ' -f1)
            wait "$untar"
            step="checking the archive's sha256"
            if [[ $got != "$want" ]]; then
                rm -rf "$new"
                write_result ok=false "message=the archive arrived with sha256 $got, not $want; nothing was changed"
                exit 0
            fi
            files=$(count "$new") bytes=$(size "$new")
            step="listing the new world's files"
            manifest "$new" | aws s3 cp --quiet - "$out/manifest.json"
            switch_in "$new"
            log "imported $files files ($bytes bytes); the world before is $previous"
            write_result ok=true "message=imported $files files ($bytes bytes)" "files=$files" "bytes=$bytes" \
                "sha256=$got" "previous=$previous" "manifest=transfer/out/$id/manifest.json"
            ;;
        export)
            step="packing the world"
            if [[ ! -d $root/data ]]; then
                write_result ok=false "message=there is no world yet: the game has never saved"
                exit 0
            fi
            files=$(count "$root/data") bytes=$(size "$root/data")
            step="listing the world's files"
            manifest "$root/data" | aws s3 cp --quiet - "$out/manifest.json"
            log "packing $files files ($bytes bytes) to $out/world.tar.gz"
            rm -f "$work/fifo" "$work/sha256"
            mkfifo "$work/fifo"
            (sha256sum < "$work/fifo" | cut -d' ' -f1 > "$work/sha256") &
            summer=$!
            step="uploading the world"
            tar -czf - -C "$root/data" . | tee "$work/fifo" | aws s3 cp --quiet - "$out/world.tar.gz"
            wait "$summer"
            write_result ok=true "message=exported $files files ($bytes bytes)" "files=$files" "bytes=$bytes" \
                "sha256=$(cat "$work/sha256")" "archive=transfer/out/$id/world.tar.gz" \
                "manifest=transfer/out/$id/manifest.json" \
                "archive_bytes=$(aws s3api head-object --bucket "$CM_BUCKET" --key "transfer/out/$id/world.tar.gz" --query ContentLength --output text)"
            ;;
        restore)
            # AWS Backup restores into the same file system under /aws-backup-restore_<time>/,
            # with the file system's own layout below it (docs/world-sources.md).
            step="finding the restored world"
            restored=""
            for dir in "$root"/aws-backup-restore_*; do
                [[ -d $dir/data ]] || continue
                [[ -z $restored || $dir -nt $restored ]] && restored=$dir
            done
            if [[ -z $restored ]]; then
                write_result ok=false "message=no restored world (aws-backup-restore_*/data) on the file system; nothing was changed"
                exit 0
            fi
            new=$root/.cm-incoming-$id
            mv "$restored/data" "$new"
            rm -rf "$restored"
            files=$(count "$new") bytes=$(size "$new")
            switch_in "$new"
            log "restored $files files ($bytes bytes) from ${restored#"$root/"}; the world before is $previous"
            write_result ok=true "message=restored $files files ($bytes bytes)" "files=$files" "bytes=$bytes" \
                "previous=$previous"
            ;;
        hold)
            # A shell on a sleeping server: the world at /mnt/world, no game, until the command
            # lets go (transfer/in/<id>/release) or the job's minutes are up.
            step="holding the instance for the operator"
            end=$(($(date +%s) + $(field minutes) * 60))
            log "the world is at /mnt/world and no game runs; the instance stays up until released"
            while (($(date +%s) < end)); do
                aws s3api head-object --bucket "$CM_BUCKET" --key "transfer/in/$id/release" >/dev/null 2>&1 && break
                sleep 5
            done
            write_result ok=true "message=held for the operator"
            ;;
        *)
            write_result ok=false "message=unknown action '$action' (this instance's gate runs import, export, restore, hold)"
            ;;
    esac
    sync
    umount "$root" 2>/dev/null || true
    exit 0
fi

# ------------------------------------------------------------------------------- the supervisor
iid=$(imds instance-id)
mkdir -p "$work"
rm -f "$work/result.json"
log "job $id: $action, on $iid (no game and no agent this boot)"
printf '{"instance": "%s", "time": "%s"}' "$iid" "$(date -u +%FT%TZ)" | aws s3 cp --quiet - "$out/claimed.json" \
    || log "warning: could not write $out/claimed.json"
aws s3 rm --quiet "s3://$CM_BUCKET/transfer/in/job.json" \
    || log "warning: could not take the job out of transfer/in/ (a later boot may run it again)"

# The agent's heartbeat while the job runs: the heartbeat alarm scales an instance without one
# to zero after 10 minutes, which stays the backstop if this script itself dies.
(
    while :; do
        aws cloudwatch put-metric-data --namespace "$CM_NAMESPACE" --metric-name AgentHeartbeat \
            --dimensions "AutoScalingGroupName=$CM_GROUP" --value 1 >/dev/null 2>&1 || true
        sleep 60
    done
) &
heartbeat=$!

minutes=$(field minutes)
minutes=${minutes:-60}
if timeout "$((minutes * 60 + 60))" bash "$0" "$job_file" --work; then
    :
else
    rc=$?
    if [[ ! -s $work/result.json ]]; then
        if ((rc == 124)); then
            write_result ok=false "message=still working after $minutes minutes: stopped; the previous world is unchanged"
        else
            write_result ok=false "message=the job's script exited with $rc; the previous world is unchanged"
        fi
    fi
fi
[[ -s $work/result.json ]] || write_result ok=false "message=the job ended without a result"
log "result: $(cat "$work/result.json")"
for try in 1 2 3 4 5; do
    aws s3 cp --quiet "$work/result.json" "$out/result.json" && break
    sleep "$try"
done
kill "$heartbeat" 2>/dev/null || true

# Back to zero: the group terminates this instance, and its termination hook is completed here
# (the agent, which would complete it, did not run).
for try in 1 2 3 4 5; do
    aws autoscaling set-desired-capacity --auto-scaling-group-name "$CM_GROUP" --desired-capacity 0 && break
    sleep $((try * 2))
done
for ((i = 0; i < 120; i++)); do
    [[ $(imds autoscaling/target-lifecycle-state) == Terminated ]] && break
    sleep 1
done
aws autoscaling complete-lifecycle-action --auto-scaling-group-name "$CM_GROUP" --lifecycle-hook-name "$CM_HOOK" \
    --instance-id "$iid" --lifecycle-action-result CONTINUE \
    || log "could not complete the termination hook: the group terminates this instance after the hook's timeout"
log "job $id done: the instance goes back to zero"
