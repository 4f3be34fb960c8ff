#!/usr/bin/env bash
# The operator's hands on the world (docs/cloud.md, "Your world's files"). With the AWS CLI's
# credentials, against a stack that cloud/deploy.sh made:
#
#   cloud/world.sh import  PARAMS.json FOLDER|ARCHIVE.tar.gz   the world becomes that one
#   cloud/world.sh export  PARAMS.json [FILE.tar.gz]           the current world, to a file
#   cloud/world.sh backups PARAMS.json                         the recovery points to restore
#   cloud/world.sh restore PARAMS.json [--date YYYY-MM-DD | --recovery-point ARN]
#                                                              a backup becomes the world (default: the latest)
#   cloud/world.sh shell   PARAMS.json [--minutes N]           a Session Manager shell on the instance
#
#   Options: --region R, --stack NAME (as for deploy.sh), --wait (while the server is up, wait
#   until it sleeps instead of refusing), --timeout MINUTES (how long a job may run, default 60),
#   --manifest FILE (import, export: the world's files as the instance found them, every file's
#   sha256 and size, written to FILE as JSON; the deploy command compares two when it moves a world).
#
# import, export and restore work only while the server sleeps: the instance starts for the job
# alone (a maintenance boot, with no game and no agent), does it, and goes back to zero. While
# the server is up they refuse, and say how many players are on; nothing is changed. A new world
# is written beside the old one and switched in at the end, so an interrupted job leaves the old
# world as it was; the replaced world stays on the file system under previous/ (the newest 3).
# The bytes go through the stack's own bucket (transfer/, deleted when done, expired after a day).
#
# Needs the AWS CLI (v1 or v2), python3 and sha256sum; shell also needs the Session Manager
# plugin. Exit codes: 0 done; 1 an AWS call or the job failed; 2 usage, a bad file, or refused.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MAINTENANCE=$ROOT/cloud/world-maintenance.sh

log() { printf 'world: %s\n' "$*" >&2; }
die() { log "error: $1"; exit "${2:-1}"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2; }

(($# >= 2)) || usage
command=$1 params=$2
shift 2
region=${AWS_REGION:-${AWS_DEFAULT_REGION:-}}
stack="" wait_sleep=false minutes=60 source="" dest="" date="" point="" hold=60 manifest=""
while (($#)); do
    case $1 in
        --region) region=${2:?--region needs a value}; shift 2 ;;
        --stack) stack=${2:?--stack needs a value}; shift 2 ;;
        --wait) wait_sleep=true; shift ;;
        --timeout) minutes=${2:?--timeout needs minutes}; shift 2 ;;
        --date) date=${2:?--date needs YYYY-MM-DD}; shift 2 ;;
        --recovery-point) point=${2:?--recovery-point needs an ARN}; shift 2 ;;
        --latest) shift ;;
        --minutes) hold=${2:?--minutes needs a number}; shift 2 ;;
        --manifest) manifest=${2:?--manifest needs a file}; shift 2 ;;
        -h|--help) usage ;;
        -*) log "unknown option: $1"; usage ;;
        *)
            case $command in
                import) [[ -z $source ]] || usage; source=$1 ;;
                export) [[ -z $dest ]] || usage; dest=$1 ;;
                *) log "unexpected argument: $1"; usage ;;
            esac
            shift ;;
    esac
