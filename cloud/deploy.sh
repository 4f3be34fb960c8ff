#!/usr/bin/env bash
# The one deploy command (make deploy / make destroy call it). From a fresh clone, with AWS
# credentials:
#
#   cloud/deploy.sh deploy  PARAMS.json [--region R] [--stack NAME] [--package FILE] [--kind rpm|bin]
#                                       [--adopt-world] [--replace-world [--empty-world]] [--restart-game]
#   cloud/deploy.sh destroy PARAMS.json [--region R] [--stack NAME]
#
# PARAMS.json is a server's parameter file (cloud/examples/*.json), or a base's: BaseName and
# HostedZoneId (and IPv6), for many servers under one domain (docs/many-servers.md). deploy of a
# base makes its network (cloud/base.yaml, stack container-manager-base-<BaseName>) and its one
# wake path in us-east-1; destroy of a base refuses while it has games. A server's file with
# BaseName is a game of that base: its stack uses the base's network and wake path, and makes
# neither.
#
# deploy builds the agent's package (an .rpm for the ECS-optimized Amazon Linux 2023 AMI, or with
# --kind bin the bare binary; --package FILE takes one that is already built, a release asset for
# one), creates the stack with its private artifact bucket first when it does not exist, puts the
# package into that bucket under agent/<sha256>/, and deploys cloud/container-manager.yaml with
# AgentPackageKey and AgentPackageSha256 set to it; outside us-east-1 it also deploys the wake-up
# chain (cloud/wake-us-east-1.yaml) in us-east-1. With DiscordPublicKey (docs/discord.md) it also
# puts the Discord endpoint's code (cloud/discord_*.py, zipped) into the bucket under
# discord/<sha256>/ and sets DiscordCodeSha256. A parameter file that sets AgentPackageUrl
# (a package you host yourself) is deployed as it is, with no build and no upload. Running it
# again updates the stack and the package: a changed package reaches the next boot, and the
# bucket keeps only the package in use.
#
# The world is never left behind silently (docs/cloud.md, "Keeping your world"). Before anything
# changes, deploy finds the worlds this server name left (a data file system kept by an earlier
# destroy, recovery points in its retained vault). A new stack with such a world refuses, naming
# it: --adopt-world plays it (ExistingFileSystemId), --replace-world starts an empty one beside
# it. An update is reviewed as a change set first: one that would replace the world's file system
# (FileSystemType, for one) refuses, unless --replace-world, which moves the world across: while
# the server sleeps, it exports the world (cloud/world.sh export, beside the parameter file), runs
# the change, imports the archive into the new file system, and compares every file's sha256 on
# both; the old file system is kept and named, never deleted. --empty-world starts the new one empty.
# An update that changes the game's task definition while the server is up refuses too (ECS would
# restart the game at once, without its pre-stop command), unless --restart-game.
#
# destroy deletes the wake-up chain, empties the artifact bucket and deletes the stack. The world
# (the data file system) and the backup vault are kept, and it prints their ids.
#
# Before it builds or uploads, deploy checks the tools (each missing one named with its install
# line), the build host (Linux x86_64), and the package: an ELF x86_64 binary needing no glibc
# newer than 2.34 (packaging/check-glibc.sh), or an x86_64 .rpm holding such a binary.
#
# Needs the AWS CLI (v1 or v2), python3, sha256sum and od; building needs make, cargo,
# cargo-generate-rpm and objdump (README, "Prerequisites"). The AWS CLI's standard variables apply
# (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, ...).
# Exit codes: 0 done; 1 an AWS call or the build failed; 2 usage, a bad parameter file, a missing
# tool or secret, a package that cannot run on the instance, or a refusal to leave the world behind.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TEMPLATE=$ROOT/cloud/container-manager.yaml
BOOTSTRAP=$ROOT/cloud/artifact-bucket.yaml
WAKE_TEMPLATE=$ROOT/cloud/wake-us-east-1.yaml

log() { printf 'deploy: %s\n' "$*" >&2; }
die() { log "error: $1"; exit "${2:-1}"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2; }

(($# >= 2)) || usage
command=$1 params=$2
shift 2
region=${AWS_REGION:-${AWS_DEFAULT_REGION:-}}
stack="" package=${CM_AGENT_PACKAGE:-} kind=${CM_AGENT_KIND:-rpm} world_flags=()
while (($#)); do
    case $1 in
        --region) region=${2:?--region needs a value}; shift 2 ;;
        --stack) stack=${2:?--stack needs a value}; shift 2 ;;
        --package) package=${2:?--package needs a value}; shift 2 ;;
        --kind) kind=${2:?--kind needs a value}; shift 2 ;;
        --adopt-world | --replace-world | --empty-world | --restart-game) world_flags+=("$1"); shift ;;
        -h|--help) usage ;;
        *) log "unknown argument: $1"; usage ;;
    esac
done
case $command in deploy | destroy) ;; *) log "unknown command: $command"; usage ;; esac
case $kind in rpm | bin) ;; *) die "--kind must be rpm or bin (got '$kind')" 2 ;; esac
command -v python3 >/dev/null \
    || die "python3 is required; install it: apt-get install python3 (dnf install python3; macOS: brew install python3)" 2
