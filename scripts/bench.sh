#!/usr/bin/env bash
# Throughput and memory of `esm poll` on local services: prints numbers and the command that
# reproduces them; asserts nothing about timing.
#
#   scripts/bench.sh                      # 200,000 x 1 KB records over 8 partitions, BatchSize 1000
#   BENCH_RECORDS=20000 scripts/bench.sh  # quick
#
# Builds `esm` and `kafka-esm-testkit` (release), then `kafka-esm-testkit bench` measures in one run:
#   (a) the raw fetch rate of the product's Kafka client setup (rdkafka StreamConsumer with the
#       product's settings, split partition queues read in parallel tasks) on a fresh tansu,
#   (b) the end-to-end rate through a real `esm poll` into a counting Invoke stub, on another
#       fresh tansu with the same records (tansu slows down with every full read), offsets
#       checked afterwards by the test kit's own offsets reader,
#   (c) the poller's peak RSS (VmHWM),
# and prints both rates, their ratio, the peak RSS, CPU seconds per process and the command that
# reproduces the run. Targets (e2e >= 0.8 x raw, RSS <= 64 MiB) are reported, never asserted; the
# exit status is non-zero only if something failed (e.g. offsets not committed).
#
# Settings (environment, or the same names as flags: `scripts/bench.sh --records 20000`):
#   BENCH_RECORDS (200000), BENCH_PARTITIONS (8), BENCH_RECORD_BYTES (1024),
#   BENCH_BATCH_SIZE (1000), BENCH_WINDOW_S (0), BENCH_TIMEOUT_S (600),
#   ESM_FETCH_WAIT_MS (10: tansu holds every fetch that long), ESM_QUEUED_MAX_KBYTES (2048),
#   ESM_FETCH_QUEUE_BACKOFF_MS (10).
#   Other ESM_* variables (and RUST_LOG) reach the poller unchanged.
# Experiments:
#   BENCH_STUB_DELAY_MS=1000   a slow function: fetch-ahead buffers stay full (worst-case RSS)
#   BENCH_RAW_CONFIG=k=v,k=v   extra librdkafka settings for the raw reader only
#   BENCH_RAW_ONLY=1 BENCH_RAW_RUNS=N   only raw reads; BENCH_RDKAFKA_DEBUG=fetch logs them
#   BENCH_BATCHED=1            pre-fill producer-batched (linger.ms 5), as real producers send
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
LOG_TAG=bench

bash scripts/install-deps.sh

log "building esm and kafka-esm-testkit (release; several minutes on 2 cores the first time)"
# Two invocations, so `esm` is built exactly as `cargo build --release --bin esm` builds it
# (features are unified over the packages of one invocation).
cargo build --release --quiet -p kafka-esm --bin esm
cargo build --release --quiet -p kafka-esm-testkit --bin kafka-esm-testkit

target=${CARGO_TARGET_DIR:-$repo/target}
exec "$target/release/kafka-esm-testkit" bench --esm "$target/release/esm" "$@"
