#!/usr/bin/env bash
# Key-ordered concurrency (`ParallelizationFactor`): end-to-end records/s into a function that
# takes 100 ms per invocation, one partition, every record its own key, with the factor at 1 and at
# 10, side by side in one run (each on a fresh tansu). Prints both `kafka-esm-testkit bench`
# reports and the speed-up; asserts nothing about timing.
#
#   scripts/bench-keyed.sh                                  # 20,000 x 1 KB records, BatchSize 100
#   BENCH_RECORDS=5000 scripts/bench-keyed.sh               # quick
#   BENCH_KEYED_FACTORS=1,2,5,10 scripts/bench-keyed.sh     # more points
#
# BENCH_STUB_DELAY_MS (100) is the function's duration; other BENCH_* and ESM_* settings of
# scripts/bench.sh apply to every run. BENCH_PROFILE (profiling, as scripts/bench.sh; `release`
# works too) picks the build; BENCH_SKIP_BUILD=1 uses what is built (scripts/bench.sh runs this
# script last, after its own build).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
LOG_TAG=bench-keyed

export BENCH_RECORDS=${BENCH_RECORDS:-20000}
export BENCH_PARTITIONS=${BENCH_PARTITIONS:-1}
export BENCH_BATCH_SIZE=${BENCH_BATCH_SIZE:-100}
export BENCH_STUB_DELAY_MS=${BENCH_STUB_DELAY_MS:-100}
export BENCH_LATENCY_S=${BENCH_LATENCY_S:-0}
export BENCH_RAW_RUNS=${BENCH_RAW_RUNS:-1}
IFS=, read -r -a factors <<<"${BENCH_KEYED_FACTORS:-1,10}"

profile=${BENCH_PROFILE:-profiling}
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    bash scripts/install-deps.sh
    log "building esm and kafka-esm-testkit ($profile profile; several minutes on 2 cores the first time)"
    cargo build --profile "$profile" --quiet -p kafka-esm --bin esm
    cargo build --profile "$profile" --quiet -p kafka-esm-testkit --bin kafka-esm-testkit
fi
target=${CARGO_TARGET_DIR:-$repo/target}/$profile

out=$(mktemp -d)
for n in "${factors[@]}"; do
    log "ParallelizationFactor $n"
    BENCH_PARALLELIZATION_FACTOR=$n "$target/kafka-esm-testkit" bench --esm "$target/esm" \
        | tee "$out/$n.txt"
done

rate() { grep -A1 '^(b) end to end' "$1" | tail -1 | sed 's/^ *//'; }
per_s() { rate "$1" | grep -oE '[0-9][0-9,]*(\.[0-9]+)? records/s' | sed -n 2p | tr -d , | cut -d' ' -f1; }
echo
echo "summary ($BENCH_RECORDS records x ${BENCH_RECORD_BYTES:-1024} B, $BENCH_PARTITIONS partition(s), BatchSize $BENCH_BATCH_SIZE, function ${BENCH_STUB_DELAY_MS} ms, commit $(git rev-parse --short HEAD)):"
base=$(per_s "$out/${factors[0]}.txt")
for n in "${factors[@]}"; do
    r=$(per_s "$out/$n.txt")
    printf '  ParallelizationFactor %-3s %s   speed-up vs %s: %s\n' "$n" "$(rate "$out/$n.txt")" "${factors[0]}" \
        "$(awk -v a="$r" -v b="$base" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }')"
done
echo "reproduce: BENCH_RECORDS=$BENCH_RECORDS BENCH_BATCH_SIZE=$BENCH_BATCH_SIZE BENCH_STUB_DELAY_MS=$BENCH_STUB_DELAY_MS BENCH_KEYED_FACTORS=${BENCH_KEYED_FACTORS:-1,10} scripts/bench-keyed.sh"