[[ -f $params ]] || die "$params: no such parameter file (copy one of cloud/examples/*.json)" 2

# The parameter file, in the create-stack format the examples use, checked before any AWS call:
# one Key=Value line each, and the few values this script needs.
parsed=$(python3 "$ROOT/cloud/params.py" "$params") || exit 2
# Plain variables and an indexed array: macOS's bash 3.2 has no associative arrays.
eval "$parsed"
if [[ $p_layout == base ]]; then
    # A base (docs/many-servers.md): its network in the region, its wake path in us-east-1.
    p_AgentPackageUrl="" server=""
    stack=${stack:-container-manager-base-$p_BaseName}
    wake_stack=$stack-wake
else
    server=$p_ServerName
    stack=${stack:-$server}
    wake_stack=container-manager-$server-wake
fi

# The tools this deploy needs, all named at once with the line that installs each (README,
# "Prerequisites"). Building the agent needs the Rust toolchain; checking it needs objdump.
install_line() {
    case $1 in
        aws) echo "pip install awscli (v1), or AWS CLI v2: https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html" ;;
        sha256sum | od) echo "apt-get install coreutils (dnf install coreutils; macOS: brew install coreutils)" ;;
        objdump) echo "apt-get install binutils (dnf install binutils; macOS: brew install binutils)" ;;
        make) echo "apt-get install make (dnf install make; macOS: xcode-select --install)" ;;
        cargo) echo "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh   (Rust 1.95 or newer)" ;;
        cargo-generate-rpm) echo "cargo install cargo-generate-rpm" ;;
    esac
}
building=false
[[ $command == deploy && $p_layout == game && -z $package && -z $p_AgentPackageUrl ]] && building=true
tools=(aws sha256sum od)
if [[ $command == destroy || $p_layout == base ]]; then
    :
elif $building; then
    tools+=(make cargo objdump)
    [[ $kind == rpm ]] && tools+=(cargo-generate-rpm)
elif [[ -z $p_AgentPackageUrl && $package != *.rpm ]]; then
    tools+=(objdump)
fi
lacking=0
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null && continue
    log "error: $tool is required and not found; install it: $(install_line "$tool")"
    lacking=$((lacking + 1))
done
((lacking == 0)) || die "$lacking tool(s) missing (README, \"Prerequisites\"): nothing was built or changed" 2

# What runs on the instance (the ECS-optimized Amazon Linux 2023 AMI): a Linux x86_64 binary that
# needs no glibc newer than 2.34. Checked before the upload, each failure with its reason.
check_binary() { # FILE
    local magic machine out
    magic=$(od -An -tx1 -N4 "$1" | tr -d ' \n')
    case $magic in
        7f454c46) ;;
        cffaedfe | cefaedfe | cafebabe | feedfacf)
            die "$1 is a macOS (Mach-O) binary, but the instance runs Linux x86_64: build on Linux x86_64 (a container will do), or deploy a release's .rpm with --package" 2 ;;
        *) die "$1 is not a Linux (ELF) binary: deploy the agent built for Linux x86_64, or a release's .rpm with --package" 2 ;;
    esac
    machine=$(od -An -tx1 -j18 -N2 "$1" | tr -d ' \n') # ELF e_machine, little-endian
    case $machine in
        3e00) ;;
        b700) die "$1 is built for aarch64 (arm64), but the instance is x86_64: build on an x86_64 machine, or deploy a release's .rpm with --package" 2 ;;
        *) die "$1 is built for another architecture (ELF machine 0x$machine), but the instance is x86_64: build on an x86_64 machine, or deploy a release's .rpm with --package" 2 ;;
    esac
    out=$(bash "$ROOT/packaging/check-glibc.sh" "$1" 2.34 2>&1) \
        || die "$1 needs a newer glibc than Amazon Linux 2023's 2.34, so it would not start on the instance ($(grep -m1 newest <<<"$out")): build where glibc is 2.34 or older (Amazon Linux 2023 itself, or its container image), or deploy a release's .rpm with --package" 2
    log "checked $1: Linux x86_64, ${out#glibc: }"
}
check_rpm() { # FILE: its architecture, from its name and, with the rpm tool, its header
    local arch
    case $1 in
        *.x86_64.rpm | *.noarch.rpm) ;;
        *.*.rpm) arch=${1%.rpm}; die "$1 is an .rpm for ${arch##*.}, but the instance is x86_64" 2 ;;
    esac
    if command -v rpm >/dev/null && [[ $(od -An -tx1 -N4 "$1" | tr -d ' \n') == edabeedb ]]; then
        arch=$(rpm -qp --qf '%{ARCH}' "$1" 2>/dev/null) || die "$1: rpm cannot read it (rpm -qp)" 2
        [[ $arch == x86_64 || $arch == noarch ]] || die "$1 is an .rpm for $arch, but the instance is x86_64" 2
    fi
    # The binary inside: the same checks as a bare one (an .rpm built elsewhere can hold an agent
    # that needs a newer glibc than the instance's).
    if ! command -v rpm2archive >/dev/null; then
        log "cannot look inside $1 (rpm2archive, from the rpm package, is missing): only its architecture was checked"
        return 0
    fi
    local inside
    inside=$(mktemp -d)
    if ! rpm2archive -n - <"$1" 2>/dev/null | tar -x -C "$inside" ./usr/bin/container-manager-agent 2>/dev/null \
        || [[ ! -f $inside/usr/bin/container-manager-agent ]]; then
        rm -rf "$inside"
        die "$1 holds no /usr/bin/container-manager-agent: it is not the agent's package (make rpm builds it)" 2
    fi
    local out rc=0
    out=$(check_binary "$inside/usr/bin/container-manager-agent" 2>&1) || rc=$?
    rm -rf "$inside"
    ((rc == 0)) || die "$1: the agent inside it: ${out#*error: "$inside"/usr/bin/container-manager-agent }" "$rc"
    log "checked the agent inside $1: ${out##*: Linux x86_64, }"
}
if [[ $command == deploy && $p_layout == game && -n $package && -z $p_AgentPackageUrl ]]; then
    [[ -f $package ]] || die "--package: $package is not a file" 2
    if [[ $package == *.rpm ]]; then check_rpm "$package"; else check_binary "$package"; fi
