#!/usr/bin/env bash
# The demo: Kafka records flowing into a Lambda function, offsets committed, lag reaching zero,
# all on this machine (tansu + dynalite + cargo lambda watch on 127.0.0.1).
#
#   scripts/demo.sh            # DEMO_RECORDS=3000 DEMO_PARTITIONS=3 KEEP_STACK=1 to leave it running
#
# It never waits without a limit: the stack's ports (scripts/local-stack.sh), every esm and
# test-kit command (DEMO_COMMAND_TIMEOUT_S, 120), lag 0 (DEMO_LAG_TIMEOUT_S, 300) and the
# poller's shutdown (60 s). On any failure it prints the end of the logs and exits non-zero,
# and it always stops what it started (unless KEEP_STACK=1), checking that nothing is left.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
LOG_TAG=demo
STATE=${KAFKA_ESM_STATE:-$repo/.local}
records=${DEMO_RECORDS:-3000}
partitions=${DEMO_PARTITIONS:-3}
command_timeout=${DEMO_COMMAND_TIMEOUT_S:-120}
lag_timeout=${DEMO_LAG_TIMEOUT_S:-300}
topic="demo-orders-$(date +%s)"
mkdir -p "$STATE"
started=$SECONDS

# Every command that talks to a service gets a time limit.
limited() { timeout --kill-after=5 "$command_timeout" "$@"; }

stack_started=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if ((rc != 0)); then
    echo >&2
    log "FAILED (exit $rc) after $((SECONDS - started)) s; the end of the logs in $STATE:"
    for name in poller lambda tansu dynalite; do
      if [ -s "$STATE/$name.log" ]; then
        echo "--- $name.log" >&2
        tail -n 20 "$STATE/$name.log" >&2
      fi
    done
  fi
  stop_service poller 60 || rc=1
  if ((stack_started)) && [ "${KEEP_STACK:-0}" != 1 ]; then
    bash scripts/local-stack.sh stop || rc=1
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "Installing what is missing and building esm, the example function and the test kit"
bash scripts/install-deps.sh
cargo build --quiet -p kafka-esm -p kafka-esm-example-consumer --bins
testkit_bin
esm="${CARGO_TARGET_DIR:-$repo/target}/debug/esm"

say "Starting the local stack: tansu (Kafka), dynalite (DynamoDB), cargo lambda watch (Lambda)"
stack_started=1
env_file=$(KAFKA_ESM_STATE=$STATE bash scripts/local-stack.sh start)
# shellcheck disable=SC1090
source "$env_file"

say "esm init: creating the mappings and leases tables"
limited "$esm" init

say "Creating topic $topic ($partitions partitions) and producing $records records"
limited tansu topic create "$topic" --partitions "$partitions" --broker "tcp://$KAFKA_BOOTSTRAP" >/dev/null
limited "$TESTKIT" produce --bootstrap "$KAFKA_BOOTSTRAP" --topic "$topic" --count "$records" \
  --partitions "$partitions" --value order --keys 97 --key-prefix customer- --header source=kafka-esm-demo

say "esm create-event-source-mapping (same flags and JSON as the AWS CLI)"
mapping_json=$(limited "$esm" create-event-source-mapping \
  --function-name example-consumer \
  --topics "$topic" \
  --starting-position TRIM_HORIZON \
  --batch-size 100 \
  --maximum-batching-window-in-seconds 1 \
  --self-managed-event-source "{\"Endpoints\":{\"KAFKA_BOOTSTRAP_SERVERS\":[\"$KAFKA_BOOTSTRAP\"]}}")
echo "$mapping_json"
uuid=$("$TESTKIT" json-field UUID <<<"$mapping_json")

say "esm poll: the poll loop, here; the function's log is $STATE/lambda.log"
invocations_before=$(grep -c "Received Kafka batch" "$STATE/lambda.log" || true)
start_service poller "$esm" poll --progress-interval 0
poller_pid=$SERVICE_PID

deadline=$((SECONDS + lag_timeout))
while :; do
  sleep 1
  read -r lag committed _ < <(limited "$TESTKIT" offsets --bootstrap "$KAFKA_BOOTSTRAP" --group "$uuid" \
    --topic "$topic" --format totals 2>/dev/null || echo "-1 0 0")
  invocations=$(($(grep -c "Received Kafka batch" "$STATE/lambda.log" || true) - invocations_before))
  printf '\r  invocations: %5d   committed: %6d / %d   lag: %6s ' "$invocations" "$committed" "$records" "$lag"
  if [ "$lag" = 0 ]; then
    echo
    break
  fi
  if ! service_alive poller; then
    echo
    die "the poller exited before lag reached 0"
  fi
  if ((SECONDS > deadline)); then
    echo
    die "lag did not reach zero within $lag_timeout s"
  fi
done

say "Stopping the poller (SIGTERM: finish in-flight invokes, commit, exit 0)"
kill -TERM "$poller_pid"
poller_rc=0
timeout 60 tail --pid="$poller_pid" -f /dev/null || die "the poller did not stop within 60 s of SIGTERM"
wait "$poller_pid" || poller_rc=$?
((poller_rc == 0)) || die "the poller exited with status $poller_rc"

say "Committed offsets of consumer group $uuid (read by the test kit's own client)"
limited "$TESTKIT" offsets --bootstrap "$KAFKA_BOOTSTRAP" --group "$uuid" --topic "$topic"

say "What the function logged (last 3 invocations)"
{ grep "Received Kafka batch" "$STATE/lambda.log" || true; } | tail -n 3 | sed 's/^/  /'

say "esm get-event-source-mapping --uuid $uuid"
limited "$esm" get-event-source-mapping --uuid "$uuid"
say "esm status --uuid $uuid (per partition: owner, committed and end offsets, lag, stuck)"
limited "$esm" status --uuid "$uuid"
echo
echo "Done in $((SECONDS - started)) s: $records records delivered to example-consumer, lag 0."
