#!/usr/bin/env bash
# Relay benchmark: the poller Lambda with a short deadline hands its partitions to the successor it
# invokes; how long do records wait at each handoff?
#
#   scripts/handoff-gap.sh
#   HANDOFF_TIMEOUT_MS=20000 HANDOFF_STOP_MARGIN_MS=5000 HANDOFF_RUN_S=60 HANDOFF_RATE=20 \
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
# A separate librdkafka client samples the group's committed offsets and the high watermarks every
# 50 ms; the report prints per handoff the longest time a partition's committed offset did not
# advance while records were waiting (max over partitions), the overall maximum, each poller
# invocation's time left before its deadline, and the final lag. It exits non-zero when a check
# fails (an invocation overran its deadline, fewer than 2 successors/handoffs, records not all
# committed, lag not 0) -- never on the gap figure.
#
# Why watch runs with --only-lambda-apis and the poller talks to it through a small front
# (scripts/handoff-gap.py front): cargo lambda watch 1.9.2 hands every invocation the deadline
# header `lambda-runtime-deadline-ms: 600000` (1970-01-01T00:10:00Z; it has no function timeout
# setting), so the poller's budget is 0 and it stops at once; it ignores `X-Amz-Invocation-Type:
# Event` and answers every invoke only when the function returns, so an async self-invoke would
# block the stopping poller until its successor ended; and in this workspace one watch cannot
# start both functions itself (`cargo run --bin poller` at the root only sees the root package;
# `-p` takes one package). The front sets the deadline header to now + HANDOFF_TIMEOUT_MS on each
# poller invocation and answers async invokes with 202, forwarding them in the background -- what
# Lambda does. Everything else (queueing invokes, the Runtime API) is watch's.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/env.sh
source scripts/env.sh

KAFKA_PORT=${HANDOFF_KAFKA_PORT:-49092}
DYNAMODB_PORT=${HANDOFF_DYNAMODB_PORT:-48000}
LAMBDA_PORT=${HANDOFF_LAMBDA_PORT:-49001}
FRONT_PORT=${HANDOFF_FRONT_PORT:-49002}
TIMEOUT_MS=${HANDOFF_TIMEOUT_MS:-20000}
STOP_MARGIN_MS=${HANDOFF_STOP_MARGIN_MS:-5000}
RUN_S=${HANDOFF_RUN_S:-60}
RATE=${HANDOFF_RATE:-20}
PARTITIONS=${HANDOFF_PARTITIONS:-4}
POLLER_INSTANCES=${HANDOFF_POLLER_INSTANCES:-3}
MIN_HANDOFFS=${HANDOFF_MIN_HANDOFFS:-2}
LAG_TIMEOUT_S=${HANDOFF_LAG_TIMEOUT_S:-90}
# In-flight invokes must finish (or be abandoned) well inside the stop margin.
DRAIN_MS=${ESM_DRAIN_TIMEOUT_MS:-$((STOP_MARGIN_MS * 3 / 5))}

