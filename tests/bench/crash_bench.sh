#!/usr/bin/env bash
# Time from the game container's death to the agent's classification, over repeated crashes.
#
# Runs `container-manager-agent containers --docker-name X` and, for each of N crashes
# (exit 3), compares the `time` of its `exited` line with the container's State.FinishedAt
# from `docker inspect`. Prints each run, then the median and the max in ms.
#
#   tests/bench/crash_bench.sh [RUNS]      (default 10)
#   BIN=path/to/container-manager-agent tests/bench/crash_bench.sh
#
# Needs dockerd and the cm-test/busybox:1 image (tests/harness/setup.sh). The full agent's
# death-to-scale_in_requested time is measured once the AWS adapters exist.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-10}
bin=${BIN:-${CARGO_TARGET_DIR:-target}/debug/container-manager-agent}
[ -x "$bin" ] || { echo "no binary at $bin (cargo build, or set BIN)" >&2; exit 1; }
name="cmct-bench-$$"
work=$(mktemp -d)
cleanup() {
  [ -n "${agent:-}" ] && kill "$agent" 2>/dev/null && wait "$agent" 2>/dev/null || true
  docker rm -f "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" containers --docker-name "$name" >"$work/out" 2>"$work/err" &
agent=$!
for _ in $(seq 1 100); do grep -q "Watching the game container" "$work/err" && break; sleep 0.1; done

to_ns() { date -u -d "$1" +%s%N; }
deltas=()
for i in $(seq 1 "$runs"); do
  docker rm -f "$name" >/dev/null 2>&1 || true
  before=$(grep -c '"event":"exited"' "$work/out" || true)
  id=$(docker run -d --name "$name" --label cmct.test=bench --network host cm-test/busybox:1 \
    -c 'echo playing; sleep 0.5; echo crashing >&2; exit 3')
  for _ in $(seq 1 100); do
    [ "$(grep -c '"event":"exited"' "$work/out" || true)" -gt "$before" ] && break
    sleep 0.1
  done
  line=$(grep '"event":"exited"' "$work/out" | tail -1)
  seen=$(printf '%s' "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["time"])')
  crash=$(printf '%s' "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["crash"])')
  event=$(printf '%s' "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["docker_time"])')
  finished=$(docker inspect -f '{{.State.FinishedAt}}' "$id")
  d=$(( ($(to_ns "$seen") - $(to_ns "$finished")) / 1000 ))
  ours=$(( ($(to_ns "$seen") - $(to_ns "$event")) / 1000 ))
  deltas+=("$d")
  printf 'run %2d: died %s, classified %s (crash=%s): %d.%03d ms (%d.%03d ms after dockerd'"'"'s die event)\n' \
    "$i" "$finished" "$seen" "$crash" $((d / 1000)) $((d % 1000)) $((ours / 1000)) $((ours % 1000))
done
printf '%s\n' "${deltas[@]}" | sort -n | awk '
  { v[NR] = $1 }
  END {
    med = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "death to classification over %d crashes: median %.1f ms, max %.1f ms (target < 100 ms)\n", NR, med / 1000, v[NR] / 1000
  }'
