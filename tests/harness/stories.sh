#!/usr/bin/env bash
# Runs the end-to-end stories (tests/e2e, tests/twin): first every story that can share the
# machine, side by side on STORY_WORKERS pytest-xdist workers (`--dist loadgroup`: the stories
# of one `xdist_group` stay on one worker), then those marked `alone(reason)`, one at a time.
# Each twin takes its own slot (tests/twin/twin.py, `Slot`), so parallel twins share nothing.
#
#   stories.sh [PYTEST ARGS ...] FILE ...        (STORY_WORKERS=3 by default; 1 runs serially)
#
# Each pass prints the stories' own durations, slowest first. The exit code is 0 only when both
# passes passed (a pass with no story in it counts as passed).
set -uo pipefail
cd "$(dirname "$0")/../.."
workers=${STORY_WORKERS:-3}
pytest=(tests/.venv/bin/python -m pytest -p no:cacheprovider -v --durations=0 --durations-min=5)
if [[ $workers -gt 1 ]]; then
    parallel=(-n "$workers" --dist loadgroup)
else
    parallel=(-p no:xdist)
fi
start=$SECONDS
"${pytest[@]}" "${parallel[@]}" -m "not alone" "$@"
rc1=$?
echo "[stories] side by side on $workers worker(s): $((SECONDS - start)) s (exit $rc1)"
((rc1 == 5)) && rc1=0
start=$SECONDS
"${pytest[@]}" -p no:xdist -m alone "$@"
rc2=$?
((rc2 == 5)) && rc2=0 # no story has to run alone
echo "[stories] alone: $((SECONDS - start)) s (exit $rc2)"
((rc1 == 0 && rc2 == 0))