elif $building; then
    [[ $(uname -s) == Linux && $(uname -m) == x86_64 ]] \
        || die "this machine is $(uname -s) $(uname -m): the agent is built for the instance's Linux x86_64 with the host's toolchain, so build on Linux x86_64 (a container will do), or deploy a release's .rpm with --package FILE" 2
fi

[[ -n $region ]] || region=$(aws configure get region 2>/dev/null || true)
[[ -n $region ]] || die "no region: pass --region, or set AWS_REGION (or a region in your AWS CLI profile)" 2
export AWS_REGION=$region AWS_DEFAULT_REGION=$region
aws sts get-caller-identity --output text --query Account >/dev/null 2>&1 \
    || die "no working AWS credentials for region $region (aws sts get-caller-identity fails: run 'aws configure' or set AWS_PROFILE)"

stack_status() { # the stack's status, or NONE
    aws cloudformation describe-stacks --region "$1" --stack-name "$2" --query 'Stacks[0].StackStatus' \
        --output text 2>/dev/null || echo NONE
}
stack_output() { # one of the stack's outputs, or nothing
    local v
    v=$(aws cloudformation describe-stacks --stack-name "$stack" --output text \
        --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" 2>/dev/null) || return 0
    [[ $v == None ]] || echo "$v"
}
stack_resource() { # the physical id of one of the stack's resources, or nothing
    local id
    id=$(aws cloudformation list-stack-resources --stack-name "$stack" --output text \
        --query "StackResourceSummaries[?LogicalResourceId=='$1'].PhysicalResourceId" 2>/dev/null) || return 0
    [[ $id == None ]] || echo "$id"
}
# Polls every 2 s (the CLI's waiters poll every 30 s), bounded to 60 minutes.
wait_stack() {
    local want=$1 status i
    for ((i = 0; i < 1800; i++)); do
        status=$(stack_status "$region" "$stack")
        case $status in
            *_IN_PROGRESS) sleep 2 ;;
            "$want") return 0 ;;
            NONE) [[ $want == DELETE_COMPLETE ]] && return 0; die "stack $stack is gone" ;;
            *) die "stack $stack: $status (see: aws cloudformation describe-stack-events --stack-name $stack)" ;;
        esac
    done
    die "stack $stack: still $status after 60 minutes"
}

# --- a base ---------------------------------------------------------------------------------
base_path=container-manager-base-$p_BaseName
base_games() { # the groups in this region that the base's wake path wakes; a failed call is no answer
    local out
    out=$(aws autoscaling describe-auto-scaling-groups --output text \
        --filters "Name=tag:container-manager:wake-path,Values=$base_path" \
        --query 'AutoScalingGroups[].AutoScalingGroupName') \
        || die "cannot list the games of the base $p_BaseName in $region (aws autoscaling describe-auto-scaling-groups failed, above): nothing was changed"
    [[ $out == None ]] || tr '\t' ' ' <<<"$out"
}
if [[ $p_layout == base && $command == destroy ]]; then
    [[ $(stack_status "$region" "$stack") != NONE || $(stack_status us-east-1 "$wake_stack") != NONE ]] \
        || die "no base $p_BaseName in $region: nothing to destroy" 2
    games=$(base_games) || exit 1
    [[ -z $games ]] || die "the base $p_BaseName still has games: $games. Destroy each first (cloud/deploy.sh destroy GAME.json); their worlds are kept" 2
    if [[ $(stack_status us-east-1 "$wake_stack") != NONE ]]; then
        log "deleting the base's wake path $wake_stack in us-east-1"
        aws cloudformation delete-stack --region us-east-1 --stack-name "$wake_stack"
        aws cloudformation wait stack-delete-complete --region us-east-1 --stack-name "$wake_stack"
    fi
    if [[ $(stack_status "$region" "$stack") != NONE ]]; then
        log "deleting the base's network $stack"
        aws cloudformation delete-stack --stack-name "$stack"
        wait_stack DELETE_COMPLETE
    fi
    echo "Deleted the base $p_BaseName in $region (its network and its wake path in us-east-1)."
    exit 0
