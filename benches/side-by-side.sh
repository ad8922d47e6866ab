#!/usr/bin/env bash
# Two cargo-pgtest builds side by side: OLD and NEW alternate round by round (which goes first alternates
# too) on the benchmark's generated projects, and for each project this prints the median, min and max of
# the per-round ratios NEW ÷ OLD of the tests phase and of the wall time. Ratios measured in one run, one
# after the other, are what a shared, noisy machine can compare.
#
#   benches/side-by-side.sh OLD_BIN NEW_BIN [ROUNDS]      (default 6)
#
# The projects are the ones `BENCH_ONLY=3,4,8,9 BENCH_RUNS=1 cargo bench --bench speed` generates and builds
# under target/bench-projects (PROJECTS picks some: "bench-many bench-realistic bench-small bench-readonly
# bench-shape").
# Each project's run is a warm one (its cache and history from earlier runs), with `--jobs` = JOBS (default
# the number of CPUs); EXTRA adds arguments (e.g. EXTRA=--no-history for a first run's figures).
set -euo pipefail
cd "$(dirname "$0")/.."

OLD=${1:?usage: benches/side-by-side.sh OLD_BIN NEW_BIN [ROUNDS]}
NEW=${2:?usage: benches/side-by-side.sh OLD_BIN NEW_BIN [ROUNDS]}
ROUNDS=${3:-6}
JOBS=${JOBS:-$(nproc)}
PROJECTS=${PROJECTS:-"bench-many bench-realistic bench-small bench-readonly bench-shape"}
AREA=$PWD/target/bench-projects
LOGS=$AREA/side-by-side
export CARGO_TARGET_DIR=$AREA CARGO_TERM_COLOR=never NO_COLOR=1
mkdir -p "$LOGS"

for bin in "$OLD" "$NEW"; do
    [ -x "$bin" ] || { echo "no cargo-pgtest at $bin" >&2; exit 2; }
done

# One run: prints "<tests phase seconds> <wall seconds>"; fails when the run does.
run() { # bin project label
    local json=$LOGS/$2-$3.jsonl start end
    start=$(date +%s.%N)
    if ! (cd "$AREA/src/$2" && "$1" pgtest --json "$json" --jobs "$JOBS" ${EXTRA:-} >"$LOGS/$2-$3.log" 2>&1); then
        echo "$2: $1 failed; see $LOGS/$2-$3.log" >&2
        return 1
    fi
    end=$(date +%s.%N)
    python3 - "$json" "$start" "$end" <<'EOF'
import json, sys
tests = next(e["seconds"] for e in map(json.loads, open(sys.argv[1])) if e.get("type") == "phase_finished" and e.get("phase") == "tests")
print(tests, float(sys.argv[3]) - float(sys.argv[2]))
EOF
}

summary() { # label values...
    python3 - "$@" <<'EOF'
import statistics, sys
label, values = sys.argv[1], [float(v) for v in sys.argv[2:]]
print(f"  {label:<12} median {statistics.median(values):.3f}  (min {min(values):.3f}, max {max(values):.3f}, {len(values)} rounds)")
EOF
}

for project in $PROJECTS; do
    [ -d "$AREA/src/$project" ] || { echo "no $AREA/src/$project: run BENCH_ONLY=3,4,8,9 BENCH_RUNS=1 cargo bench --bench speed first" >&2; exit 2; }
    # Untimed: each binary's own cache entry and history are in place before the first timed round.
    run "$OLD" "$project" warm-old >/dev/null
    run "$NEW" "$project" warm-new >/dev/null
    tests=() walls=()
    for round in $(seq 1 "$ROUNDS"); do
        if [ $((round % 2)) -eq 1 ]; then
            read -r old_tests old_wall < <(run "$OLD" "$project" "old-$round")
            read -r new_tests new_wall < <(run "$NEW" "$project" "new-$round")
        else
            read -r new_tests new_wall < <(run "$NEW" "$project" "new-$round")
            read -r old_tests old_wall < <(run "$OLD" "$project" "old-$round")
        fi
        tests+=("$(python3 -c "print($new_tests / $old_tests)")")
        walls+=("$(python3 -c "print($new_wall / $old_wall)")")
    done
    echo "$project: NEW ÷ OLD"
    summary "tests phase" "${tests[@]}"
    summary "wall" "${walls[@]}"
done
