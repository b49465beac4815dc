#!/usr/bin/env bash
# The demo: Kafka records flowing into a Lambda function, offsets committed, lag reaching zero,
# all on this machine (tansu + dynalite + cargo lambda watch on 127.0.0.1).
#
#   scripts/demo.sh            # DEMO_RECORDS=3000 DEMO_PARTITIONS=3 KEEP_STACK=1 to leave it running
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/env.sh
source scripts/env.sh
records=${DEMO_RECORDS:-3000}
partitions=${DEMO_PARTITIONS:-3}
topic="demo-orders-$(date +%s)"
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "Installing what is missing and building esm and the example function"
bash scripts/install-deps.sh
cargo build --quiet -p kafka-esm -p kafka-esm-example-consumer --bins
esm="$repo/target/debug/esm"

say "Starting the local stack: tansu (Kafka), dynalite (DynamoDB), cargo lambda watch (Lambda)"
env_file=$(bash scripts/local-stack.sh start)
# shellcheck disable=SC1090
source "$env_file"
state=${KAFKA_ESM_STATE:-$repo/.local}
poller_pid=
cleanup() {
  [ -n "$poller_pid" ] && kill -TERM "$poller_pid" 2>/dev/null || true
  if [ "${KEEP_STACK:-0}" != 1 ]; then bash scripts/local-stack.sh stop; fi
}
trap cleanup EXIT

say "esm init: creating the mappings and leases tables"
"$esm" init

say "Creating topic $topic ($partitions partitions) and producing $records records"
tansu topic create "$topic" --partitions "$partitions" --broker "tcp://$KAFKA_BOOTSTRAP" >/dev/null
python scripts/produce.py --bootstrap "$KAFKA_BOOTSTRAP" --topic "$topic" --count "$records" --partitions "$partitions"

say "esm create-event-source-mapping (same flags and JSON as the AWS CLI)"
mapping_json=$("$esm" create-event-source-mapping \
  --function-name example-consumer \
  --topics "$topic" \
  --starting-position TRIM_HORIZON \
  --batch-size 100 \
  --maximum-batching-window-in-seconds 1 \
  --self-managed-event-source "{\"Endpoints\":{\"KAFKA_BOOTSTRAP_SERVERS\":[\"$KAFKA_BOOTSTRAP\"]}}")
echo "$mapping_json"
uuid=$(python -c 'import json,sys; print(json.load(sys.stdin)["UUID"])' <<<"$mapping_json")

say "esm poll: the poll loop, here; the function's log is $state/lambda.log"
invocations_before=$(grep -c "Received Kafka batch" "$state/lambda.log" || true)
"$esm" poll --progress-interval 0 >"$state/poller.log" 2>&1 &
poller_pid=$!

deadline=$((SECONDS + 300))
while :; do
  sleep 1
  lag_json=$(python scripts/kafka-offsets.py --bootstrap "$KAFKA_BOOTSTRAP" --group "$uuid" --topic "$topic" --json 2>/dev/null || echo '{"lag": -1, "partitions": []}')
  read -r lag committed < <(python -c 'import json,sys; d=json.load(sys.stdin); print(d["lag"], sum((p["committed"] or 0) for p in d["partitions"]))' <<<"$lag_json")
  invocations=$(( $(grep -c "Received Kafka batch" "$state/lambda.log" || true) - invocations_before ))
  printf '\r  invocations: %5d   committed: %6d / %d   lag: %6s ' "$invocations" "$committed" "$records" "$lag"
  if [ "$lag" = 0 ]; then echo; break; fi
  if ! kill -0 "$poller_pid" 2>/dev/null; then echo; echo "the poller exited; its log:"; tail -n 30 "$state/poller.log"; exit 1; fi
  if ((SECONDS > deadline)); then echo; echo "lag did not reach zero within 300 s; poller log:"; tail -n 30 "$state/poller.log"; exit 1; fi
done

say "Stopping the poller (SIGTERM: finish in-flight invokes, commit, exit 0)"
kill -TERM "$poller_pid"
wait "$poller_pid"
poller_pid=

say "Committed offsets of consumer group $uuid (read by a separate client)"
python scripts/kafka-offsets.py --bootstrap "$KAFKA_BOOTSTRAP" --group "$uuid" --topic "$topic"

say "What the function logged (last 3 invocations)"
{ grep "Received Kafka batch" "$state/lambda.log" || true; } | tail -n 3 | sed 's/^/  /'

say "esm get-event-source-mapping --uuid $uuid"
"$esm" get-event-source-mapping --uuid "$uuid"
echo
echo "Done: $records records delivered to example-consumer, lag 0."
