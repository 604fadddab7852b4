#!/usr/bin/env bash
# Runs the whole `cargo test` suite N times (default 30): the odd runs with
# every CPU kept busy by spinning processes, the even ones on a quiet
# machine. Each failing run's output is kept in out/flake-hunt/run-K.log
# and its failing tests are listed; the last line counts runs and failures.
# Usage: tests/flake-hunt.sh [N] [extra cargo test args...]
set -uo pipefail
cd "$(dirname "$0")/.."
n=${1:-30}
shift || true
logs=out/flake-hunt
rm -rf "$logs"
mkdir -p "$logs"

cargo test --workspace --no-run "$@" </dev/null >"$logs/build.log" 2>&1 || { cat "$logs/build.log"; echo "flake-hunt: the build failed"; exit 2; }

burners=()
start_burners() {
    for _ in $(seq "$(nproc)"); do
        sh -c 'while :; do :; done' &
        burners+=($!)
    done
}
stop_burners() {
    [ ${#burners[@]} -gt 0 ] && kill "${burners[@]}" 2>/dev/null
    wait "${burners[@]}" 2>/dev/null
    burners=()
}
trap stop_burners EXIT

failed=0
declare -A by_test=()
for k in $(seq "$n"); do
    busy=quiet
    if [ $((k % 2)) -eq 1 ]; then busy=busy; start_burners; fi
    t0=$(date +%s)
    cargo test --workspace "$@" </dev/null >"$logs/run-$k.log" 2>&1
    rc=$?
    stop_burners
    secs=$(( $(date +%s) - t0 ))
    if [ $rc -eq 0 ]; then
        echo "run $k/$n ($busy): ok in ${secs}s"
        rm -f "$logs/run-$k.log"
    else
        failed=$((failed + 1))
        names=$(grep -E '^test .* \.\.\. FAILED$' "$logs/run-$k.log" | sed -E 's/^test (.*) \.\.\. FAILED$/\1/' | sort -u | tr '\n' ' ')
        [ -n "$names" ] || names="(no test named: see the log)"
        echo "run $k/$n ($busy): FAILED in ${secs}s: $names -> $logs/run-$k.log"
        for t in $names; do by_test[$t]=$(( ${by_test[$t]:-0} + 1 )); done
    fi
done
for t in "${!by_test[@]}"; do echo "  $t failed ${by_test[$t]} time(s)"; done
echo "flake-hunt: $n runs, $failed failed"
[ $failed -eq 0 ]