done
case $command in import | export | backups | restore | shell) ;; *) log "unknown command: $command"; usage ;; esac
[[ $minutes =~ ^[1-9][0-9]{0,3}$ ]] || die "--timeout: expected minutes from 1 to 9999, not '$minutes'" 2
[[ $hold =~ ^[1-9][0-9]{0,3}$ ]] || die "--minutes: expected minutes from 1 to 9999, not '$hold'" 2
[[ -z $manifest || $command == import || $command == export ]] || die "--manifest goes with import or export" 2
[[ -z $manifest || -d $(dirname "$manifest") ]] || die "--manifest: $(dirname "$manifest"): no such folder" 2
[[ -z $date || $date =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] || die "--date: expected YYYY-MM-DD (a UTC day), not '$date'" 2
for tool in aws python3 sha256sum; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
[[ -f $params ]] || die "$params: no such parameter file (the one you deployed with)" 2
parsed=$(python3 "$ROOT/cloud/params.py" "$params") || exit 2
eval "$parsed"
server=$p_ServerName
stack=${stack:-$server}
namespace=${p_MetricsNamespace:-ContainerManager}

# The file to import, checked before any AWS call: a folder is packed here; an archive must be a
# gzipped tar whose members all stay inside the world's folder.
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
if [[ $command == import ]]; then
    [[ -n $source ]] || die "import needs a folder or a .tar.gz: cloud/world.sh import $params ./my-world" 2
    [[ -e $source ]] || die "$source: no such file or folder" 2
    upload=$(python3 - "$source" "$workdir/world.tar.gz" <<'EOF'
import os, sys, tarfile
src, out = sys.argv[1], sys.argv[2]
def bad(msg):
    print(f"world: error: {src}: {msg}", file=sys.stderr)
    sys.exit(2)
if os.path.isdir(src):
    names = os.listdir(src)
    if not names:
        bad("the folder is empty: there is no world in it")
    with tarfile.open(out, "w:gz") as tar:
        for name in sorted(names):
            tar.add(os.path.join(src, name), arcname=name)
    print(f"world: packed the folder {src} ({len(names)} entries at its top)", file=sys.stderr)
    print(out)
    sys.exit(0)
try:
    tar = tarfile.open(src, "r:gz")
    members = tar.getmembers()
except (tarfile.TarError, OSError, EOFError) as e:
    bad(f"not a .tar.gz archive ({e}); expected a folder, or an archive such as 'cloud/world.sh export' writes")
files = 0
for m in members:
    name = m.name.lstrip("./") if m.name not in (".", "./") else ""
    parts = [p for p in m.name.split("/") if p not in ("", ".")]
    if m.name.startswith("/") or ".." in parts:
        bad(f"{m.name}: a member outside the world's folder (an absolute path or ..); nothing was uploaded")
    if m.issym() or m.islnk():
        target = m.linkname
        if target.startswith("/") or ".." in target.split("/"):
            bad(f"{m.name}: a link to {target}, outside the world's folder; nothing was uploaded")
    elif not (m.isfile() or m.isdir()):
        bad(f"{m.name}: not a file, folder or link (a device or a pipe); nothing was uploaded")
    files += m.isfile()
if files == 0:
    bad("the archive holds no file: there is no world in it")
print(f"world: {src}: {files} files", file=sys.stderr)
print(src)
EOF
) || exit 2
fi
if [[ $command == export ]]; then
    dest=${dest:-$server-world-$(date -u +%Y-%m-%dT%H%M%SZ).tar.gz}
    [[ ! -e $dest ]] || die "$dest exists already: name another file" 2
    [[ -d $(dirname "$dest") ]] || die "$(dirname "$dest"): no such folder for the export" 2
fi

[[ -n $region ]] || region=$(aws configure get region 2>/dev/null || true)
[[ -n $region ]] || die "no region: pass --region, or set AWS_REGION (or a region in your AWS CLI profile)" 2
export AWS_REGION=$region AWS_DEFAULT_REGION=$region
account=$(aws sts get-caller-identity --output text --query Account 2>/dev/null) \
    || die "no working AWS credentials for region $region (aws sts get-caller-identity fails: run 'aws configure' or set AWS_PROFILE)"
status=$(aws cloudformation describe-stacks --stack-name "$stack" --query 'Stacks[0].StackStatus' --output text 2>/dev/null) \
    || die "no stack $stack in $region: deploy it first (make deploy PARAMS=$params)" 2
case $status in *_COMPLETE) ;; *) die "stack $stack is $status: try again when it is CREATE_COMPLETE or UPDATE_COMPLETE" ;; esac
resources=$(aws cloudformation list-stack-resources --stack-name "$stack" --output text \
    --query 'StackResourceSummaries[].[LogicalResourceId,PhysicalResourceId]')