fi
if [[ $p_layout == base ]]; then
    aws route53 get-hosted-zone --id "$p_HostedZoneId" >/dev/null 2>&1 \
        || die "$params: HostedZoneId: no hosted zone $p_HostedZoneId in this account (create one with 'aws route53 create-hosted-zone', or put the id of yours)" 2
    log "deploying cloud/base.yaml as $stack in $region (the games' network)"
    aws cloudformation deploy --stack-name "$stack" --template-file "$ROOT/cloud/base.yaml" --no-fail-on-empty-changeset \
        --parameter-overrides "BaseName=$p_BaseName" "IPv6=${p_IPv6:-false}" >&2 || die "the deploy of $stack failed"
    # One query logging configuration and one wake function for the zone, whichever region the
    # games are in; AAAA lookups reach it too, and each game's tags say whether they wake it.
    log "deploying the wake path $wake_stack in us-east-1 (Route53 query logs exist only there)"
    aws cloudformation deploy --region us-east-1 --stack-name "$wake_stack" --template-file "$WAKE_TEMPLATE" \
        --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset --parameter-overrides "ServerName=base-$p_BaseName" \
        Games=many "ServerRegion=$region" "HostedZoneId=$p_HostedZoneId" IPv6=true >&2 \
        || die "the deploy of $wake_stack in us-east-1 failed"
    games=$(base_games) || exit 1
    echo "Deployed the base $p_BaseName in $region: games: ${games:-none yet}."
    echo "Add a game: put \"BaseName\": \"$p_BaseName\" into its parameter file (its RecordName in the zone $p_HostedZoneId), then cloud/deploy.sh deploy GAME.json"
    exit 0
fi

if [[ $command == destroy ]]; then
    status=$(stack_status "$region" "$stack")
    [[ $status != NONE ]] || die "no stack $stack in $region: nothing to destroy" 2
    data=$(stack_output DataFileSystemId)
    vault=$(stack_resource BackupVault)
    if [[ $region != us-east-1 && $(stack_status us-east-1 "$wake_stack") != NONE ]]; then
        log "deleting the wake-up chain $wake_stack in us-east-1"
        aws cloudformation delete-stack --region us-east-1 --stack-name "$wake_stack"
        aws cloudformation wait stack-delete-complete --region us-east-1 --stack-name "$wake_stack"
    fi
    bucket=$(stack_resource ArtifactBucket)
    if [[ -n $bucket ]]; then
        log "emptying the artifact bucket $bucket (packages and templates only)"
        aws s3 rm "s3://$bucket" --recursive --only-show-errors || die "cannot empty s3://$bucket"
    fi
    log "deleting the stack $stack"
    aws cloudformation delete-stack --stack-name "$stack"
    wait_stack DELETE_COMPLETE
    echo "Deleted the stack $stack in $region."
    echo "Kept, on purpose: the world's file system ${data:-(none)} and the backup vault ${vault:-(none)} with its recovery points."
    echo "A new stack of this server name finds the world and offers it: $0 deploy $params --adopt-world"
    echo "When you no longer want the world:"
    echo "  aws efs delete-file-system --region $region --file-system-id ${data:-<id>}   (after deleting its mount targets, if any)"
    exit 0
fi

# --- deploy ---------------------------------------------------------------------------------
aws route53 get-hosted-zone --id "$p_HostedZoneId" >/dev/null 2>&1 \
    || die "$params: HostedZoneId: no hosted zone $p_HostedZoneId in this account (create one with 'aws route53 create-hosted-zone', or put the id of yours)" 2

