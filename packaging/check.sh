#!/usr/bin/env bash
# The packaging check (`make package-check`): builds the release binary once and both packages,
# then checks them, the unit, the installer and the AMI template; docs/packaging.md lists the
# steps. Needs root (debootstrap, chroot). Ends with "packaging: N passed, M failed" and exits
# non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/container-manager/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
VENV=${CM_VENV:-$ROOT/tests/.venv}
MAX_EXPOSURE=2.5
MAX_GLIBC=2.34
UNIT=container-manager-agent.service
SAVE_UNIT=container-manager-save.service
START=$SECONDS

passed=0
failed=0
pass() { passed=$((passed + 1)); printf 'PASS  %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL  %s\n' "$*"; }
indent() { sed 's/^/      /'; }
# check NAME CMD...: one counted step; CMD's output is shown only when it fails.
check() {
    local name=$1 log
    shift
    log=$(mktemp "$WORK/log.XXXXXX")
    if "$@" >"$log" 2>&1; then
        pass "$name"
    else
        fail "$name"
        tail -n 40 "$log" | indent
        return 1
    fi
}
# Cleans up first, so that the summary line is the last thing printed and the time is complete.
summary() {
    [[ -n ${WORK:-} ]] && cleanup
    trap - EXIT
    echo "packaging: wall time $((SECONDS - START)) s"
    echo "packaging: $passed passed, $failed failed"
    ((failed == 0))
    exit
}

((EUID == 0)) || { echo "packaging/check.sh needs root (debootstrap, chroot)" >&2; fail "running as root"; summary; }

WORK=
HTTP_PID=
CONTAINER=
cleanup() {
    [[ -n $HTTP_PID ]] && kill "$HTTP_PID" 2>/dev/null
    [[ -n $CONTAINER ]] && docker rm -f "$CONTAINER" >/dev/null 2>&1
    [[ $WORK == /var/tmp/cm-package-check.* ]] || return 0
    # Unmount whatever the chroots mounted before deleting, and never cross into a mount.
    awk -v r="$WORK/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
        umount -l "$m" || true
    done
    rm -rf --one-file-system "$WORK"
    WORK='' HTTP_PID='' CONTAINER=''
}
trap cleanup EXIT
WORK=$(mktemp -d /var/tmp/cm-package-check.XXXXXX)

# --- Tools ----------------------------------------------------------------------------------------
need=0
for tool in lintian rpm debootstrap systemd-analyze objdump curl python3 cargo-deb cargo-generate-rpm; do
    command -v "$tool" >/dev/null || need=1
done
[[ -x $VENV/bin/cfn-lint && -x $VENV/bin/checkov ]] || need=1
if ((need)); then
    echo "== installing the missing tools (tests/harness/setup.sh)"
    tests/harness/setup.sh 2>&1 | indent
fi

# --- Build: one release binary, both packages -------------------------------------------------
echo "== build"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' agent/Cargo.toml | head -n1)
BIN=$CARGO_TARGET_DIR/release/container-manager-agent
DEB=$ROOT/dist/container-manager-agent_${version}-1_amd64.deb
RPM=$ROOT/dist/container-manager-agent-${version}-1.x86_64.rpm
t=$SECONDS
# The .rpm first, into no dist/, as the deploy command builds it on a fresh clone.
rm -rf "$ROOT/dist"
if make --no-print-directory rpm deb >"$WORK/build.log" 2>&1 && [[ -f $DEB && -f $RPM && -x $BIN ]]; then
    pass "release build, make deb, make rpm ($((SECONDS - t)) s): ${DEB#"$ROOT"/}, ${RPM#"$ROOT"/}"
else
    fail "release build, make deb, make rpm"
    tail -n 40 "$WORK/build.log" | indent
    summary
fi

# --- lintian ---------------------------------------------------------------------------------------
echo "== lintian"
lintian "$DEB" >"$WORK/lintian.log" 2>&1
if [[ -s $WORK/lintian.log ]]; then indent <"$WORK/lintian.log"; else echo "      (no output)"; fi
if grep -qE '^[EW]: ' "$WORK/lintian.log"; then
    fail "lintian: errors or warnings"
else
    pass "lintian: no errors, no warnings"
fi