resource() { awk -v id="$1" '$1 == id { print $2 }' <<<"$resources"; }
bucket=$(resource ArtifactBucket) group=$(resource AutoScalingGroup)
# The world: the stack's own file system, or the one it adopted (ExistingFileSystemId).
data=$(aws cloudformation describe-stacks --stack-name "$stack" --output text \
    --query "Stacks[0].Outputs[?OutputKey=='DataFileSystemId'].OutputValue")
[[ $data != None ]] || data=""
[[ -n $bucket && -n $group && -n $data ]] \
    || die "stack $stack lacks its bucket, group or data file system: deploy it again with this checkout (make deploy PARAMS=$params)"

# --- the server's state ---------------------------------------------------------------------
# "asleep", or "up <instance> <lifecycle state>" for the group's first instance, or "waking".
server_state() {
    local out
    out=$(aws autoscaling describe-auto-scaling-groups --auto-scaling-group-names "$group" --output text \
        --query 'AutoScalingGroups[0].[DesiredCapacity, join(`,`, Instances[].join(`:`, [InstanceId, LifecycleState]))]') \
        || die "cannot read the group $group"
    local desired=${out%%$'\t'*} instances=${out#*$'\t'}
    [[ $instances == None ]] && instances=""
    if [[ -z $instances ]]; then
        if [[ $desired == 0 ]]; then echo asleep; else echo waking; fi
    else
        local first=${instances%%,*}
        echo "up ${first%%:*} ${first#*:}"
    fi
}
# A timestamp as the AWS CLI prints it (v2: ISO 8601; v1: as the service sent it, epoch seconds
# for some): python3 code that defines iso(value) -> "YYYY-MM-DDTHH:MM:SS+00:00".
ISO='
import datetime as dt
def iso(v):
    if isinstance(v, (int, float)):
        return dt.datetime.fromtimestamp(v, dt.timezone.utc).isoformat()
    return dt.datetime.fromisoformat(str(v).replace("Z", "+00:00")).astimezone(dt.timezone.utc).isoformat()
'
players() { # the agent's latest PlayersOnline in the last 5 minutes, or "unknown"
    python3 -c "$ISO"'
import json, sys
points = sorted(json.loads(sys.argv[1] or "{}").get("Datapoints", []), key=lambda p: iso(p["Timestamp"]))
last = points[-1] if points else None
print(str(int(last["Maximum"])) + " (as of " + iso(last["Timestamp"])[11:16] + " UTC)" if last else "unknown")' \
        "$(aws cloudwatch get-metric-statistics --namespace "$namespace" --metric-name PlayersOnline \
        --dimensions "Name=AutoScalingGroupName,Value=$group" --statistics Maximum --period 60 \
        --start-time "$(date -u -d '-5 min' +%FT%TZ 2>/dev/null || date -u -v-5M +%FT%TZ)" \
        --end-time "$(date -u +%FT%TZ)" --output json 2>/dev/null || echo '{}')"
}
# Refuses (exit 2) while the server is up, or with --wait waits until it sleeps.
need_asleep() {
    local state end=$(($(date +%s) + minutes * 60))
    while :; do
        state=$(server_state)
        [[ $state == asleep ]] && return 0
        if ! $wait_sleep; then
            case $state in
                up*) die "the server is up (${state#up }; players online: $(players)): $command works only while it sleeps, so that no game has the world open. Nothing was changed. It sleeps IdleMinutes (${p_IdleMinutes:-10}) after the last player leaves: run this again then, or add --wait." 2 ;;
                *) die "the server is waking: $command works only while it sleeps. Nothing was changed; run this again once it sleeps, or add --wait." 2 ;;
            esac
        fi
        (($(date +%s) < end)) || die "the server did not go to sleep within $minutes minutes (--timeout); nothing was changed"
        log "waiting for the server to sleep (${state})"
        sleep 10
    done
}
s3_exists() { aws s3api head-object --bucket "$bucket" --key "$1" >/dev/null 2>&1; }

