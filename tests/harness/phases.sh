#!/usr/bin/env bash
# Runs named phases one after another, times each, and prints one line per phase at the end
# (its wall time and whether it passed) and the total. `make test` and `make check` run through
# it, so CI's log ends with where the time went.
#
#   phases.sh [--stop-on-fail=NAME,...] NAME 'COMMAND' [NAME 'COMMAND' ...]
#
# COMMAND runs with bash -c. A phase that fails does not stop the next ones (one run shows every
# failure), except those named in --stop-on-fail (setup: nothing runs without it). The exit code
# is 0 only when every phase passed.
#
# Background work: `phases.sh` exports CM_PHASES_DIR; a phase may start a job with
# `tests/harness/phases.sh --background NAME 'COMMAND'` and a later phase wait for it with
# `tests/harness/phases.sh --wait NAME`. A background job is timed too and has its own line.
set -uo pipefail

fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

if [[ ${1:-} == --background ]]; then
    name=$2 cmd=$3
    dir=${CM_PHASES_DIR:?--background runs inside phases.sh}
    (
        start=$SECONDS
        bash -c "$cmd" >"$dir/bg-$name.log" 2>&1
        rc=$?
        echo "$rc $((SECONDS - start))" >"$dir/bg-$name.done"
    ) &
    echo "$!" >"$dir/bg-$name.pid"
    echo "[phases] $name: started in the background (log: $dir/bg-$name.log)"
    exit 0
fi
if [[ ${1:-} == --wait ]]; then
    name=$2
    dir=${CM_PHASES_DIR:?--wait runs inside phases.sh}
    [[ -f $dir/bg-$name.pid ]] || exit 0 # never started: the caller builds in the foreground
    while [[ ! -f $dir/bg-$name.done ]]; do sleep 1; done
    read -r rc _ <"$dir/bg-$name.done"
    if [[ $rc != 0 ]]; then
        echo "[phases] $name (background) failed with exit $rc; its log:" >&2
        tail -n 60 "$dir/bg-$name.log" >&2
    fi
    exit "$rc"
fi

stop_on=""
if [[ ${1:-} == --stop-on-fail=* ]]; then
    stop_on=",${1#--stop-on-fail=},"
    shift
fi
(($# % 2 == 0 && $# > 0)) || { echo "usage: phases.sh [--stop-on-fail=NAME,...] NAME 'COMMAND' ..." >&2; exit 2; }

CM_PHASES_DIR=$(mktemp -d /tmp/cm-phases.XXXXXX)
export CM_PHASES_DIR
trap 'rm -rf "$CM_PHASES_DIR"' EXIT
names=() times=() results=()
total_start=$SECONDS
failed=0
while (($# > 0)); do
    name=$1 cmd=$2
    shift 2
    echo "[phases] ==== $name: $cmd"
    start=$SECONDS
    bash -c "$cmd"
    rc=$?
    names+=("$name") times+=($((SECONDS - start)))
    if ((rc == 0)); then results+=(ok); else results+=("FAILED (exit $rc)"); failed=1; fi
    if ((rc != 0)) && [[ $stop_on == *",$name,"* ]]; then
        echo "[phases] $name failed: the phases after it need it, so they did not run" >&2
        break
    fi
done
# Background jobs that ran beside the phases: waited for (nothing keeps compiling after the
# report), then their own time (they overlapped the others).
for pid in "$CM_PHASES_DIR"/bg-*.pid; do
    [[ -f $pid ]] || continue
    name=${pid##*/bg-} name=${name%.pid}
    [[ -f $CM_PHASES_DIR/bg-$name.done ]] && continue
    echo "[phases] waiting for the background job $name"
    while [[ ! -f $CM_PHASES_DIR/bg-$name.done ]]; do sleep 1; done
done
for done in "$CM_PHASES_DIR"/bg-*.done; do
    [[ -f $done ]] || continue
    name=${done##*/bg-} name=${name%.done}
    read -r rc secs <"$done"
    names+=("$name (background)") times+=("$secs")
    if [[ $rc == 0 ]]; then results+=(ok); else results+=("FAILED (exit $rc)"); failed=1; fi
done
total=$((SECONDS - total_start))

echo
echo "[phases] where the time went (wall clock):"
for i in "${!names[@]}"; do
    printf '[phases]   %-28s %8s  %5d s  %s\n' "${names[$i]}" "$(fmt_secs "${times[$i]}")" "${times[$i]}" "${results[$i]}"
done
printf '[phases]   %-28s %8s  %5d s  %s\n' "total" "$(fmt_secs "$total")" "$total" \
    "$( ((failed == 0)) && echo "every phase passed" || echo "SOME PHASES FAILED")"
exit "$failed"