# --- rpm metadata and contents ---------------------------------------------------------------------
echo "== rpm -qpi / -qpl"
rpm -qpi "$RPM" 2>&1 | indent
rpm -qpl "$RPM" 2>&1 | indent
rpm_contents() {
    local files want
    files=$(rpm -qpl "$RPM")
    for want in /usr/bin/container-manager-agent /usr/lib/systemd/system/$UNIT \
        /etc/container-manager/agent.toml /usr/lib/sysusers.d/container-manager-agent.conf; do
        grep -qxF "$want" <<<"$files" || { echo "missing $want"; return 1; }
    done
    [[ $(rpm -qpc "$RPM") == /etc/container-manager/agent.toml ]] || { echo "config files: $(rpm -qpc "$RPM")"; return 1; }
    rpm -qp --qf '%{NAME} %{VERSION} %{LICENSE} %{SUMMARY}\n' "$RPM" | grep -q "^container-manager-agent $version MIT ." || return 1
    rpm -qp --requires "$RPM" | grep -q '^systemd' || { echo "no Requires: systemd"; return 1; }
    rpm -qp --scripts "$RPM" | grep -q 'systemd-sysusers' || { echo "no user creation"; return 1; }
}
check "rpm: binary, unit, config (%config), sysusers.d; name, version, licence, requires, scriptlets" rpm_contents

# --- glibc ----------------------------------------------------------------------------------------
echo "== glibc"
if packaging/check-glibc.sh "$BIN" "$MAX_GLIBC" >"$WORK/glibc.log" 2>&1; then
    indent <"$WORK/glibc.log"
    pass "glibc: no symbol newer than GLIBC_$MAX_GLIBC"
else
    indent <"$WORK/glibc.log"
    fail "glibc: symbols newer than GLIBC_$MAX_GLIBC"
fi