# --- a maintenance job ----------------------------------------------------------------------
# Posts the job, starts the instance for it, follows it to its result, and prints the result's
# JSON on stdout. Any payload is already under transfer/in/<id>/.
run_job() {
    local job=$1 id=$2 claimed="" iid="" state="" last="" t0 i
    s3_exists transfer/in/job.json \
        && die "another job waits in s3://$bucket/transfer/in/job.json (a world command that is still running, or one interrupted): wait for it, or delete that object to cancel it" 2
    aws s3 cp --quiet "$MAINTENANCE" "s3://$bucket/transfer/in/maintenance.sh" || die "cannot upload to s3://$bucket/transfer/in/"
    aws s3 cp --quiet "$job" "s3://$bucket/transfer/in/job.json" || die "cannot upload to s3://$bucket/transfer/in/"
    # The job is there: any boot from now on takes it. If the server woke meanwhile, its boot
    # may have missed it: withdraw it, and change nothing.
    state=$(server_state)
    case $state in
        asleep)
            aws autoscaling set-desired-capacity --auto-scaling-group-name "$group" --desired-capacity 1 \
                || { aws s3 rm --quiet "s3://$bucket/transfer/in/job.json"; die "cannot start the instance (set-desired-capacity)"; } ;;
        *)
            aws s3 rm --quiet "s3://$bucket/transfer/in/job.json"
            die "the server woke while the job was being posted (${state}): the job was withdrawn and nothing was changed; run this again once it sleeps" 2 ;;
    esac
    log "started a maintenance boot for job $id (no game; the instance goes back to zero when done)"
    t0=$(date +%s)
    for ((i = 0; ; i++)); do
        if s3_exists "transfer/out/$id/result.json"; then
            aws s3 cp --quiet "s3://$bucket/transfer/out/$id/result.json" - && return 0
        fi
        if [[ -z $claimed ]] && s3_exists "transfer/out/$id/claimed.json"; then
            claimed=$(aws s3 cp --quiet "s3://$bucket/transfer/out/$id/claimed.json" - \
                | python3 -c 'import json, sys; print(json.load(sys.stdin)["instance"])')
            log "instance $claimed took the job after $(($(date +%s) - t0)) s"
        fi
        state=$(server_state)
        [[ $state != "$last" ]] && log "server: $state" && last=$state
        if [[ -z $claimed ]] && (($(date +%s) - t0 > 600)); then
            aws s3 rm --quiet "s3://$bucket/transfer/in/job.json" || true
            die "no instance took the job within 10 minutes (did the instance boot? see the group's activity): the job was withdrawn and nothing was changed"
        fi
        if [[ -n $claimed && $state != "up $claimed "* ]] && ! s3_exists "transfer/out/$id/result.json"; then
            die "the maintenance boot on $claimed ended without a result (the instance stopped): the previous world is unchanged"
        fi
        (($(date +%s) - t0 < (minutes + 15) * 60)) || die "job $id has no result after $((minutes + 15)) minutes"
        sleep 3
    done
}
wait_asleep() { # after a job: until the group is back at zero (bounded), so that a wake plays it
    local i
    for ((i = 0; i < 100; i++)); do
        [[ $(server_state) == asleep ]] && return 0
        sleep 3
    done
    log "warning: the instance has not gone back to zero after 5 minutes: see the group's activity"
}
field() { python3 -c 'import json, sys; print(json.loads(sys.argv[1]).get(sys.argv[2], ""))' "$1" "$2"; }
cleanup_job() { aws s3 rm --quiet --recursive "s3://$bucket/transfer/out/$1/" || true; aws s3 rm --quiet --recursive "s3://$bucket/transfer/in/$1/" || true; aws s3 rm --quiet "s3://$bucket/transfer/in/maintenance.sh" || true; }
write_job() { # id action key=value...: the job's JSON
    python3 -c 'import json, sys; print(json.dumps({"version": 1, "id": sys.argv[1], "action": sys.argv[2], **dict(a.split("=", 1) for a in sys.argv[3:])}))' "$@" \
        > "$workdir/job.json"
}
switch_job() { # id, what was done: runs a job that switches a new world in, and reports it
    local result prev rc
    result=$(run_job "$workdir/job.json" "$1") || { rc=$?; cleanup_job "$1"; exit $rc; }
    [[ $(field "$result" ok) == true ]] || { cleanup_job "$1"; die "$command: $(field "$result" message)"; }
    fetch_manifest "$result" || { rc=$?; cleanup_job "$1"; exit $rc; }
    cleanup_job "$1"
    wait_asleep
    echo "$2: $(field "$result" message). The next wake plays it."
    prev=$(field "$result" previous)
    [[ -z $prev ]] || echo "The world it replaced is kept on the file system at $prev (the newest 3 are kept)."
}
fetch_manifest() { # result: with --manifest, the instance's list of the world's files, to that file
    [[ -n $manifest ]] || return 0
    local key
    key=$(field "$1" manifest)
    [[ -n $key ]] || { log "error: --manifest: the instance listed no files (its maintenance script is older than this command)"; return 1; }
    aws s3 cp --only-show-errors "s3://$bucket/$key" "$manifest" || { log "error: cannot download s3://$bucket/$key"; return 1; }
}
new_id() { echo "$(date -u +%Y%m%dT%H%M%SZ)-$command-$RANDOM"; }

