#!/usr/bin/env bash
# Installs and starts everything the tests, the demo and the benchmarks need, on a fresh
# Debian machine, as root. Idempotent: a second run only checks.
#   setup.sh        everything (make test, make bench)
#   setup.sh demo   only what `make demo` uses: no packaging tools, no busybox test image
# It installs (and on a machine with no debug build yet, builds; see below):
#   - Debian packages (docker.io, iproute2, debootstrap, systemd's journalctl; for the tests also
#     busybox-static, tcpdump and the packaging tools)
#   - tests/.venv with moto[server], the CloudFormation linters and the twin's DNS server
#     (tests/requirements.txt)
#   - tools/nag/node_modules: cdk-nag and aws-cdk-lib from npm, the third template scanner
#     (tools/nag/package-lock.json)
#   - dockerd, if it is not running
#   - the cloud twin's images (tests/twin/images.sh)
#   - for `all`, the cargo tools cargo-deb and cargo-generate-rpm, into ~/.cargo/bin once
set -euo pipefail
cd "$(dirname "$0")/../.."
log() { printf '[setup] %s\n' "$*" >&2; }
# step MESSAGE: logs the step, and the time the step before it took (the steps print their own
# figures, so a slow first run shows where its time went).
step_name='' step_start=$SECONDS setup_start=$SECONDS
step() {
  [ -n "$step_name" ] && log "$step_name: $((SECONDS - step_start)) s"
  step_name=$1 step_start=$SECONDS
  [ -n "$1" ] && log "$1"
  return 0
}
mode=${1:-all}
case $mode in all | demo) ;; *) log "usage: setup.sh [all|demo]"; exit 2 ;; esac
CACHE=${CM_CACHE:-/var/cache/container-manager}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
mkdir -p "$CACHE"

# Compiling is the one step here that needs the CPU; the others wait on the network and the disk
# (apt, pip, debootstrap). So on a machine with no debug build yet, the first build runs in the
# background from the start, followed (for `all`) by the cargo tools the packages need, and
# setup waits for both at the end. The build is the one `make test` and `make check` run next
# (`cargo test --no-run`, which also builds the agent binary), so they find it done.
bg_pid='' bg_log=$CACHE/setup-build.log
bg_steps=()
if [ ! -x "$CARGO_TARGET_DIR/debug/container-manager-agent" ]; then
  if [ "$mode" = all ]; then
    bg_steps+=("cargo test --workspace --lib --tests --no-run")
  else
    bg_steps+=("cargo test -p container-manager-agent --lib --test cli --no-run")
  fi
fi
if [ "$mode" = all ]; then
  for tool in cargo-deb cargo-generate-rpm; do
    command -v $tool >/dev/null 2>&1 || bg_steps+=("cargo install -q --locked $tool")
  done
fi
if [ ${#bg_steps[@]} -gt 0 ]; then
  log "in the background (log: $bg_log): ${bg_steps[*]}"
  (
    for cmd in "${bg_steps[@]}"; do
      start=$SECONDS
      $cmd || exit
      echo "[setup] $cmd: $((SECONDS - start)) s"
    done
  ) >"$bg_log" 2>&1 &
  bg_pid=$!
fi

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v journalctl >/dev/null 2>&1 || need+=(systemd)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ "$mode" = all ]; then
  [ -x /bin/busybox ] || need+=(busybox-static)
  command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
  command -v lintian >/dev/null 2>&1 || need+=(lintian)
  command -v rpm >/dev/null 2>&1 || need+=(rpm)
  command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
  command -v objdump >/dev/null 2>&1 || need+=(binutils)
fi
if [ ${#need[@]} -gt 0 ]; then
  step "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The Python venv for the AWS emulator and the template checks. It lives outside the clone,
# keyed by the hash of tests/requirements.txt (as the Cargo target directory is kept outside it),
# so a fresh clone on the same machine reuses it; tests/.venv is a link to it. A venv cannot be
# moved once made (its scripts name their own path), so it is made in place and marked complete
# only at the end: a half-made one is made again.
want=$(sha256sum tests/requirements.txt | cut -c1-16)
venv_real=$CACHE/venv/$want
if [ ! -f "$venv_real/.complete" ]; then
  step "creating the Python venv $venv_real (tests/requirements.txt)"
  rm -rf "$venv_real"
  mkdir -p "$CACHE/venv"
  python3 -m venv "$venv_real"
  "$venv_real/bin/pip" install -q --upgrade pip
  "$venv_real/bin/pip" install -q -r tests/requirements.txt
  touch "$venv_real/.complete"
fi
if [ "$(readlink tests/.venv 2>/dev/null)" != "$venv_real" ]; then
  rm -rf tests/.venv
  ln -s "$venv_real" tests/.venv
fi

# The template scanner's packages (tools/nag): like the venv, outside the clone, keyed by the hash
# of the lock file, and linked in as tools/nag/node_modules.
want=$(sha256sum tools/nag/package-lock.json | cut -c1-16)
nag_real=$CACHE/nag/$want
if [ ! -f "$nag_real/.complete" ]; then
  step "installing the template scanner's packages into $nag_real (tools/nag/package-lock.json)"
  rm -rf "$nag_real"
  mkdir -p "$nag_real"
  cp tools/nag/package.json tools/nag/package-lock.json "$nag_real/"
  (cd "$nag_real" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  touch "$nag_real/.complete"
fi
if [ "$(readlink tools/nag/node_modules 2>/dev/null)" != "$nag_real/node_modules" ]; then
  rm -rf tools/nag/node_modules
  ln -s "$nag_real/node_modules" tools/nag/node_modules
fi

# dockerd, started in the background when no daemon answers.
if ! docker info >/dev/null 2>&1; then
  step "starting dockerd"
  mkdir -p tests/.cache
  nohup dockerd >tests/.cache/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see tests/.cache/dockerd.log"; tail -20 tests/.cache/dockerd.log >&2; exit 1; }
fi

# The cloud twin's instance and game images (debootstrap once, then cached).
step "the cloud twin's images (tests/twin/images.sh)"
tests/twin/images.sh >/dev/null

# The tiny test image: busybox-static as the rootfs, built with docker import (no registry).
if [ "$mode" = all ] && ! docker image inspect cm-test/busybox:1 >/dev/null 2>&1; then
  step "building the test image cm-test/busybox:1"
  tmp=$(mktemp -d)
  mkdir -p "$tmp/bin" "$tmp/tmp" "$tmp/data" "$tmp/proc" "$tmp/sys" "$tmp/dev" "$tmp/etc"
  cp /bin/busybox "$tmp/bin/busybox"
  for app in sh sleep echo cat trap kill date touch ls head tail true false seq printf dd yes; do
    ln -sf busybox "$tmp/bin/$app"
  done
  tar -C "$tmp" -c . | docker import -c 'ENTRYPOINT ["/bin/sh"]' - cm-test/busybox:1 >/dev/null
  rm -rf "$tmp"
fi
if [ -n "$bg_pid" ]; then
  step "waiting for the background build and tools"
  if ! wait "$bg_pid"; then
    step ""
    log "the background build failed; the end of $bg_log:"
    tail -n 40 "$bg_log" >&2
    exit 1
  fi
  grep '^\[setup\]' "$bg_log" >&2 || true
fi
step ""
log "ready ($((SECONDS - setup_start)) s)"
