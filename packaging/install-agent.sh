#!/usr/bin/env bash
# Installs the container-manager agent on a systemd host, from EC2 user data or by hand.
#
#   install-agent.sh --url URL --sha256 HEX [--config FILE|-] [--unit FILE] [--no-start]
#
# URL (https://, http:// or file://) names an .rpm (installed with dnf, yum or rpm), a .deb (apt-get or dpkg) or anything else,
# taken as the bare x86_64 binary: it goes to /usr/local/bin, with the packaged hardened unit and
# the service user made with useradd. The unit is the one the binary prints (`print-unit --binary
# /usr/local/bin/container-manager-agent`), or the file given with --unit, or for a binary too old
# to print it container-manager-agent.service beside this script (a file's /usr/bin paths become
# /usr/local/bin). The file's SHA-256 must match HEX, or nothing is installed.
#
# The config (a file, or - for standard input) is validated with the new binary's check-config
# before it replaces /etc/container-manager/agent.toml; without --config the config already
# there is validated (with --no-start there may be none yet: an image build). The installed
# package's sha256 goes to /var/lib/container-manager/package.sha256. Then the unit is enabled
# and, unless --no-start, (re)started: restarted
# only when the package or the config changed. A second run with the same inputs changes
# nothing. Every option has an environment twin: CM_AGENT_URL, CM_AGENT_SHA256,
# CM_AGENT_CONFIG, CM_AGENT_UNIT, CM_AGENT_NO_START=1.
#
# Exit codes: 0 done; 1 failure (download, checksum, install); 2 usage; 78 invalid config.
set -euo pipefail

readonly UNIT=container-manager-agent.service
# Saves the game at shutdown when the agent did not (a dead agent); docs/packaging.md.
readonly SAVE_UNIT=container-manager-save.service
readonly CONFIG_DIR=/etc/container-manager
readonly CONFIG=$CONFIG_DIR/agent.toml
readonly SERVICE_USER=container-manager

url=${CM_AGENT_URL:-}
sha256=${CM_AGENT_SHA256:-}
config_src=${CM_AGENT_CONFIG:-}
unit_src=${CM_AGENT_UNIT:-}
no_start=${CM_AGENT_NO_START:-0}

log() { printf 'install-agent: %s\n' "$*" >&2; }
die() { log "error: $*"; exit "${2:-1}"; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2; }

while (($#)); do
    case $1 in
        --url) url=${2:?--url needs a value}; shift 2 ;;
        --sha256) sha256=${2:?--sha256 needs a value}; shift 2 ;;
        --config) config_src=${2:?--config needs a value}; shift 2 ;;
        --unit) unit_src=${2:?--unit needs a value}; shift 2 ;;
        --no-start) no_start=1; shift ;;
        -h|--help) usage ;;
        *) log "unknown argument: $1"; usage ;;
    esac
done

[[ -n $url ]] || die "no URL: pass --url or set CM_AGENT_URL" 2
[[ $sha256 =~ ^[0-9a-fA-F]{64}$ ]] || die "--sha256 must be 64 hex digits (got '${sha256}')" 2
sha256=${sha256,,}
((EUID == 0)) || die "must run as root"
for tool in curl sha256sum systemctl; do
    command -v "$tool" >/dev/null || die "$tool is required"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Read the config first: standard input may be a pipe that is gone later.
if [[ -n $config_src ]]; then
    if [[ $config_src == - ]]; then
        cat >"$work/agent.toml"
    else
        [[ -r $config_src ]] || die "cannot read the config $config_src"
        cat -- "$config_src" >"$work/agent.toml"
    fi
fi

# --- Download and verify. Nothing on the system changes before the checksum matches. --------
path=${url%%[?#]*}
case ${path,,} in
    *.rpm) kind=rpm ;;
    *.deb) kind=deb ;;
    *) kind=bin ;;
