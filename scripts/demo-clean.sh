#!/usr/bin/env bash
# The demo as a new user meets it: a fresh clone of this repository's HEAD in a temporary
# directory, its own state directory and ports (nothing of a running stack is reused), the whole
# run under a time limit. CI runs it from scripts/test.sh, so a demo that hangs or leaves a
# process behind fails the build instead of a new user.
#
#   scripts/demo-clean.sh
#
# Settings (environment):
#   DEMO_CLEAN_TIMEOUT_S (900)   the limit for the whole demo, builds included
#   DEMO_CLEAN_PORTS (59092 58000 59001)   Kafka, DynamoDB, Lambda
#   DEMO_CLEAN_SHARED_TARGET (1)  build in this clone's target directory: dependencies are not
#                                 rebuilt (the clone's own crates are); 0 builds everything
#   DEMO_RECORDS, DEMO_PARTITIONS  passed to the demo
# Cached installs ($KAFKA_ESM_CACHE) are used as they are; point it at an empty directory to
# see a first run.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
LOG_TAG=demo-clean

limit=${DEMO_CLEAN_TIMEOUT_S:-900}
read -r kafka_port dynamodb_port lambda_port <<<"${DEMO_CLEAN_PORTS:-59092 58000 59001}"
require_free_ports "$kafka_port" "$dynamodb_port" "$lambda_port"

work=$(mktemp -d "${TMPDIR:-/tmp}/kafka-esm-demo.XXXXXX")
clone="$work/kafka-esm"
state="$work/state"
git clone --quiet "$repo" "$clone"
log "cloned $(git -C "$clone" rev-parse --short HEAD) into $clone; state in $state"

env_args=(KAFKA_ESM_STATE="$state" KAFKA_PORT="$kafka_port" DYNAMODB_PORT="$dynamodb_port" LAMBDA_PORT="$lambda_port")
if [ "${DEMO_CLEAN_SHARED_TARGET:-1}" = 1 ]; then
  env_args+=(CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}")
fi

started=$SECONDS
rc=0
# The demo's own EXIT trap stops its services; `timeout` sends it SIGTERM first (then SIGKILL
# after 30 s), so even a run that hits the limit cleans up.
env "${env_args[@]}" timeout --kill-after=30 "$limit" bash "$clone/scripts/demo.sh" || rc=$?
elapsed=$((SECONDS - started))
((rc != 124)) || log "the demo did not finish within $limit s"

# Nothing may be left behind: no process of the demo's state, no listener on its ports.
left=$(grep -l . "$state"/*.pid 2>/dev/null || true)
for port in "$kafka_port" "$dynamodb_port" "$lambda_port"; do
  if port_open "$port"; then
    log "port $port is still open after the demo"
    rc=1
  fi
done
if [ -n "$left" ]; then
  STATE=$state
  for pidfile in $left; do
    name=$(basename "$pidfile" .pid)
    if service_alive "$name"; then
      log "the demo left $name running; stopping it"
      stop_service "$name" || true
      rc=1
    fi
  done
fi
if ((rc == 0)); then
  log "the demo passed from a clean clone in $elapsed s"
  rm -rf "$work"
else
  log "the demo FAILED (exit $rc) after $elapsed s; clone and logs kept in $work"
fi
exit "$rc"