recovery_points() { # "ARN<TAB>created<TAB>status" for the data file system, in any vault, newest first
    aws backup list-recovery-points-by-resource \
        --resource-arn "arn:aws:elasticfilesystem:$region:$account:file-system/$data" --output json \
        | python3 -c "$ISO"'
import json, sys
points = json.load(sys.stdin).get("RecoveryPoints", [])
for p in sorted(points, key=lambda p: iso(p["CreationDate"]), reverse=True):
    print(p["RecoveryPointArn"], iso(p["CreationDate"]), p.get("Status", "?"), sep="\t")'
}

case $command in
    import)
        need_asleep
        id=$(new_id)
        sha=$(sha256sum "$upload" | cut -d' ' -f1)
        bytes=$(wc -c < "$upload" | tr -d ' ')
        log "uploading $source ($bytes bytes, sha256 $sha) to s3://$bucket/transfer/in/$id/"
        aws s3 cp --only-show-errors "$upload" "s3://$bucket/transfer/in/$id/world.tar.gz" \
            || { cleanup_job "$id"; die "cannot upload to s3://$bucket/transfer/in/$id/"; }
        write_job "$id" import "archive=transfer/in/$id/world.tar.gz" "sha256=$sha" "minutes=$minutes"
        switch_job "$id" "Imported $source"
        ;;
    export)
        need_asleep
        id=$(new_id)
        write_job "$id" export "minutes=$minutes"
        result=$(run_job "$workdir/job.json" "$id") || { rc=$?; cleanup_job "$id"; exit $rc; }
        if [[ $(field "$result" ok) != true ]]; then cleanup_job "$id"; die "export: $(field "$result" message)"; fi
        fetch_manifest "$result" || { rc=$?; cleanup_job "$id"; exit $rc; }
        aws s3 cp --only-show-errors "s3://$bucket/$(field "$result" archive)" "$workdir/export.tar.gz" \
            || { cleanup_job "$id"; die "cannot download s3://$bucket/$(field "$result" archive)"; }
        cleanup_job "$id"
        got=$(sha256sum "$workdir/export.tar.gz" | cut -d' ' -f1)
        [[ $got == "$(field "$result" sha256)" ]] || die "the download has sha256 $got, not $(field "$result" sha256) as packed on the instance: try again"
        mv "$workdir/export.tar.gz" "$dest"
        wait_asleep
        echo "Exported the world: $(field "$result" message), to $dest ($(wc -c < "$dest" | tr -d ' ') bytes, sha256 $got)."
        echo "cloud/world.sh import takes this file as it is."
        ;;
    backups)
        points=$(recovery_points)
        [[ -n $points ]] || { echo "No recovery points yet: AWS Backup makes the first at 05:00 UTC after the deploy."; exit 0; }
        printf 'created\tstatus\trecovery point\n'
        awk -F'\t' '{ print $2 "\t" $3 "\t" $1 }' <<<"$points"
        ;;
    restore)
        # COMPLETED, or AVAILABLE in AWS Backup's newer status names (docs/world-sources.md).
        points=$(recovery_points | awk -F'\t' '$3 == "COMPLETED" || $3 == "AVAILABLE"')
        [[ -n $points ]] || die "no completed recovery point of $data yet: AWS Backup makes the first at 05:00 UTC after the deploy"
        if [[ -n $point ]]; then
            chosen=$(awk -F'\t' -v a="$point" '$1 == a' <<<"$points")
            [[ -n $chosen ]] || die "--recovery-point: $point is not a completed recovery point of $data (see: cloud/world.sh backups $params)" 2
        elif [[ -n $date ]]; then
            chosen=$(awk -F'\t' -v d="$date" 'index($2, d) == 1' <<<"$points" | head -n 1)
            [[ -n $chosen ]] || die "--date: no recovery point on $date (UTC); these exist:
