#!/usr/bin/env bash
# Relay benchmark: the poller Lambda with a short deadline hands its partitions to the successor it
# invokes; how long do records wait at each handoff?
#
#   scripts/handoff-gap.sh
#   HANDOFF_TIMEOUT_MS=25000 HANDOFF_STOP_MARGIN_MS=12000 HANDOFF_RUN_S=60 HANDOFF_RATE=20 \
#     HANDOFF_PARTITIONS=4 scripts/handoff-gap.sh
#
# On its own ports (Kafka 49092, DynamoDB 48000, cargo lambda watch 49001, Lambda front 49002) it
# starts tansu, dynalite and `cargo lambda watch --only-lambda-apis` (the Invoke and Runtime APIs),
# runs the `poller` binary (3 warm instances) and the `example-consumer` binary (one instance per
# partition) against watch's Runtime API, creates a topic and a mapping, produces a steady stream
# (HANDOFF_RATE records/s per partition, one record per produce batch) and invokes the poller
# ONCE, asynchronously, as the schedule would. Each poller runs until deadline - stop margin,
# invokes its successor asynchronously and hands over. After HANDOFF_RUN_S production stops and
# the script waits for lag 0.
#
# The test kit's own librdkafka client samples the group's committed offsets and the high
# watermarks every 50 ms; the report prints per handoff the longest time a partition's committed
# offset did not advance while records were waiting (max over partitions), the overall maximum,
# each poller invocation's time left before its deadline, and the final lag. It exits non-zero when a check
# fails (an invocation overran its deadline, fewer than 2 successors/handoffs, records not all
# committed, lag not 0) -- never on the gap figure.
#
# Why watch runs with --only-lambda-apis and the poller talks to it through a small front
# (`kafka-esm-testkit lambda-front`): cargo lambda watch 1.9.2 hands every invocation the deadline
# header `lambda-runtime-deadline-ms: 600000` (1970-01-01T00:10:00Z; it has no function timeout
# setting), so the poller's budget is 0 and it stops at once; it ignores `X-Amz-Invocation-Type:
# Event` and answers every invoke only when the function returns, so an async self-invoke would
# block the stopping poller until its successor ended; and in this workspace one watch cannot
# start both functions itself (`cargo run --bin poller` at the root only sees the root package;
# `-p` takes one package). The front sets the deadline header to now + HANDOFF_TIMEOUT_MS on each
# poller invocation and answers async invokes with 202, forwarding them in the background -- what
# Lambda does. Everything else (queueing invokes, the Runtime API) is watch's.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
LOG_TAG=handoff-gap

KAFKA_PORT=${HANDOFF_KAFKA_PORT:-49092}
DYNAMODB_PORT=${HANDOFF_DYNAMODB_PORT:-48000}
LAMBDA_PORT=${HANDOFF_LAMBDA_PORT:-49001}
FRONT_PORT=${HANDOFF_FRONT_PORT:-49002}
TIMEOUT_MS=${HANDOFF_TIMEOUT_MS:-25000}
STOP_MARGIN_MS=${HANDOFF_STOP_MARGIN_MS:-12000}
RUN_S=${HANDOFF_RUN_S:-60}
RATE=${HANDOFF_RATE:-20}
PARTITIONS=${HANDOFF_PARTITIONS:-4}
POLLER_INSTANCES=${HANDOFF_POLLER_INSTANCES:-3}
MIN_HANDOFFS=${HANDOFF_MIN_HANDOFFS:-2}
LAG_TIMEOUT_S=${HANDOFF_LAG_TIMEOUT_S:-90}
# In-flight invokes must finish (or be abandoned) inside the stop margin, with 10 s left to
# commit and release (the poller refuses a margin that does not cover drain + 10 s).
DRAIN_MS=${ESM_DRAIN_TIMEOUT_MS:-$((STOP_MARGIN_MS - 10000))}

STATE=${KAFKA_ESM_STATE:-$repo/.local}/handoff-gap
rm -rf "$STATE"
mkdir -p "$STATE"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_services || rc=1
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

require_free_ports "$KAFKA_PORT" "$DYNAMODB_PORT" "$LAMBDA_PORT" "$FRONT_PORT"

say "Installing what is missing; building esm, poller, example-consumer and the test kit (debug)"
bash scripts/install-deps.sh
cargo build --quiet -p kafka-esm -p kafka-esm-poller -p kafka-esm-example-consumer --bins
testkit_bin
bin="${CARGO_TARGET_DIR:-$repo/target}/debug"

export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$DYNAMODB_PORT
export ESM_MAPPINGS_TABLE=handoff-mappings ESM_LEASES_TABLE=handoff-leases
bootstrap=127.0.0.1:$KAFKA_PORT
watch=http://127.0.0.1:$LAMBDA_PORT
front=http://127.0.0.1:$FRONT_PORT

say "Starting tansu :$KAFKA_PORT, dynalite :$DYNAMODB_PORT, cargo lambda watch --only-lambda-apis :$LAMBDA_PORT, front :$FRONT_PORT"
start_service tansu tansu broker --listener-url "tcp://$bootstrap" --advertised-listener-url "tcp://$bootstrap" \
  --storage-engine memory://tansu/
start_service dynalite dynalite --host 127.0.0.1 --port "$DYNAMODB_PORT"
start_service watch cargo lambda watch --only-lambda-apis --invoke-address 127.0.0.1 --invoke-port "$LAMBDA_PORT"
wait_port "$KAFKA_PORT" tansu 30
wait_port "$DYNAMODB_PORT" dynalite 30
wait_port "$LAMBDA_PORT" watch 120
start_service front "$TESTKIT" lambda-front --listen "$FRONT_PORT" --watch "$watch" \
  --function poller --timeout-ms "$TIMEOUT_MS" --log "$STATE/front.jsonl"