# --- systemd-analyze security -----------------------------------------------------------------------
echo "== systemd-analyze security"
exposure=$(systemd-analyze security --offline=true --no-pager "packaging/$UNIT" 2>&1 |
    sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
echo "      exposure: ${exposure:-?} (limit $MAX_EXPOSURE)"
if [[ -n $exposure ]] && awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN {exit !(e <= m)}'; then
    pass "systemd-analyze security: exposure $exposure <= $MAX_EXPOSURE"
else
    fail "systemd-analyze security: exposure ${exposure:-unknown} > $MAX_EXPOSURE"
fi
save_exposure=$(systemd-analyze security --offline=true --no-pager "packaging/$SAVE_UNIT" 2>&1 |
    sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
echo "      save unit exposure: ${save_exposure:-?} (limit $MAX_EXPOSURE)"
if [[ -n $save_exposure ]] && awk -v e="$save_exposure" -v m="$MAX_EXPOSURE" 'BEGIN {exit !(e <= m)}'; then
    pass "systemd-analyze security ($SAVE_UNIT): exposure $save_exposure <= $MAX_EXPOSURE"
else
    fail "systemd-analyze security ($SAVE_UNIT): exposure ${save_exposure:-unknown} > $MAX_EXPOSURE"
fi

# --- Root filesystems -------------------------------------------------------------------------------
echo "== Debian bookworm root filesystem"
if ! TARBALL=$(packaging/rootfs.sh 2>"$WORK/rootfs.log"); then
    fail "debootstrap the bookworm root filesystem"
    tail -n 30 "$WORK/rootfs.log" | indent
    summary
fi
echo "      $TARBALL"
# new_root NAME: a fresh copy of the cached root filesystem, with /proc and /dev mounted.
new_root() {
    local r=$WORK/$1
    mkdir -p "$r"
    tar -C "$r" -xf "$TARBALL"
    mount -t proc proc "$r/proc"
    mount --bind /dev "$r/dev"
    echo "$r"
}
in_root() {
    local r=$1
    shift
    chroot "$r" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LC_ALL=C.UTF-8 "$@"
}
# snapshot ROOT: every file's path, type, size, mode, owner and mtime (not /proc, /dev, /tmp).
snapshot() {
    local r=$1
    (cd "$r" && find . -xdev \( -path ./proc -o -path ./dev -o -path ./tmp \) -prune -o \
        -printf '%p %y %s %m %U:%G %T@\n' | sort)
}
unit_exec() { sed -n "s/^$2=\([^ ]*\).*/\1/p" "$1" | head -n1; }
unit_config() { sed -n 's/^ExecStart=.*--config \([^ ]*\).*/\1/p' "$1" | head -n1; }

# --- dpkg -i into minbase ----------------------------------------------------------------------------
echo "== dpkg -i in the root filesystem"
A=$(new_root dpkg)
cp "$DEB" "$A/tmp/agent.deb"
check "dpkg -i the .deb in a minbase root filesystem (dependencies satisfied)" in_root "$A" dpkg -i /tmp/agent.deb
unit_path=$(in_root "$A" dpkg -L container-manager-agent | grep "/systemd/system/$UNIT\$" | head -n1)
echo "      unit: ${unit_path:-not installed}"
check "systemd-analyze verify $unit_path (chroot)" \
    bash -c 'out=$(chroot "$1" systemd-analyze verify "$2" 2>&1); rc=$?; echo "$out"; [[ $rc == 0 && -z $out ]]' _ "$A" "$unit_path"
installed_paths() {
    local u=$A$unit_path start pre config
    start=$(unit_exec "$u" ExecStart)
    pre=$(unit_exec "$u" ExecStartPre)
    config=$(unit_config "$u")
    echo "ExecStart=$start ExecStartPre=$pre config=$config"
    [[ -x $A$start && -x $A$pre && -f $A$config ]] || return 1
    in_root "$A" dpkg-query -W -f='${Conffiles}\n' container-manager-agent | grep -q " $config " || { echo "$config is not a conffile"; return 1; }
    in_root "$A" "$start" check-config --config "$config"
}
check "binary and conffile where the unit's ExecStart/ExecStartPre/--config expect them; example config valid" installed_paths
installed_state() {
    in_root "$A" getent passwd container-manager && in_root "$A" getent group docker &&
        [[ $(in_root "$A" systemctl is-enabled $UNIT) == enabled ]] &&
        [[ $(in_root "$A" systemctl is-enabled $SAVE_UNIT) == enabled ]] &&
        chroot "$A" systemd-analyze verify "/usr/lib/systemd/system/$SAVE_UNIT" &&
        [[ -f $A/usr/share/doc/container-manager-agent/copyright ]]
}
check "postinst: user container-manager and group docker exist, agent and save units enabled (save unit verified), copyright shipped" installed_state
purged() {
    in_root "$A" dpkg --purge container-manager-agent || return 1
    ! in_root "$A" getent passwd container-manager || { echo "user still there"; return 1; }
    [[ ! -e $A/etc/container-manager && ! -e $A$unit_path && ! -e $A/usr/bin/container-manager-agent ]] || { echo "files left"; return 1; }
    [[ -z $(find "$A/etc/systemd/system" -name "$UNIT" -o -name "$SAVE_UNIT") ]] || { echo "enablement symlink left"; return 1; }
}
check "dpkg --purge removes the binary, unit, config, enablement and user" purged

# --- install-agent.sh ----------------------------------------------------------------------------------
echo "== install-agent.sh in the root filesystem, from a loopback HTTP server"
www=$WORK/www
mkdir -p "$www"
cp "$DEB" "$www/agent.deb"
cp "$BIN" "$www/container-manager-agent"
python3 -u -m http.server --bind 127.0.0.1 --directory "$www" 0 >"$WORK/http.log" 2>&1 &
HTTP_PID=$!
port=
for _ in $(seq 1 300); do
    port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$WORK/http.log" | head -n1)
    [[ -n $port ]] && break
    sleep 0.1
done
if [[ -z $port ]]; then
    fail "loopback HTTP server did not start"
    indent <"$WORK/http.log"
    summary
fi
URL=http://127.0.0.1:$port
deb_sha=$(sha256sum "$www/agent.deb" | cut -d' ' -f1)
bin_sha=$(sha256sum "$www/container-manager-agent" | cut -d' ' -f1)
echo "      serving $www on $URL"

cat >"$WORK/agent.toml" <<'EOF'
# The packaging check's config: valid, and different from the packaged example.
[container]
docker_name = "game"
stop_timeout = "30s"

[activity]
ports = ["udp:2456-2458", "tcp:25565"]
EOF
printf '[container]\ndocker_name = "game"\n\n[activity]\nports = ["udp:70000"]\n' >"$WORK/bad.toml"
stage_installer() {
    mkdir -p "$1/tmp/cm"
    cp packaging/install-agent.sh "packaging/$UNIT" "$WORK/agent.toml" "$WORK/bad.toml" "$1/tmp/cm/"
}

B=$(new_root installer)
stage_installer "$B"
happy() {
    in_root "$B" bash /tmp/cm/install-agent.sh --url "$URL/agent.deb" --sha256 "$deb_sha" --config - \
        <"$WORK/agent.toml" || return 1
    cmp "$WORK/agent.toml" "$B/etc/container-manager/agent.toml" || return 1
    [[ $(in_root "$B" dpkg-query -W -f='${db:Status-Abbrev}' container-manager-agent) == "ii " ]] || return 1
    [[ $(in_root "$B" systemctl is-enabled $UNIT) == enabled ]] || return 1
    [[ -x $B/usr/bin/container-manager-agent ]]
}
check "installer, .deb: downloads, verifies, installs, writes the config from stdin, enables" happy
before=$(snapshot "$B")
again() {
    in_root "$B" bash /tmp/cm/install-agent.sh --url "$URL/agent.deb" --sha256 "$deb_sha" \
        --config /tmp/cm/agent.toml || return 1
    diff <(echo "$before") <(snapshot "$B")
}
check "installer, second run with the same inputs: exit 0, no file changed" again
refused() {
    local rc=0
    in_root "$B" bash /tmp/cm/install-agent.sh --url "$URL/agent.deb" --sha256 "$deb_sha" \
        --config /tmp/cm/bad.toml || rc=$?
    echo "exit code $rc"
    ((rc == 78)) && cmp "$WORK/agent.toml" "$B/etc/container-manager/agent.toml"
}
check "installer, invalid config: exit 78, the installed config kept" refused

C=$(new_root fresh)
stage_installer "$C"
before=$(snapshot "$C")
mismatch() {
    local rc=0
    in_root "$C" bash /tmp/cm/install-agent.sh --url "$URL/agent.deb" --sha256 "$(printf '0%.0s' {1..64})" \
        --config /tmp/cm/agent.toml 2>"$WORK/mismatch.err" || rc=$?
    cat "$WORK/mismatch.err"
    ((rc != 0)) && grep -q 'checksum mismatch' "$WORK/mismatch.err" || return 1
    diff <(echo "$before") <(snapshot "$C")
}
check "installer, wrong checksum on a fresh root filesystem: fails loudly, no file changed" mismatch
bare() {
    # No unit file beside the installer: the binary prints its own, the packaged one.
    rm -f "$C/tmp/cm/$UNIT"
    in_root "$C" bash /tmp/cm/install-agent.sh --url "$URL/container-manager-agent" --sha256 "$bin_sha" \
        --config /tmp/cm/agent.toml || return 1
    local u=$C/etc/systemd/system/$UNIT
    [[ -x $C/usr/local/bin/container-manager-agent && -f $u ]] || return 1
    [[ $(unit_exec "$u" ExecStart) == /usr/local/bin/container-manager-agent ]] || return 1
    diff <(sed 's#/usr/bin/container-manager-agent#/usr/local/bin/container-manager-agent#g' "packaging/$UNIT") "$u" || return 1
    chroot "$C" systemd-analyze verify "/etc/systemd/system/$UNIT" || return 1
    diff <(sed 's#/usr/bin/container-manager-agent#/usr/local/bin/container-manager-agent#g' "packaging/$SAVE_UNIT") \
        "$C/etc/systemd/system/$SAVE_UNIT" || return 1
    chroot "$C" systemd-analyze verify "/etc/systemd/system/$SAVE_UNIT" || return 1
    [[ $(in_root "$C" systemctl is-enabled $SAVE_UNIT) == enabled ]] || return 1
    in_root "$C" getent passwd container-manager && [[ $(in_root "$C" systemctl is-enabled $UNIT) == enabled ]] || return 1
    local snap
    snap=$(snapshot "$C")
    in_root "$C" bash /tmp/cm/install-agent.sh --url "$URL/container-manager-agent" --sha256 "$bin_sha" \
        --config /tmp/cm/agent.toml || return 1
    diff <(echo "$snap") <(snapshot "$C")
}
check "installer, bare binary: /usr/local/bin, the packaged units printed by the binary and verified, user, enabled; second run changes nothing" bare

# --- The unit under a real systemd ------------------------------------------------------------------
# The same root filesystem as a Docker container that boots systemd, with no network at all: the
# unit's sandbox is applied for real, Type=notify must see READY=1, and the service must run as
# its user with CAP_NET_RAW alone.
echo "== the unit under systemd (a container of the root filesystem, --network none)"
boot_systemd() {
    local image state
    image=cm-package-check/bookworm:$(stat -c %s-%Y "$TARBALL")
    # dockerd may be restarting (other suites on this machine restart it): give it a minute.
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "dockerd is not running"; return 1; }
    docker image inspect "$image" >/dev/null 2>&1 || docker import "$TARBALL" "$image" >/dev/null || return 1
    CONTAINER=cm-package-check-$$
    docker run -d --name "$CONTAINER" --network none --cap-add SYS_ADMIN \
        --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
        -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
        -e container=docker "$image" /lib/systemd/systemd >/dev/null || return 1
    for _ in $(seq 1 60); do
        state=$(docker exec "$CONTAINER" systemctl is-system-running 2>/dev/null)
        [[ $state == running || $state == degraded ]] && break
        sleep 0.5
    done
    echo "system: $state"
    [[ $state == running || $state == degraded ]] || return 1
    docker cp "$DEB" "$CONTAINER:/var/agent.deb" && docker exec "$CONTAINER" dpkg -i /var/agent.deb &&
        docker cp "$WORK/agent.toml" "$CONTAINER:/etc/container-manager/agent.toml"
}
in_container() { docker exec "$CONTAINER" "$@"; }
runs_sandboxed() {
    local pid uid
    in_container systemctl start $UNIT || { in_container journalctl -u $UNIT --no-pager; return 1; }
    [[ $(in_container systemctl is-active $UNIT) == active ]] || return 1
    pid=$(in_container systemctl show -P MainPID $UNIT)
    in_container grep -E '^(Uid|CapEff|CapAmb|CapBnd|NoNewPrivs|Seccomp):' "/proc/$pid/status"
    uid=$(in_container id -u container-manager)
    in_container grep -qE "^Uid:\\s+$uid\\s+$uid\\s" "/proc/$pid/status" || { echo "not the service user ($uid)"; return 1; }
    # Bit 13 alone: CAP_NET_RAW.
    in_container grep -qE '^CapEff:\s+0000000000002000$' "/proc/$pid/status" || { echo "capabilities"; return 1; }
    in_container grep -qE '^Seccomp:\s+2$' "/proc/$pid/status" || { echo "no seccomp filter"; return 1; }
    in_container systemctl stop $UNIT || return 1
    [[ $(in_container systemctl show -P Result $UNIT) == success ]]
}
config_failures() {
    in_container sh -c 'printf "[container]\n" >/etc/container-manager/agent.toml'
    ! in_container systemctl start $UNIT || { echo "started with an invalid config"; return 1; }
    in_container journalctl -u $UNIT --no-pager | grep 'status=78/CONFIG' || return 1
    in_container systemctl stop $UNIT
    in_container systemctl reset-failed $UNIT
    in_container rm /etc/container-manager/agent.toml
    in_container systemctl start $UNIT || return 1
    [[ $(in_container systemctl show -P ConditionResult $UNIT) == no ]] || { echo "condition"; return 1; }
    ! in_container systemctl is-failed --quiet $UNIT
}
if check "systemd boots in the container; dpkg -i; the check's config" boot_systemd; then
    check "unit under systemd: starts (READY=1), runs as container-manager with CAP_NET_RAW only and seccomp, stops cleanly" runs_sandboxed
    check "unit under systemd: invalid config fails ExecStartPre with 78; no config: skipped, not failed" config_failures
fi

# --- The AMI recipe -------------------------------------------------------------------------------------
echo "== cloud/ami-recipe.yaml"
check "cfn-lint cloud/ami-recipe.yaml: no errors, no warnings" "$VENV/bin/cfn-lint" cloud/ami-recipe.yaml
checkov_clean() {
    local out
    out=$(cd "$WORK" && env -i PATH=/usr/bin:/bin HOME="$WORK" BC_SKIP_MAPPING=TRUE \
        "$VENV/bin/checkov" -f "$ROOT/cloud/ami-recipe.yaml" --framework cloudformation \
        --skip-download --compact --quiet) || { echo "$out"; return 1; }
    echo "$out"
}
check "checkov cloud/ami-recipe.yaml: no failed checks" checkov_clean

summary
