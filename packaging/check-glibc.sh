#!/usr/bin/env bash
# Fails when BINARY needs a glibc symbol version newer than MAX (default 2.34, the glibc of
# Amazon Linux 2023). Prints the newest version it found.
#   check-glibc.sh BINARY [MAX]
set -euo pipefail
bin=${1:?usage: check-glibc.sh BINARY [MAX]}
max=${2:-2.34}
[[ -r $bin ]] || { echo "glibc: $bin not found" >&2; exit 1; }
versions=$(objdump -T "$bin" | grep -oE 'GLIBC_[0-9]+(\.[0-9]+)+' | sed 's/^GLIBC_//' | sort -uV)
[[ -n $versions ]] || { echo "glibc: no GLIBC symbol versions in $bin (static?)"; exit 0; }
found=$(tail -n1 <<<"$versions")
echo "glibc: newest symbol version GLIBC_$found (limit GLIBC_$max)"
if [[ $(printf '%s\n%s\n' "$found" "$max" | sort -V | tail -n1) != "$max" ]]; then
    echo "glibc: symbols newer than GLIBC_$max:" >&2
    while read -r v; do
        [[ $(printf '%s\n%s\n' "$v" "$max" | sort -V | tail -n1) == "$max" ]] && continue
        objdump -T "$bin" | grep -F "(GLIBC_$v)" >&2 || true
    done <<<"$versions"
    exit 1
fi