wait_port "$FRONT_PORT" front 10

# Function instances: what watch would start, with watch's environment, against its Runtime API.
lambda_env=(AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024 RUST_LOG=info)
for i in $(seq "$PARTITIONS"); do
  start_service "consumer-$i" env "${lambda_env[@]}" AWS_LAMBDA_FUNCTION_NAME=example-consumer \
    AWS_LAMBDA_RUNTIME_API="$watch/.rt/example-consumer" "$bin/example-consumer"
done
for i in $(seq "$POLLER_INSTANCES"); do
  start_service "poller-$i" env "${lambda_env[@]}" AWS_LAMBDA_FUNCTION_NAME=poller \
    AWS_LAMBDA_RUNTIME_API="$front/.rt/poller" AWS_ENDPOINT_URL_LAMBDA="$front" \
    ESM_POLLER_FUNCTION=poller ESM_FETCH_WAIT_MS=10 ESM_STOP_MARGIN_MS="$STOP_MARGIN_MS" \
    ESM_DRAIN_TIMEOUT_MS="$DRAIN_MS" "$bin/poller"
done

say "esm init; topic ($PARTITIONS partitions); mapping to example-consumer"
timeout 60 "$bin/esm" init >/dev/null
topic="handoff-$(date +%s)"
timeout 60 tansu topic create "$topic" --partitions "$PARTITIONS" --broker "tcp://$bootstrap" >/dev/null
mapping=$(AWS_ENDPOINT_URL_LAMBDA=$front timeout 60 "$bin/esm" create-event-source-mapping \
  --function-name example-consumer --topics "$topic" --starting-position TRIM_HORIZON \
  --batch-size 100 --maximum-batching-window-in-seconds 0 \
  --self-managed-event-source "{\"Endpoints\":{\"KAFKA_BOOTSTRAP_SERVERS\":[\"$bootstrap\"]}}" 2>"$STATE/esm.log")
uuid=$("$TESTKIT" json-field UUID <<<"$mapping")
echo "    mapping $uuid (BatchSize 100, MaximumBatchingWindowInSeconds 0), group $uuid"

say "Producing $RATE records/s per partition for $RUN_S s; sampling committed offsets every 50 ms"
start_service sampler "$TESTKIT" sample-offsets --bootstrap "$bootstrap" --topic "$topic" \
  --group "$uuid" --interval-ms 50 --out "$STATE/samples.jsonl"
start_service producer "$TESTKIT" produce --bootstrap "$bootstrap" --topic "$topic" \
  --partitions "$PARTITIONS" --rate "$((RATE * PARTITIONS))" --keys 97 --stamp value \
  --stop-file "$STATE/stop-producing" --out "$STATE/produced.json"
producer_pid=$SERVICE_PID
sleep 1

say "Invoking the poller once, asynchronously, as the schedule would (deadline ${TIMEOUT_MS} ms, stop margin ${STOP_MARGIN_MS} ms)"
status=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' -X POST -H 'X-Amz-Invocation-Type: Event' \
  "$front/2015-03-31/functions/poller/invocations" -d '{}')
[ "$status" = 202 ] || die "the invoke returned HTTP $status"

offsets() { timeout 30 "$TESTKIT" offsets --bootstrap "$bootstrap" --group "$uuid" --topic "$topic" "$@"; }
progress() {
  local lag invocations
  read -r lag _ < <(offsets --format totals 2>/dev/null || echo -1)
  invocations=$(grep -c '"delivered"' "$STATE/front.jsonl" || true)
  printf '    %5ds  poller invocations: %2d  lag: %s\n' "$((SECONDS - t_start))" "$invocations" "$lag"
  last_lag=$lag
}
t_start=$SECONDS
while ((SECONDS - t_start < RUN_S)); do
  sleep 5
  progress
done
touch "$STATE/stop-producing"
timeout 90 tail --pid="$producer_pid" -f /dev/null || die "the producer did not stop within 90 s"
wait "$producer_pid" || { log "the producer failed:"; cat "$STATE/producer.log" >&2; exit 1; }

say "Production stopped; waiting for lag 0 (at most $LAG_TIMEOUT_S s)"
deadline=$((SECONDS + LAG_TIMEOUT_S))
while :; do
  sleep 2
  progress
  [ "$last_lag" = 0 ] && break
  ((SECONDS < deadline)) || break
done
sleep 1
offsets --format json >"$STATE/final.json"
stop_service sampler

echo
rc=0
"$TESTKIT" handoff-report --samples "$STATE/samples.jsonl" --front-log "$STATE/front.jsonl" \
  --produced "$STATE/produced.json" --final "$STATE/final.json" --stop-margin-ms "$STOP_MARGIN_MS" \
  --timeout-ms "$TIMEOUT_MS" --interval-ms 50 --min-handoffs "$MIN_HANDOFFS" || rc=$?
echo
echo "Logs: $STATE (poller-N.log, consumer-N.log, front.jsonl, samples.jsonl)"
echo "Reproduce: HANDOFF_TIMEOUT_MS=$TIMEOUT_MS HANDOFF_STOP_MARGIN_MS=$STOP_MARGIN_MS HANDOFF_RUN_S=$RUN_S HANDOFF_RATE=$RATE HANDOFF_PARTITIONS=$PARTITIONS scripts/handoff-gap.sh"
exit "$rc"