esac
file=$work/agent.$kind
if [[ $url == file://* ]]; then
    # A file already on this machine (the AMI recipe's S3Download put it there).
    cp -- "${url#file://}" "$file" || die "cannot read ${url#file://}"
else
    log "downloading $url"
    curl --fail --silent --show-error --location --proto '=https,http' --retry 5 --retry-delay 2 \
        --connect-timeout 20 -o "$file" -- "$url" || die "download failed: $url"
fi
actual=$(sha256sum "$file" | cut -d' ' -f1)
if [[ $actual != "$sha256" ]]; then
    die "checksum mismatch for $url: expected $sha256, got $actual; nothing was installed"
fi
log "sha256 verified ($actual)"

changed=0

# --- Install. -----------------------------------------------------------------------------------
case $kind in
    deb)
        command -v dpkg >/dev/null || die "a .deb needs dpkg; use the .rpm or the binary here"
        name=$(dpkg-deb --field "$file" Package)
        want=$(dpkg-deb --field "$file" Version)
        have=$(dpkg-query --show --showformat='${db:Status-Abbrev}${Version}' "$name" 2>/dev/null || true)
        if [[ $have == "ii ${want}" ]]; then
            log "$name $want is already installed"
        else
            log "installing $name $want"
            # Keep an operator's config on upgrade (the config is managed by this script).
            opts=(-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
            if command -v apt-get >/dev/null; then
                DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${opts[@]}" "$file" >&2
            else
                dpkg --force-confdef --force-confold -i "$file" >&2
            fi
            changed=1
        fi
        bin=/usr/bin/container-manager-agent
        ;;
    rpm)
        command -v rpm >/dev/null || die "an .rpm needs rpm; use the .deb or the binary here"
        want=$(rpm -qp --qf '%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}' "$file")
        name=$(rpm -qp --qf '%{NAME}' "$file")
        if rpm -q "$want" >/dev/null 2>&1; then
            log "$want is already installed"
        else
            log "installing $want"
            if command -v dnf >/dev/null; then
                dnf install -y -q "$file" >&2
            elif command -v yum >/dev/null; then
                yum install -y -q "$file" >&2
            else
                rpm -U --replacepkgs "$file" >&2
            fi
            changed=1
        fi
        bin=/usr/bin/container-manager-agent
        ;;
    bin)
        bin=/usr/local/bin/container-manager-agent
        [[ -z $unit_src || -r $unit_src ]] || die "cannot read the unit file $unit_src (--unit)"
        head -c 4 "$file" | grep -q $'^\x7fELF' || die "$url is neither .rpm, .deb nor an ELF binary"
        chmod 0755 "$file"
        # The same hardened unit as the packages, printed by the binary being installed, so the
        # unit always matches the binary. A binary from before print-unit falls back to the unit
        # beside this script (as in the source tree).
        beside=$(dirname "$(readlink -f "$0")")/$UNIT
        if [[ -z $unit_src ]] && ! { "$file" print-unit --binary "$bin" >"$work/$UNIT" 2>"$work/print-unit.err" &&
            grep -q '^\[Service\]' "$work/$UNIT"; }; then
            [[ -r $beside ]] || die "$url cannot print its unit ($(cat "$work/print-unit.err")), and there is no $beside: pass --unit"
            log "the binary cannot print its unit; using $beside"
            unit_src=$beside
        fi
        if [[ -n $unit_src ]]; then
            # The packaged unit names /usr/bin; this install lives in /usr/local/bin.
            sed -e 's#/usr/bin/container-manager-agent#/usr/local/bin/container-manager-agent#g' \
                "$unit_src" >"$work/$UNIT"
        fi
        # The unit is ready before anything is installed: a unit that cannot be had changes nothing.
        if ! cmp -s "$file" "$bin"; then
            log "installing $bin"
            install -D -m 0755 "$file" "$bin.new" && mv -f "$bin.new" "$bin"
            changed=1
        fi
        if ! cmp -s "$work/$UNIT" "/etc/systemd/system/$UNIT"; then
            log "installing /etc/systemd/system/$UNIT"
            install -D -m 0644 "$work/$UNIT" "/etc/systemd/system/$UNIT"
            changed=1
        fi
        # The save unit, printed by the same binary (one from before save-game has none).
        if "$bin" print-save-unit --binary "$bin" >"$work/$SAVE_UNIT" 2>/dev/null &&
            grep -q '^ExecStop=' "$work/$SAVE_UNIT"; then
            if ! cmp -s "$work/$SAVE_UNIT" "/etc/systemd/system/$SAVE_UNIT"; then
                log "installing /etc/systemd/system/$SAVE_UNIT"
                install -D -m 0644 "$work/$SAVE_UNIT" "/etc/systemd/system/$SAVE_UNIT"
                changed=1
            fi
        else
            log "this binary cannot print the save unit; no save at shutdown without the agent"
        fi
        # What the packages do with sysusers.d: the service user, and the docker group that
        # the unit's SupplementaryGroups= needs.
        getent group docker >/dev/null || groupadd --system docker
        if ! getent passwd "$SERVICE_USER" >/dev/null; then
            useradd --system --user-group --no-create-home --home-dir / \
                --shell "$(command -v nologin || echo /usr/sbin/nologin)" \
                --comment "container-manager agent" "$SERVICE_USER"
        fi
        ;;
