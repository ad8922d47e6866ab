#!/usr/bin/env bash
# What running a test under `cargo pgtest nextest` costs beyond cargo-pgtest's own runner, per test.
#
#   benches/nextest-overhead.sh [ROUNDS]      (default 3; BIN=path/to/cargo-pgtest, default target/release)
#
# Generates two projects under target/bench-projects/nextest/ that differ only in how many tests they
# hold (SMALL and LARGE, each test checking it was given a database and doing nothing else), times the
# whole command on each, runner by runner, and prints the median of each and the slope
# (LARGE - SMALL) / (LARGE - SMALL tests): the cost of one more test, with the fixed costs (cluster boot,
# template, build check, nextest's listing) cancelled out. Both runners get the same `--jobs`.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-3}
SMALL=${SMALL:-20}
LARGE=${LARGE:-200}
JOBS=${JOBS:-$(nproc)}
BIN=${BIN:-$PWD/target/release/cargo-pgtest}
AREA=$PWD/target/bench-projects/nextest
export CARGO_TARGET_DIR=$AREA/target
export CARGO_TERM_COLOR=never NO_COLOR=1

[ -x "$BIN" ] || { echo "no cargo-pgtest at $BIN: cargo build --release first (or set BIN)" >&2; exit 2; }
cargo nextest --version >/dev/null 2>&1 || { echo "cargo-nextest is missing: cargo install cargo-nextest --locked" >&2; exit 2; }

generate() { # name count
    local dir=$AREA/$1
    mkdir -p "$dir/src" "$dir/tests"
    printf '[package]\nname = "%s"\nversion = "0.1.0"\nedition = "2021"\npublish = false\n\n[workspace]\n' "$1" >"$dir/Cargo.toml"
    : >"$dir/src/lib.rs"
    {
        for n in $(seq 1 "$2"); do
            printf '#[test]\nfn t%04d() {\n    assert!(std::env::var("DATABASE_URL").unwrap().contains("pgtest_"));\n}\n' "$n"
        done
    } >"$dir/tests/many.rs"
}

generate bench-small "$SMALL"
generate bench-large "$LARGE"

run() { # project runner -> seconds
    local args=(pgtest --jobs "$JOBS")
    [ "$2" = nextest ] && args+=(nextest --test-threads "$JOBS")
    local start end
    start=$(date +%s.%N)
    (cd "$AREA/$1" && "$BIN" "${args[@]}" >"$AREA/$1-$2.log" 2>&1) ||
        { echo "$1 under $2 failed: see $AREA/$1-$2.log" >&2; exit 1; }
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

echo "warming up (builds both projects; untimed)" >&2
for project in bench-small bench-large; do
    for runner in pgtest nextest; do run "$project" "$runner" >/dev/null; done
done

declare -A times
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round/$ROUNDS" >&2
    for project in bench-small bench-large; do
        for runner in pgtest nextest; do
            times[$project-$runner]+="$(run "$project" "$runner") "
        done
    done
done

printf '%-8s %12s %12s %16s\n' runner "$SMALL tests" "$LARGE tests" "per extra test"
for runner in pgtest nextest; do
    small=$(tr ' ' '\n' <<<"${times[bench-small-$runner]}" | grep . | median)
    large=$(tr ' ' '\n' <<<"${times[bench-large-$runner]}" | grep . | median)
    per=$(echo "($large - $small) * 1000 / ($LARGE - $SMALL)" | bc -l)
    printf '%-8s %11.2fs %11.2fs %13.1f ms\n' "$runner" "$small" "$large" "$per"
done
echo "(medians of $ROUNDS rounds, --jobs $JOBS, $("$BIN" --version), $(cargo nextest --version | head -1))"