state=${KAFKA_ESM_STATE:-$repo/.local}/handoff-gap
rm -rf "$state"
mkdir -p "$state"
say() { printf '==> %s\n' "$*"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pids=()
cleanup() {
  local pid i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM -- "-${pids[i]}" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    # cargo lambda watch does not always stop on SIGTERM.
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: in its own process group (setsid), output to $state/NAME.log.
start() {
  local name=$1
  shift
  setsid "$@" >"$state/$name.log" 2>&1 </dev/null &
  pids+=($!)
}

wait_port() { # port name seconds
  local deadline=$((SECONDS + $3))
  until port_open "$1"; do
    if ((SECONDS > deadline)); then
      echo "$2 did not open port $1 within $3 s; its log:" >&2
      tail -n 30 "$state/$2.log" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

for port in "$KAFKA_PORT" "$DYNAMODB_PORT" "$LAMBDA_PORT" "$FRONT_PORT"; do
  if port_open "$port"; then
    echo "port $port is in use (another handoff-gap run?); set HANDOFF_*_PORT or stop it" >&2
    exit 1
  fi
  # A previous run's connections linger in TIME_WAIT for up to 60 s, and tansu cannot bind then.
  if command -v ss >/dev/null; then
    waited=0
    while [ -n "$(ss -Htan "( sport = :$port )" 2>/dev/null)" ]; do
      ((waited == 0)) && echo "    waiting for port $port's old connections (TIME_WAIT) to close" >&2
      waited=1
      sleep 2
    done
  fi
done

say "Installing what is missing; building esm, poller and example-consumer (debug)"
bash scripts/install-deps.sh
cargo build --quiet -p kafka-esm -p kafka-esm-poller -p kafka-esm-example-consumer --bins
bin="$repo/target/debug"

export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local
export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$DYNAMODB_PORT
export ESM_MAPPINGS_TABLE=handoff-mappings ESM_LEASES_TABLE=handoff-leases
bootstrap=127.0.0.1:$KAFKA_PORT
watch=http://127.0.0.1:$LAMBDA_PORT
front=http://127.0.0.1:$FRONT_PORT

say "Starting tansu :$KAFKA_PORT, dynalite :$DYNAMODB_PORT, cargo lambda watch --only-lambda-apis :$LAMBDA_PORT, front :$FRONT_PORT"
start tansu tansu broker --listener-url "tcp://$bootstrap" --advertised-listener-url "tcp://$bootstrap" \
  --storage-engine memory://tansu/
start dynalite dynalite --host 127.0.0.1 --port "$DYNAMODB_PORT"
start watch cargo lambda watch --only-lambda-apis --invoke-address 127.0.0.1 --invoke-port "$LAMBDA_PORT"
wait_port "$KAFKA_PORT" tansu 30
wait_port "$DYNAMODB_PORT" dynalite 30
wait_port "$LAMBDA_PORT" watch 120
start front python scripts/handoff-gap.py front --listen "$FRONT_PORT" --watch "$watch" \
  --function poller --timeout-ms "$TIMEOUT_MS" --log "$state/front.jsonl"
wait_port "$FRONT_PORT" front 10

# Function instances: what watch would start, with watch's environment, against its Runtime API.
lambda_env=(AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024 RUST_LOG=info)
for i in $(seq "$PARTITIONS"); do
  start "consumer-$i" env "${lambda_env[@]}" AWS_LAMBDA_FUNCTION_NAME=example-consumer \
    AWS_LAMBDA_RUNTIME_API="$watch/.rt/example-consumer" "$bin/example-consumer"
done
for i in $(seq "$POLLER_INSTANCES"); do
  start "poller-$i" env "${lambda_env[@]}" AWS_LAMBDA_FUNCTION_NAME=poller \
    AWS_LAMBDA_RUNTIME_API="$front/.rt/poller" AWS_ENDPOINT_URL_LAMBDA="$front" \
    ESM_POLLER_FUNCTION=poller ESM_FETCH_WAIT_MS=10 ESM_STOP_MARGIN_MS="$STOP_MARGIN_MS" \
    ESM_DRAIN_TIMEOUT_MS="$DRAIN_MS" "$bin/poller"
done

say "esm init; topic ($PARTITIONS partitions); mapping to example-consumer"
"$bin/esm" init >/dev/null
topic="handoff-$(date +%s)"
tansu topic create "$topic" --partitions "$PARTITIONS" --broker "tcp://$bootstrap" >/dev/null
mapping=$(AWS_ENDPOINT_URL_LAMBDA=$front "$bin/esm" create-event-source-mapping \
  --function-name example-consumer --topics "$topic" --starting-position TRIM_HORIZON \
  --batch-size 100 --maximum-batching-window-in-seconds 0 \
  --self-managed-event-source "{\"Endpoints\":{\"KAFKA_BOOTSTRAP_SERVERS\":[\"$bootstrap\"]}}" 2>"$state/esm.log")
uuid=$(python -c 'import json,sys; print(json.load(sys.stdin)["UUID"])' <<<"$mapping")
echo "    mapping $uuid (BatchSize 100, MaximumBatchingWindowInSeconds 0), group $uuid"

say "Producing $RATE records/s per partition for $RUN_S s; sampling committed offsets every 50 ms"
start sampler python scripts/handoff-gap.py sample --bootstrap "$bootstrap" --topic "$topic" \
  --group "$uuid" --interval-ms 50 --out "$state/samples.jsonl"
sampler_pid=${pids[-1]}
start producer python scripts/handoff-gap.py produce --bootstrap "$bootstrap" --topic "$topic" \
  --partitions "$PARTITIONS" --rate "$RATE" --stop-file "$state/stop-producing" --out "$state/produced.json"
producer_pid=${pids[-1]}
sleep 1

say "Invoking the poller once, asynchronously, as the schedule would (deadline ${TIMEOUT_MS} ms, stop margin ${STOP_MARGIN_MS} ms)"
status=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'X-Amz-Invocation-Type: Event' \
  "$front/2015-03-31/functions/poller/invocations" -d '{}')
[ "$status" = 202 ] || { echo "the invoke returned HTTP $status" >&2; exit 1; }

progress() {
  local json lag invocations
  json=$(python scripts/kafka-offsets.py --bootstrap "$bootstrap" --group "$uuid" --topic "$topic" --json 2>/dev/null || echo '{"lag": -1}')
  lag=$(python -c 'import json,sys; print(json.load(sys.stdin)["lag"])' <<<"$json")
  invocations=$(grep -c '"delivered"' "$state/front.jsonl" || true)
  printf '    %5ds  poller invocations: %2d  lag: %s\n' "$((SECONDS - t_start))" "$invocations" "$lag"
  last_lag=$lag
}
t_start=$SECONDS
while ((SECONDS - t_start < RUN_S)); do
  sleep 5
  progress
done
touch "$state/stop-producing"
wait "$producer_pid" || { echo "the producer failed:" >&2; cat "$state/producer.log" >&2; exit 1; }

say "Production stopped; waiting for lag 0 (at most $LAG_TIMEOUT_S s)"
deadline=$((SECONDS + LAG_TIMEOUT_S))
while :; do
  sleep 2
  progress
  [ "$last_lag" = 0 ] && break
  ((SECONDS < deadline)) || break
done
sleep 1
python scripts/kafka-offsets.py --bootstrap "$bootstrap" --group "$uuid" --topic "$topic" --json >"$state/final.json"
kill -TERM "$sampler_pid"
wait "$sampler_pid" || true

echo
rc=0
python scripts/handoff-gap.py report --samples "$state/samples.jsonl" --front-log "$state/front.jsonl" \
  --produced "$state/produced.json" --final "$state/final.json" --stop-margin-ms "$STOP_MARGIN_MS" \
  --timeout-ms "$TIMEOUT_MS" --interval-ms 50 --min-handoffs "$MIN_HANDOFFS" || rc=$?
echo
echo "Logs: $state (poller-N.log, consumer-N.log, front.jsonl, samples.jsonl)"
echo "Reproduce: HANDOFF_TIMEOUT_MS=$TIMEOUT_MS HANDOFF_STOP_MARGIN_MS=$STOP_MARGIN_MS HANDOFF_RUN_S=$RUN_S HANDOFF_RATE=$RATE HANDOFF_PARTITIONS=$PARTITIONS scripts/handoff-gap.sh"
exit "$rc"