# A game in a base: the base's network (its outputs) and its wake path, checked first.
if [[ -n $p_BaseName ]]; then
    base_stack=$base_path # the base's network stack is named as its wake path
    [[ $(stack_status "$region" "$base_stack") == *_COMPLETE && $(stack_status "$region" "$base_stack") != DELETE_COMPLETE ]] \
        || die "$params: BaseName: no base $p_BaseName in $region; deploy it first: cloud/deploy.sh deploy BASE.json (with BaseName $p_BaseName and your HostedZoneId)" 2
    base_output() {
        aws cloudformation describe-stacks --stack-name "$base_stack" --output text \
            --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue"
    }
    base_zone=$(aws cloudformation describe-stacks --region us-east-1 --stack-name "$base_stack-wake" --output text \
        --query "Stacks[0].Parameters[?ParameterKey=='HostedZoneId'].ParameterValue" 2>/dev/null) \
        || die "$params: BaseName: the base $p_BaseName has no wake path in us-east-1 ($base_stack-wake); deploy the base again: cloud/deploy.sh deploy BASE.json" 2
    [[ $base_zone == "$p_HostedZoneId" ]] \
        || die "$params: HostedZoneId: $p_HostedZoneId, but the base $p_BaseName wakes the names of the zone $base_zone: a game of this base is named in that zone" 2
    if [[ ${p_IPv6:-false} == true && $(base_output IPv6) != true ]]; then
        die "$params: IPv6: true, but the base $p_BaseName has no IPv6 network; deploy the base with IPv6 true first" 2
    fi
    # One game per name: the wake function wakes neither of two groups that claim one.
    claimed=$(aws autoscaling describe-auto-scaling-groups --output text \
        --filters "Name=tag:container-manager:wake-path,Values=$base_path" \
        "Name=tag:container-manager:record,Values=$p_RecordName" --query 'AutoScalingGroups[].AutoScalingGroupName')
    for group in $claimed; do
        [[ $group == None || $group == "container-manager-$server" ]] \
            || die "$params: RecordName: $p_RecordName is already the name of $group in the base $p_BaseName; give this game another name" 2
    done
    for key in VpcId:vpc SubnetA:subnet SubnetB:subnet S3EndpointId:vpce; do
        value=$(base_output "${key%%:*}") || die "cannot read the outputs of the base's stack $base_stack (above)"
        [[ $value == "${key##*:}"-* ]] \
            || die "the base's stack $base_stack has no output ${key%%:*} (got '$value'): deploy the base again (cloud/deploy.sh deploy BASE.json)"
        overrides+=("Base${key%%:*}=$value")
    done
fi
# Into a base, or out of one, is not an update: EFS keeps a file system's mount targets in one
# VPC at a time (docs/aws-sources.md §21), and CloudFormation makes the new ones before it
# deletes the old. The world is kept by a destroy and adopted by the next deploy.
# (A stack with only its artifact bucket, the first step of a deploy, has no layout yet.)
if [[ $(stack_status "$region" "$stack") != NONE ]]; then
    given=$(aws cloudformation describe-stacks --stack-name "$stack" --output text \
        --query "Stacks[0].Parameters[?ParameterKey=='BaseName' || ParameterKey=='HostedZoneId'].[ParameterKey,ParameterValue]") \
        || die "cannot read the stack $stack"
    was=$(awk '$1 == "BaseName" { print $2 }' <<<"$given")
    if [[ $given == *HostedZoneId* && $was != "${p_BaseName:-}" ]]; then
        now="a server of its own" wanted="a server of its own"
        [[ -z $was ]] || now="in the base $was"
        [[ -z ${p_BaseName:-} ]] || wanted="the base $p_BaseName"
        die "$params: BaseName: the stack $stack is $now, and the file says $wanted: a server moves between layouts by a destroy (which keeps its world) and a deploy that adopts it: cloud/deploy.sh destroy $params, then cloud/deploy.sh deploy $params --adopt-world" 2
    fi
fi