esac
[[ -x $bin ]] || die "$bin is missing after the install"
# Which package is installed: the stack's user data skips its download when this matches
# AgentPackageSha256 (a baked image, cloud/ami-recipe.yaml).
# Written only when it changes, so that a second run with the same inputs changes nothing.
if [[ $(cat /var/lib/container-manager/package.sha256 2>/dev/null) != "$sha256" ]]; then
    install -d -m 0755 /var/lib/container-manager
    echo "$sha256" >/var/lib/container-manager/package.sha256
fi

# --- Config: validated by the installed binary before it is put in place. -----------------------
if [[ -f $work/agent.toml ]]; then
    "$bin" check-config --config "$work/agent.toml" >&2 || die "the given config is invalid; $CONFIG is unchanged" 78
    if cmp -s "$work/agent.toml" "$CONFIG"; then
        log "$CONFIG is up to date"
    else
        log "writing $CONFIG"
        install -d -m 0755 "$CONFIG_DIR"
        install -m 0644 "$work/agent.toml" "$CONFIG.new" && mv -f "$CONFIG.new" "$CONFIG"
        changed=1
    fi
elif [[ ! -f $CONFIG ]] && ((no_start)); then
    # An image build: the instance's user data writes the config, and until then the unit's
    # ConditionPathExists= skips the agent.
    log "no config yet (--no-start): $UNIT stays skipped until $CONFIG is written"
else
    [[ -f $CONFIG ]] || die "no config: pass --config FILE (or - for standard input)" 78
    "$bin" check-config --config "$CONFIG" >&2 || die "$CONFIG is invalid" 78
fi

# --- Enable and start. ----------------------------------------------------------------------------
booted=0
[[ -d /run/systemd/system ]] && booted=1
if ((booted)) && ((changed)); then
    systemctl daemon-reload
fi
if systemctl is-enabled --quiet "$UNIT" 2>/dev/null; then
    log "$UNIT is enabled"
else
    systemctl enable --quiet "$UNIT"
    log "enabled $UNIT"
fi
# The save unit only acts when it is stopped (at shutdown), so it must be active: enabled for
# every boot, and started now when systemd runs.
if [[ -f /etc/systemd/system/$SAVE_UNIT || -f /usr/lib/systemd/system/$SAVE_UNIT ]]; then
    systemctl is-enabled --quiet "$SAVE_UNIT" 2>/dev/null || { systemctl enable --quiet "$SAVE_UNIT" && log "enabled $SAVE_UNIT"; }
    if ((booted)) && ! ((no_start)); then
        systemctl start "$SAVE_UNIT" && log "$SAVE_UNIT is active"
    fi
fi
if ((no_start)); then
    log "not starting $UNIT (--no-start)"
elif ((!booted)); then
    log "systemd is not running here (image build or chroot); $UNIT starts at the next boot"
elif ((changed)); then
    systemctl reset-failed "$UNIT" 2>/dev/null || true
    systemctl restart "$UNIT"
    log "restarted $UNIT"
elif systemctl is-active --quiet "$UNIT"; then
    log "$UNIT is running"
else
    systemctl reset-failed "$UNIT" 2>/dev/null || true
    systemctl start "$UNIT"
    log "started $UNIT"
fi
log "done"
