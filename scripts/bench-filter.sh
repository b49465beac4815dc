#!/usr/bin/env bash
# End-to-end records/s with a FilterCriteria that drops 90% of the records, next to the same run
# unfiltered: filtering must not cost more than it saves. Prints both `kafka-esm-testkit bench`
# reports (each on a fresh tansu) and a summary line; asserts nothing about timing.
#
#   scripts/bench-filter.sh                       # 100,000 x 1 KB records over 8 partitions
#   BENCH_RECORDS=20000 scripts/bench-filter.sh   # quick
#
# The values are the bench's fill values (the record's index in ASCII, then `x`s: a plain string,
# not JSON); the filter keeps indices ending in 0 with `{"value":[{"wildcard":"*0x*"}]}`. Other
# BENCH_* and ESM_* settings of scripts/bench.sh apply to both runs.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
LOG_TAG=bench-filter

export BENCH_RECORDS=${BENCH_RECORDS:-100000}
if (( BENCH_RECORD_BYTES=${BENCH_RECORD_BYTES:-1024}, BENCH_RECORD_BYTES < 16 )); then
    echo "BENCH_RECORD_BYTES must be at least 16 (the index must be followed by x's)" >&2
    exit 2
fi
export BENCH_RECORD_BYTES
kept=$(( (BENCH_RECORDS + 9) / 10 ))
filter='{"Filters":[{"Pattern":"{\"value\":[{\"wildcard\":\"*0x*\"}]}"}]}'

bash scripts/install-deps.sh
log "building esm and kafka-esm-testkit (release; several minutes on 2 cores the first time)"
cargo build --release --quiet -p kafka-esm --bin esm
cargo build --release --quiet -p kafka-esm-testkit --bin kafka-esm-testkit
target=${CARGO_TARGET_DIR:-$repo/target}
bench() { "$target/release/kafka-esm-testkit" bench --esm "$target/release/esm" "$@"; }

out=$(mktemp -d)
log "unfiltered run"
bench | tee "$out/plain.txt"
log "filtered run (keeps $kept of $BENCH_RECORDS records)"
BENCH_FILTER_CRITERIA=$filter BENCH_EXPECT_INVOKED=$kept bench | tee "$out/filtered.txt"

rate() { grep -A1 '^(b) end to end' "$1" | tail -1 | sed 's/^ *//'; }
echo
echo "summary ($BENCH_RECORDS records; filtered: $kept sent, the rest committed unsent):"
echo "  unfiltered: $(rate "$out/plain.txt")"
echo "  filtered:   $(rate "$out/filtered.txt")"