# The SSM parameters the game and the agent read at run time (the container's secrets, the
# webhook's URL) must exist in this region now: a missing one would pass the deploy and fail only
# when the container starts. Every missing one is named, before anything is built or changed.
missing=()
for key in Secret1 Secret2 Secret3 Secret4 Secret5 Secret6 Secret7 Secret8 Secret9 Secret10 WebhookUrlParameter; do
    var=p_$key
    value=${!var}
    [[ -n $value ]] || continue
    if [[ $key == WebhookUrlParameter ]]; then
        [[ ${p_WebhookKind:-none} != none ]] || continue
        name=$value
    else
        name=${value#*=}
        [[ $name == /container-manager/$server/* ]] \
            || die "$params: $key: $name is not under /container-manager/$server/: the container may read only its own server's parameters (expected NAME=/container-manager/$server/<parameter>)" 2
    fi
    if ! err=$(aws ssm get-parameter --name "$name" --query Parameter.Name --output text 2>&1 >/dev/null); then
        case $err in
            *ParameterNotFound*) missing+=("$key: no SSM parameter $name in $region; create it with: aws ssm put-parameter --region $region --type SecureString --name $name --value '...'") ;;
            *) die "$params: $key: cannot read the SSM parameter $name in $region: ${err##*$'\n'}" ;;
        esac
    fi
done
# The private registry's login (RegistryCredentialsSecretArn): a Secrets Manager secret, in the
# region its ARN names, that ECS reads before it pulls the image.
if [[ -n ${p_RegistryCredentialsSecretArn:-} ]]; then
    secret_region=$(cut -d: -f4 <<<"$p_RegistryCredentialsSecretArn")
    if ! err=$(aws secretsmanager describe-secret --region "$secret_region" --secret-id "$p_RegistryCredentialsSecretArn" \
            --query ARN --output text 2>&1 >/dev/null); then
        case $err in
            *ResourceNotFoundException*) missing+=("RegistryCredentialsSecretArn: no secret $p_RegistryCredentialsSecretArn in $secret_region; create it with: aws secretsmanager create-secret --region $secret_region --name <name> --secret-string '{\"username\": \"...\", \"password\": \"...\"}', and put the ARN it prints here") ;;
            *) die "$params: RegistryCredentialsSecretArn: cannot read the secret $p_RegistryCredentialsSecretArn in $secret_region: ${err##*$'\n'}" ;;
        esac
    fi
fi
if ((${#missing[@]})); then
    for m in "${missing[@]}"; do log "error: $params: $m"; done
    if [[ ${missing[*]} == *RegistryCredentialsSecretArn:* ]]; then
        die "$params: ${#missing[@]} SSM parameter(s) or secret missing (each named above with its region): nothing was changed" 2
    fi
    die "$params: ${#missing[@]} SSM parameter(s) missing in $region (the region this deploy goes to): nothing was changed" 2
fi

# The world this deploy plays, checked before anything is built or changed (cloud/worlds.py).
worlds=$(python3 "$ROOT/cloud/worlds.py" before "$params" --region "$region" --stack "$stack" \
    ${world_flags[@]+"${world_flags[@]}"}) || exit $?
eval "$worlds"
[[ -z $world_override ]] || overrides+=("$world_override")

if [[ -n $p_AgentPackageUrl ]]; then
    log "the parameter file sets AgentPackageUrl: deploying that package, nothing is built or uploaded"
    package_params=("AgentPackageUrl=$p_AgentPackageUrl" "AgentPackageKey=" "AgentPackageSha256=$p_AgentPackageSha256")
    key=""
else
    if [[ -z $package ]]; then
        export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/container-manager/target}
        mkdir -p "$CARGO_TARGET_DIR" 2>/dev/null && [[ -w $CARGO_TARGET_DIR ]] \
            || die "cannot write the build folder $CARGO_TARGET_DIR (the default is under /var/cache): run as root, or set CARGO_TARGET_DIR to a folder of yours" 2
        if [[ $kind == rpm ]]; then
            log "building the agent's .rpm (make rpm)"
            rm -f "$ROOT"/dist/container-manager-agent-*.rpm
            make -C "$ROOT" --no-print-directory rpm >&2 || die "the build failed (make rpm)"
            package=$(ls -t "$ROOT"/dist/container-manager-agent-*.rpm | head -n 1)
            check_binary "$CARGO_TARGET_DIR/release/container-manager-agent" # what the .rpm holds
            check_rpm "$package"
        else
            log "building the agent (cargo build --release)"
            (cd "$ROOT" && cargo build --release -p container-manager-agent >&2) || die "the build failed"
            package=$CARGO_TARGET_DIR/release/container-manager-agent
            check_binary "$package"
        fi
    fi
    [[ -f $package ]] || die "--package: $package is not a file" 2
    sha=$(sha256sum "$package" | cut -d' ' -f1)
    name=$(basename "$package")
    [[ $name == *.rpm ]] || name=container-manager-agent
    key=agent/$sha/$name
    package_params=("AgentPackageKey=$key" "AgentPackageSha256=$sha" "AgentPackageUrl=")
fi

# The game's environment file (EnvironmentFile, checked by cloud/params.py), named by its sha256:
# a changed file is a new key, so the task definition changes and ECS starts the game with it.
env_key="" env_params=("EnvironmentFileKey=${p_EnvironmentFileKey:-}")
if [[ -n $p_EnvironmentFile ]]; then
    env_key=env/$(sha256sum "$p_EnvironmentFile" | cut -d' ' -f1)/game.env
    env_params=("EnvironmentFileKey=$env_key")
fi

# The Discord endpoint's code, zipped with fixed dates and modes: the same files give the same
# sha256, so an unchanged endpoint is neither uploaded nor updated again.
discord_key="" discord_params=("DiscordCodeSha256=")
if [[ -n $p_DiscordPublicKey ]]; then
    discord_zip=$(mktemp)
    trap 'rm -f "$discord_zip"' EXIT
    python3 - "$discord_zip" "$ROOT/cloud/discord_interactions.py" "$ROOT/cloud/discord_verify.py" <<'PY' || exit 1
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for path in sys.argv[2:]:
        info = zipfile.ZipInfo(path.rsplit("/", 1)[-1], (1980, 1, 1, 0, 0, 0))
        info.external_attr, info.compress_type = 0o644 << 16, zipfile.ZIP_DEFLATED
        z.writestr(info, open(path, "rb").read())
PY
    discord_sha=$(sha256sum "$discord_zip" | cut -d' ' -f1)
    discord_key=discord/$discord_sha/discord-interactions.zip
    discord_params=("DiscordCodeSha256=$discord_sha")
fi

put_once() { # BUCKET KEY FILE WHAT: FILE into the bucket under KEY, unless it is there already (the key holds its sha256)
    if aws s3api head-object --bucket "$1" --key "$2" >/dev/null 2>&1; then
        log "the $4 is in place: s3://$1/$2"
    else
        log "uploading the $4 ($3) to s3://$1/$2"
        aws s3 cp "$3" "s3://$1/$2" --only-show-errors || die "cannot upload to s3://$1/$2"
    fi
}
upload() { # the package (the environment file, the Discord endpoint's code) into the bucket, unless they are there already
    if [[ -n $env_key ]]; then
        put_once "$1" "$env_key" "$p_EnvironmentFile" "environment file"
    elif [[ -n ${p_EnvironmentFileKey:-} ]]; then
        aws s3api head-object --bucket "$1" --key "$p_EnvironmentFileKey" >/dev/null 2>&1 \
            || die "$params: EnvironmentFileKey: no object s3://$1/$p_EnvironmentFileKey (the game could not start without it); upload it there, or set EnvironmentFile to a local file instead" 2
    fi
    [[ -z $discord_key ]] || put_once "$1" "$discord_key" "$discord_zip" "Discord endpoint's code"
    [[ -n $key ]] || return 0
    put_once "$1" "$key" "$package" "package"
    # Beside it, the installer the AMI recipe runs (cloud/ami-recipe.yaml).
    aws s3 cp "$ROOT/packaging/install-agent.sh" "s3://$1/${key%/*}/install-agent.sh" --only-show-errors \
        || die "cannot upload to s3://$1/${key%/*}/install-agent.sh"
}

status=$(stack_status "$region" "$stack")
case $status in
    NONE)
        # The template is larger than CloudFormation takes inline, so it must come from a
        # bucket: the stack is created with its artifact bucket alone, then updated.
        log "creating the stack $stack with its artifact bucket (cloud/artifact-bucket.yaml)"
        aws cloudformation deploy --stack-name "$stack" --template-file "$BOOTSTRAP" \
            --parameter-overrides "ServerName=$server" --no-fail-on-empty-changeset >&2 \
            || die "cannot create the stack $stack"
        ;;
    ROLLBACK_COMPLETE | ROLLBACK_FAILED | DELETE_FAILED)
        die "stack $stack is $status, which CloudFormation cannot update: run '$0 destroy $params' and deploy again" ;;
    *_IN_PROGRESS) die "stack $stack is busy ($status): try again when it has finished" ;;
esac
bucket=$(stack_resource ArtifactBucket)
[[ -n $bucket ]] || die "stack $stack has no ArtifactBucket: was it made by an older version? Deploy it with the AgentPackageUrl parameter, or destroy and deploy again"
# Before the stack update, so that no boot with the new launch template misses its package.
upload "$bucket"

# A change set first, reviewed for what it does to the world, then executed.
log "deploying cloud/container-manager.yaml as $stack in $region"
out=$(aws cloudformation deploy --stack-name "$stack" --template-file "$TEMPLATE" \
    --s3-bucket "$bucket" --s3-prefix templates --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
    --no-execute-changeset --parameter-overrides "${overrides[@]}" "${package_params[@]}" "${discord_params[@]}" \
    "${env_params[@]}") \
    || { printf '%s\n' "$out" >&2; die "the deploy of $stack failed: CloudFormation did not take the change set"; }
changeset=$(grep -o 'arn:[^ ]*:changeSet/[^ ]*' <<<"$out" | head -n 1 || true)
if [[ -n $changeset ]]; then
    drop_changeset() { aws cloudformation delete-change-set --change-set-name "$changeset" >/dev/null 2>&1 || true; }
    review=$(python3 "$ROOT/cloud/worlds.py" changeset "$params" --region "$region" --stack "$stack" \
        --change-set "$changeset" ${world_flags[@]+"${world_flags[@]}"}) || { rc=$?; drop_changeset; exit $rc; }
    eval "$review"
    # A world that moves across: exported now, from the file system the stack still mounts (after
    # the change it has no mount target left), imported once the new one exists.
    archive="" before_files=""
    if [[ -n $world_move ]]; then
        archive=$(cd "$(dirname "$params")" && pwd)/$server-world-$world_move-$(date -u +%Y%m%dT%H%M%SZ).tar.gz
        before_files=${archive%.tar.gz}.files.json
        log "exporting the world from $world_move to $archive (a maintenance boot; the server stays asleep)"
        if ! out=$(bash "$ROOT/cloud/world.sh" export "$params" "$archive" --manifest "$before_files" \
            --region "$region" --stack "$stack" 2>&1); then
            if grep -q "there is no world yet" <<<"$out"; then
                log "the game has never saved on $world_move: there is no world to move; the new file system starts empty"
                world_move=""
            else
                printf '%s\n' "$out" >&2
                drop_changeset
                die "the world on $world_move could not be exported (above), so it was not moved; nothing was changed, and the server still plays $world_move"
            fi
        else
            log "$(grep -m1 '^Exported' <<<"$out")"
            if [[ $(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$before_files") == 0 ]]; then
                log "the world on $world_move has no file: there is nothing to move; the new file system starts empty"
                rm -f "$archive" "$before_files"
                world_move=""
            fi
        fi
    fi
    aws cloudformation execute-change-set --change-set-name "$changeset" \
        || die "cannot execute the change set $changeset"
    wait_stack UPDATE_COMPLETE
    world_after=$(stack_output DataFileSystemId)
    if [[ -n $world_move && $world_after == "$world_move" ]]; then
        log "the stack still plays $world_move: nothing was replaced, nothing to move (the export is kept at $archive)"
    elif [[ -n $world_move ]]; then
        log "importing the world into the new file system $world_after (a maintenance boot)"
        after_files=${archive%.tar.gz}.imported.json
        keep="Both are kept: the old world on $world_move (unused: the stack no longer mounts it), and its export $archive; the server now plays $world_after."
        if ! out=$(bash "$ROOT/cloud/world.sh" import "$params" "$archive" --manifest "$after_files" \
            --region "$region" --stack "$stack" 2>&1); then
            printf '%s\n' "$out" >&2
            die "the world was not copied to $world_after (above). $keep To copy it: cloud/world.sh import $params $archive"
        fi
        python3 - "$before_files" "$after_files" "$world_move" "$world_after" <<'PY' || die "the copy on $world_after differs from the world on $world_move (above). $keep To copy it again: cloud/world.sh import $params $archive"
import json, sys
before, after = (json.load(open(p)) for p in sys.argv[1:3])
old, new = sys.argv[3:5]
differ = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
for p in differ[:10]:
    print(f"deploy: error: {p}: {before.get(p, ['missing'])[0]} on {old}, {after.get(p, ['missing'])[0]} on {new}",
          file=sys.stderr)
if differ:
    sys.exit(1)
size = sum(b for _, b in before.values())
print(f"The world moved to {new}: {len(before)} files, {size} bytes, every file's sha256 the same as on {old}.")
PY
        rm -f "$after_files"
        echo "The previous file system $world_move is kept, unused, with the world as it was; so is its export $archive."
        echo "  When you no longer want them: aws efs delete-file-system --region $region --file-system-id $world_move"
    fi
    if [[ -z $world_move && -n $world_before && -n $world_after && $world_before != "$world_after" ]]; then
        echo "The world: the server now plays $world_after. Its previous world $world_before is kept, unused:"
        echo "  deploy with ExistingFileSystemId=$world_before (and --replace-world) to play it again."
    fi
else
    log "no change to the stack $stack"
fi

if [[ $region != us-east-1 && -z $p_BaseName ]]; then
    log "deploying the wake-up chain $wake_stack in us-east-1 (Route53 query logs exist only there)"
    # The players' webhook (its parameter's name, in $region) hears "waking" from the function.
    # The game's own wake settings are tags on its group (docs/many-servers.md); this stack needs
    # only what its filter and its role name.
    wake_params=("ServerName=$server" "ServerRegion=$region" "HostedZoneId=$p_HostedZoneId"
        "IPv6=${p_IPv6:-false}" "WebhookKind=${p_WebhookKind:-none}" "WebhookUrlParameter=$p_WebhookUrlParameter")
    aws cloudformation deploy --region us-east-1 --stack-name "$wake_stack" --template-file "$WAKE_TEMPLATE" \
        --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
        --parameter-overrides "${wake_params[@]}" >&2 \
        || die "the deploy of $wake_stack in us-east-1 failed"
fi

# The bucket keeps only the package in use (and its installer), and no template (CloudFormation has read it).
if [[ -n $key ]]; then
    for old in $(aws s3api list-objects-v2 --bucket "$bucket" --prefix agent/ --query 'Contents[].Key' --output text); do
        [[ $old == None || $old == "${key%/*}/"* ]] && continue
        aws s3 rm "s3://$bucket/$old" --only-show-errors && log "removed the old package s3://$bucket/$old"
    done
fi
for old in $(aws s3api list-objects-v2 --bucket "$bucket" --prefix discord/ --query 'Contents[].Key' --output text); do
    [[ $old == None || $old == "$discord_key" ]] && continue
    aws s3 rm "s3://$bucket/$old" --only-show-errors && log "removed the old Discord code s3://$bucket/$old"
done
for old in $(aws s3api list-objects-v2 --bucket "$bucket" --prefix env/ --query 'Contents[].Key' --output text); do
    [[ $old == None || $old == "${env_key:-${p_EnvironmentFileKey:-}}" ]] && continue
    aws s3 rm "s3://$bucket/$old" --only-show-errors && log "removed the old environment file s3://$bucket/$old"
done
aws s3 rm "s3://$bucket/templates" --recursive --only-show-errors || true

in_base=""
[[ -z $p_BaseName ]] || in_base=" (the wake path of the base $p_BaseName wakes it)"
echo "Deployed $stack in $region: $p_RecordName sleeps until somebody looks it up$in_base."
if [[ -n $key ]]; then
    echo "Agent package: s3://$bucket/$key (sha256 $sha)"
else
    echo "Agent package: $p_AgentPackageUrl (sha256 $p_AgentPackageSha256)"
fi
[[ -z $env_key ]] || echo "Environment file: $p_EnvironmentFile as s3://$bucket/$env_key"
if [[ -n $discord_key ]]; then
    url=$(aws cloudformation describe-stacks --stack-name "$stack" --output text \
        --query "Stacks[0].Outputs[?OutputKey=='DiscordInteractionsEndpointUrl'].OutputValue" 2>/dev/null || true)
    [[ -n $url && $url != None ]] || url="the stack output DiscordInteractionsEndpointUrl"
    echo "Discord /wake and /status: set your application's Interactions Endpoint URL to $url (docs/discord.md)."
fi
