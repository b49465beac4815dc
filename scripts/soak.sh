#!/usr/bin/env bash
# Soak: `esm poll` processes SIGKILLed, SIGTERMed and restarted at random while records flow and
# the leases table has outages; then prints records produced, delivered, lost, duplicated,
# overlapping invocations of one partition, batches out of order, and the longest stall. Exits 1
# when a record was lost, a partition had two invocations at once or a batch skipped an undelivered
# record (2 when the soak itself could not run); timings are figures, never checks.
#
#   scripts/soak.sh                     # 100 cycles of 7 s: about 13 minutes
#   SOAK_CYCLES=10 scripts/soak.sh      # quick
#   SOAK_SEED=42 scripts/soak.sh        # the same fault schedule again (not the same timings)
#
# Builds `esm` and `kafka-esm-testkit` (debug; SOAK_PROFILE=release for release builds), then
# `kafka-esm-testkit soak` starts tansu and dynalite on free ports, a DynamoDB proxy that can fail
# or stall the leases table, and the Invoke stub (in its own process: it records every invocation
# and tracks the invocations of each partition in flight); creates a topic and a mapping
# (TRIM_HORIZON, window 0), produces a steady stream (one record per producer batch, produce time
# in the value) and runs SOAK_POLLERS `esm poll` processes. Each cycle it restarts each poller
# that is down with probability SOAK_RESTART_CHANCE, then, at a random point of the cycle's first
# half, does one thing chosen at random by SOAK_WEIGHTS: SIGKILL a poller (possibly one still
# draining after SIGTERM), SIGTERM one, or an outage of the leases table for
# SOAK_OUTAGE_MIN_MS..SOAK_OUTAGE_MAX_MS: every request answered 500 InternalServerError, or held
# until the outage ends and forwarded then (half each). A poller is only killed or terminated while
# another runs (when none can be, the cycle's action is an outage). After the cycles every poller is
# restarted, production stops, and it waits for lag 0 (at most SOAK_DRAIN_TIMEOUT_S), stops the
# pollers with SIGTERM and reports.
#
# Knobs (environment, or the same names as flags: `scripts/soak.sh --cycles 10`):
#   SOAK_CYCLES (100)            fault cycles
#   SOAK_CYCLE_MS (7000)         length of a cycle: 100 cycles take 100 x 7 s plus about a minute
#                                of start-up and drain (<= 15 minutes on 2 cores)
#   SOAK_POLLERS (3)             `esm poll` processes (at least 2)
#   SOAK_PARTITIONS (12)         partitions of the topic
#   SOAK_RATE (24)               records per second over all partitions
#   SOAK_BATCH_SIZE (10)         the mapping's BatchSize
#   SOAK_INVOKE_MS (200)         how long each invocation of the function takes
#   SOAK_RESTART_CHANCE (0.6)    chance a poller found down at a cycle's start is restarted then
#   SOAK_WEIGHTS (1,1,1)         relative weights of SIGKILL, SIGTERM, leases-table outage
#   SOAK_OUTAGE_MIN_MS (2000), SOAK_OUTAGE_MAX_MS (5000)   outage length
#   SOAK_TERM_TIMEOUT_S (60)     a poller still running this long after SIGTERM is killed
#   SOAK_DRAIN_TIMEOUT_S (180)   after the cycles, how long records may take to be committed
#   SOAK_SEED (random)           the fault schedule's seed (printed)
#   SOAK_PROFILE (debug)         debug or release builds
#   Finding overlaps: SOAK_INVOKE_MS=3000 ESM_DRAIN_TIMEOUT_MS=1000 SOAK_WEIGHTS=0,1,0 makes every
#   hand-over abandon an invoke that is still running; the soak reports the overlaps and exits 1.
#   ESM_* variables reach the pollers unchanged (ESM_FETCH_WAIT_MS defaults to 10 here: tansu
#   holds every fetch that long); RUST_LOG sets their log level (info).
# Logs: $KAFKA_ESM_STATE/soak/ (default .local/soak/): poller-SLOT-INCARNATION.log, events.jsonl
# (every start, signal, exit and outage, in seconds from the soak's start), deliveries.jsonl
# (each record's produce time, first invocation and number of deliveries), report.txt.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
LOG_TAG=soak

profile=${SOAK_PROFILE:-debug}
case $profile in
  debug) flags=() ;;
  release) flags=(--release) ;;
  *) die "SOAK_PROFILE=$profile: debug or release" ;;
esac

bash scripts/install-deps.sh
log "building esm and kafka-esm-testkit ($profile)"
# Two invocations, so `esm` is built exactly as `cargo build --bin esm` builds it.
cargo build "${flags[@]}" --quiet -p kafka-esm --bin esm
cargo build "${flags[@]}" --quiet -p kafka-esm-testkit --bin kafka-esm-testkit

target=${CARGO_TARGET_DIR:-$repo/target}/$profile
export SOAK_LOGS=${SOAK_LOGS:-${KAFKA_ESM_STATE:-$repo/.local}/soak}
exec "$target/kafka-esm-testkit" soak --esm "$target/esm" "$@"
