#!/usr/bin/env bash
# Throughput and memory of `esm poll` on local services: prints numbers and the command that
# reproduces them; asserts nothing about timing.
#
#   scripts/bench.sh                      # 200,000 x 1 KB records over 8 partitions, BatchSize 1000
#   BENCH_RECORDS=20000 scripts/bench.sh  # quick
#
# Builds `esm` and `kafka-esm-bench` (release), then `kafka-esm-bench run` starts tansu, dynalite
# and a counting Invoke stub, pre-fills a topic and measures in one run:
#   (a) the raw fetch rate of the product's Kafka client setup (rdkafka StreamConsumer, split
#       partition queues read in parallel tasks),
#   (b) the end-to-end rate through a real `esm poll` into the stub, offsets checked afterwards
#       with scripts/kafka-offsets.py,
#   (c) the poller's peak RSS.
#
# Settings (environment, or the same names as flags: `scripts/bench.sh --records 20000`):
#   BENCH_RECORDS (200000), BENCH_PARTITIONS (8), BENCH_RECORD_BYTES (1024),
#   BENCH_BATCH_SIZE (1000), BENCH_WINDOW_S (0), BENCH_PRODUCE_IN_FLIGHT (64),
#   BENCH_TIMEOUT_S (600), ESM_FETCH_WAIT_MS (10: tansu holds every fetch that long),
#   ESM_QUEUED_MAX_KBYTES (2048). Other ESM_* variables reach the poller unchanged.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/env.sh
source "$repo/scripts/env.sh"
cd "$repo"

bash scripts/install-deps.sh

log() { printf '[bench] %s\n' "$*" >&2; }
log "building esm and kafka-esm-bench (release; several minutes on 2 cores the first time)"
# Two invocations, so `esm` is built exactly as `cargo build --release --bin esm` builds it
# (features are unified over the packages of one invocation).
cargo build --release --quiet -p kafka-esm --bin esm
cargo build --release --quiet -p kafka-esm-testkit --bin kafka-esm-bench

target=${CARGO_TARGET_DIR:-$repo/target}
exec "$target/release/kafka-esm-bench" run --esm "$target/release/esm" "$@"