$(awk -F'\t' '{ print "  " $2 }' <<<"$points")" 2
        else
            chosen=$(head -n 1 <<<"$points")
        fi
        arn=$(cut -f1 <<<"$chosen") created=$(cut -f2 <<<"$chosen")
        need_asleep
        role=$(resource BackupRole)
        id=$(new_id)
        # An item-level restore of /data alone (not previous/): AWS Backup writes it beside the
        # world, under /aws-backup-restore_<time>/data, and the maintenance boot switches it in.
        log "restoring the recovery point of $created into $data (AWS Backup writes it beside the world)"
        job=$(aws backup start-restore-job --recovery-point-arn "$arn" --resource-type EFS \
            --iam-role-arn "arn:aws:iam::$account:role/$role" --idempotency-token "$id" --output text --query RestoreJobId \
            --metadata "$(python3 -c 'import json, sys; print(json.dumps({"file-system-id": sys.argv[1], "newFileSystem": "false", "Encrypted": "true", "PerformanceMode": "generalPurpose", "CreationToken": sys.argv[2], "ItemsToRestore": json.dumps(["/data"])}))' "$data" "$id")") \
            || die "AWS Backup refused the restore (start-restore-job)"
        t0=$(date +%s)
        while :; do
            rstatus=$(aws backup describe-restore-job --restore-job-id "$job" --output text --query Status)
            case $rstatus in
                COMPLETED) break ;;
                ABORTED | FAILED) die "AWS Backup's restore job $job is $rstatus: the world is unchanged (see: aws backup describe-restore-job --restore-job-id $job)" ;;
            esac
            (($(date +%s) - t0 < 180 * 60)) || die "AWS Backup's restore job $job is still $rstatus after 3 hours; the world is unchanged"
            log "AWS Backup: $rstatus"
            sleep 10
        done
        log "restore job $job done after $(($(date +%s) - t0)) s; switching the restored world in"
        need_asleep
        write_job "$id" restore "restore_job=$job" "recovery_point=$arn" "minutes=$minutes"
        switch_job "$id" "Restored the backup of $created"
        ;;
    shell)
        session() { ${CM_SESSION_COMMAND:-aws ssm start-session --target} "$1"; }
        state=$(server_state)
        if [[ $state == up* ]]; then
            set -- $state
            log "the server is up: a shell on $2; the world is at /mnt/world (as the game's user)"
            session "$2"
            exit $?
        fi
        need_asleep
        id=$(new_id)
        write_job "$id" hold "minutes=$hold"
        # run_job waits for the result, which comes when the session below lets go: follow the
        # claim here, then start the session, then release the instance.
        ( run_job "$workdir/job.json" "$id" > "$workdir/result.json" ) &
        follower=$!
        for ((i = 0; i < 200; i++)); do
            s3_exists "transfer/out/$id/claimed.json" && break
            kill -0 "$follower" 2>/dev/null || break
            sleep 3
        done
        s3_exists "transfer/out/$id/claimed.json" || { wait "$follower"; exit 1; }
        iid=$(aws s3 cp --quiet "s3://$bucket/transfer/out/$id/claimed.json" - | python3 -c 'import json, sys; print(json.load(sys.stdin)["instance"])')
        log "a shell on $iid (no game runs; the world is at /mnt/world); the instance stays up for at most $hold minutes"
        rc=0
        session "$iid" || rc=$?
        echo '{}' | aws s3 cp --quiet - "s3://$bucket/transfer/in/$id/release"
        wait "$follower" || true
        cleanup_job "$id"
        wait_asleep
        echo "Done: the server sleeps again."
        exit $rc
        ;;
esac
