#!/usr/bin/env bash
# Throughput, CPU, memory and latency of `esm poll` on local services, side by side with a plain
# librdkafka consumer on the same data: prints numbers, the commit and the command that reproduces
# them; asserts nothing about timing.
#
#   scripts/bench.sh                      # 200,000 x 1 KB producer-batched records over 8 partitions
#   BENCH_BATCHED=0 scripts/bench.sh      # the same records, one per produce batch
#   BENCH_RECORDS=20000 BENCH_LATENCY_S=0 scripts/bench.sh       # quick, throughput only
#   BENCH_PARTITIONS=100 BENCH_STUB_DELAY_MS=1000 BENCH_LATENCY_S=0 scripts/bench.sh   # memory
#   BENCH_LATENCY_ONLY=1 scripts/bench.sh # latency only
#
# Builds `esm` and `kafka-esm-testkit` with the `profiling` profile (the release build's
# optimisation, LTO and codegen units, with symbols kept so `perf record -p $(pgrep -f 'esm poll')`
# can attribute the poller's CPU), then `kafka-esm-testkit bench` measures in one run:
#   (a) the raw fetch rate of the product's Kafka client setup (rdkafka StreamConsumer with the
#       product's settings, split partition queues read in parallel tasks) on a fresh tansu,
#   (b) the end-to-end rate through a real `esm poll` into a counting Invoke stub, on another
#       fresh tansu with the same records (tansu slows down with every full read), offsets
#       checked afterwards by the test kit's own offsets reader, and the CPU seconds of every
#       process (per record for the readers),
#   (c) the poller's peak RSS (VmHWM),
#   (d) latency: records produced at a fixed rate (1,000/s over 4 partitions), each stamped with its
#       send time, read at once by a raw consumer and by `esm poll` (window 0), at fetch waits 10
#       and 1 ms: produce -> consume and produce -> invoke p50/p99 side by side,
# and prints a summary table with the targets (e2e >= 0.9 x raw, <= 3 us poller CPU per record,
# RSS <= 64 MiB, latency overhead <= 1 ms p50 / 5 ms p99), reported, never asserted; the exit
# status is non-zero only if something failed (e.g. offsets not committed).
#
# Settings (environment, or the same names as flags: `scripts/bench.sh --records 20000`):
#   BENCH_RECORDS (200000), BENCH_PARTITIONS (8), BENCH_RECORD_BYTES (1024),
#   BENCH_BATCH_SIZE (1000), BENCH_WINDOW_S (0), BENCH_TIMEOUT_S (600), BENCH_BATCHED (1),
#   BENCH_LATENCY_S (10; 0 skips), BENCH_LATENCY_RATE (1000), BENCH_LATENCY_PARTITIONS (4),
#   BENCH_LATENCY_FETCH_WAITS (10,1), BENCH_LATENCY_ONLY (0),
#   ESM_FETCH_WAIT_MS (10: tansu holds every fetch that long), ESM_QUEUED_MAX_KBYTES (2048),
#   ESM_FETCH_QUEUE_BACKOFF_MS (10).
#   Other ESM_* variables (and RUST_LOG) reach the poller unchanged.
# Experiments:
#   BENCH_STUB_DELAY_MS=1000   a slow function: fetch-ahead buffers stay full (worst-case RSS)
#   BENCH_RAW_CONFIG=k=v,k=v   extra librdkafka settings for the raw reader only
#   BENCH_RAW_ONLY=1 BENCH_RAW_RUNS=N   only raw reads; BENCH_RDKAFKA_DEBUG=fetch logs them
# Then, unless BENCH_KEYED=0 (or BENCH_LATENCY_ONLY/BENCH_RAW_ONLY), scripts/bench-keyed.sh with the
# same build: the key-ordered concurrency speed-up (ParallelizationFactor 1 vs 10, one partition,
# a 100 ms function; its own BENCH_KEYED_* settings, see its header).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
LOG_TAG=bench

bash scripts/install-deps.sh

log "building esm and kafka-esm-testkit (profiling profile: release + symbols; several minutes on 2 cores the first time)"
# Two invocations, so `esm` is built exactly as `cargo build --release --bin esm` builds it
# (features are unified over the packages of one invocation).
cargo build --profile profiling --quiet -p kafka-esm --bin esm
cargo build --profile profiling --quiet -p kafka-esm-testkit --bin kafka-esm-testkit

target=${CARGO_TARGET_DIR:-$repo/target}
"$target/profiling/kafka-esm-testkit" bench --esm "$target/profiling/esm" "$@"
if [ "${BENCH_KEYED:-1}" = 1 ] && [ "${BENCH_LATENCY_ONLY:-0}" = 0 ] && [ "${BENCH_RAW_ONLY:-0}" = 0 ]; then
    # Its own data shape (one partition, keyed, a slow function): the main run's BENCH_* do not apply.
    env -u BENCH_RECORDS -u BENCH_PARTITIONS -u BENCH_BATCH_SIZE -u BENCH_STUB_DELAY_MS -u BENCH_LATENCY_S \
        BENCH_SKIP_BUILD=1 BENCH_PROFILE=profiling \
        BENCH_RECORDS="${BENCH_KEYED_RECORDS:-20000}" bash scripts/bench-keyed.sh
fi
