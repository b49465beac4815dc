#!/usr/bin/env bash
# DynamoDB calls per partition-minute of `esm poll` at steady state: prints the figures and the
# command that reproduces them. The target (<= 2 writes per partition-minute) is reported, never
# asserted; the exit status is non-zero only if something failed (a service or poller did not
# start or died, the leases never settled, or a lease moved during the window).
#
#   scripts/ddb-calls.sh                          # 3 pollers, 12 partitions, 60 s window
#   DDB_CALLS_POLLERS=1 scripts/ddb-calls.sh
#
# It starts its own tansu (Kafka) and dynalite (DynamoDB) on dedicated ports, a counting proxy in
# front of dynalite and an always-200 Invoke stub (`kafka-esm-testkit ddb-proxy` and `stub`),
# builds `esm`,
# creates the tables, a topic and one mapping, starts N `esm poll` processes whose DynamoDB
# endpoint is the proxy, produces a light steady trickle of records, waits for the leases to
# settle (every partition leased by a live poller, fair shares), resets the counters and counts
# over the window. Everything it starts is stopped on exit.
#
# Settings (environment):
#   DDB_CALLS_POLLERS (3)      `esm poll` processes
#   DDB_CALLS_PARTITIONS (12)  partitions of the topic
#   DDB_CALLS_WARMUP_S (20)    wait at least this long before measuring, then until leases settle
#   DDB_CALLS_SETTLE_TIMEOUT_S (120)  give up if the leases have not settled by then
#   DDB_CALLS_WINDOW_S (60)    the measurement window
#   DDB_CALLS_RATE (6)         records per second produced, round-robin over the partitions
#   DDB_CALLS_PROFILE (debug)  `esm` build: debug (quick to rebuild) or release; the calls made
#                              do not depend on it
#   Ports: DDB_CALLS_KAFKA_PORT (39092), DDB_CALLS_DYNAMODB_PORT (38000, dynalite),
#          DDB_CALLS_PROXY_PORT (38001, the counting proxy), DDB_CALLS_LAMBDA_PORT (39001)
#   ESM_* variables reach the pollers unchanged: ESM_LEASE_DURATION_MS (10000),
#   ESM_LEASE_RENEW_MS (duration / 2), ESM_LEASE_SCAN_MS (5000), ESM_REFRESH_INTERVAL_MS (3000);
#   ESM_FETCH_WAIT_MS defaults to 100 here (tansu holds every fetch that long; no DynamoDB effect).
# Logs: $KAFKA_ESM_STATE/ddb-calls/ (default .local/ddb-calls/).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
LOG_TAG=ddb-calls

# ESM_* as given by the caller, for the reproduce line.
user_esm=$(env | grep -E '^ESM_[A-Z0-9_]+=' | sort | tr '\n' ' ' || true)

pollers=${DDB_CALLS_POLLERS:-3}
partitions=${DDB_CALLS_PARTITIONS:-12}
warmup_s=${DDB_CALLS_WARMUP_S:-20}
settle_timeout_s=${DDB_CALLS_SETTLE_TIMEOUT_S:-120}
window_s=${DDB_CALLS_WINDOW_S:-60}
rate=${DDB_CALLS_RATE:-6}
profile=${DDB_CALLS_PROFILE:-debug}
kafka_port=${DDB_CALLS_KAFKA_PORT:-39092}
dynamodb_port=${DDB_CALLS_DYNAMODB_PORT:-38000}
proxy_port=${DDB_CALLS_PROXY_PORT:-38001}
lambda_port=${DDB_CALLS_LAMBDA_PORT:-39001}
STATE=${KAFKA_ESM_STATE:-$repo/.local}/ddb-calls

for v in POLLERS:$pollers PARTITIONS:$partitions WARMUP_S:$warmup_s SETTLE_TIMEOUT_S:$settle_timeout_s WINDOW_S:$window_s; do
  [[ ${v#*:} =~ ^[1-9][0-9]*$ ]] || die "DDB_CALLS_${v%%:*}=${v#*:} must be a positive whole number"
done
((pollers <= partitions)) || die "DDB_CALLS_POLLERS=$pollers: at most one poller per partition ($partitions)"
[[ $rate =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "DDB_CALLS_RATE=$rate must be a number of records per second"
case $profile in debug | release) ;; *) die "DDB_CALLS_PROFILE=$profile: debug or release" ;; esac

require_free_ports "$kafka_port" "$dynamodb_port" "$proxy_port" "$lambda_port"

mkdir -p "$STATE"
rm -f "$STATE"/*.log "$STATE"/*.pid "$STATE"/leases-*.json

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # Pollers first (SIGTERM: they release their leases), then trickle, stub, proxy, dynalite, tansu.
  stop_services || rc=1
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "installing what is missing (scripts/install-deps.sh)"
bash scripts/install-deps.sh

log "building esm ($profile)"
if [ "$profile" = release ]; then
  cargo build --release --quiet -p kafka-esm --bin esm
else
  cargo build --quiet -p kafka-esm --bin esm
fi
esm="${CARGO_TARGET_DIR:-$repo/target}/$profile/esm"
testkit_bin
dirty=$(git status --porcelain -- src functions Cargo.toml Cargo.lock 2>/dev/null | awk '{print $2}' | tr '\n' ' ')
build="esm $profile build of $(git rev-parse --short HEAD 2>/dev/null || echo unknown)${dirty:+ + uncommitted changes in ${dirty% }}"

log "starting tansu :$kafka_port, dynalite :$dynamodb_port, counting proxy :$proxy_port, Invoke stub :$lambda_port"
start_service tansu tansu broker \
  --listener-url "tcp://127.0.0.1:$kafka_port" \
  --advertised-listener-url "tcp://127.0.0.1:$kafka_port" \
  --storage-engine memory://tansu/
start_service dynalite dynalite --host 127.0.0.1 --port "$dynamodb_port"
start_service proxy "$TESTKIT" ddb-proxy --port "$proxy_port" --upstream "127.0.0.1:$dynamodb_port"
start_service stub "$TESTKIT" stub --port "$lambda_port" --quiet
wait_port "$kafka_port" tansu 30
wait_port "$dynamodb_port" dynalite 30
wait_port "$proxy_port" proxy 30
wait_port "$lambda_port" stub 30

export AWS_REGION=${AWS_REGION:-us-east-1}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-local}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-local}
export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$proxy_port"
export AWS_ENDPOINT_URL_LAMBDA="http://127.0.0.1:$lambda_port"
export ESM_FETCH_WAIT_MS=${ESM_FETCH_WAIT_MS:-100}
bootstrap="127.0.0.1:$kafka_port"
leases_table=${ESM_LEASES_TABLE:-kafka-esm-leases}

log "esm init; topic and mapping"
timeout 60 "$esm" init >"$STATE/init.log" 2>&1 || { cat "$STATE/init.log" >&2; die "esm init failed"; }
topic="ddb-calls-$(date +%s)"
timeout 60 tansu topic create "$topic" --partitions "$partitions" --broker "tcp://$bootstrap" >/dev/null
mapping_json=$(timeout 60 "$esm" create-event-source-mapping \
  --function-name ddb-calls-fn \
  --topics "$topic" \
  --starting-position TRIM_HORIZON \
  --self-managed-event-source "{\"Endpoints\":{\"KAFKA_BOOTSTRAP_SERVERS\":[\"$bootstrap\"]}}")
uuid=$("$TESTKIT" json-field UUID <<<"$mapping_json")
log "mapping $uuid: topic $topic ($partitions partitions) -> ddb-calls-fn"

# One record per producer batch (tansu 0.6 skips the rest of a multi-record batch when a fetch
# starts inside it), round-robin over the partitions.
start_service trickle "$TESTKIT" produce --bootstrap "$bootstrap" --topic "$topic" \
  --partitions "$partitions" --rate "$rate" --stamp value

log "starting $pollers x esm poll (logs: $STATE/poller-N.log)"
for ((i = 1; i <= pollers; i++)); do
  start_service "poller-$i" "$esm" poll --progress-interval 0
  # SIGTERM: finish in-flight invokes, commit, release the leases.
  SERVICE_GRACE[poller-$i]=15
done

check_alive() {
  local name
  for name in "${SERVICE_NAMES[@]}"; do
    if ! service_alive "$name"; then
      log "$name exited; the end of its log ($STATE/$name.log):"
      tail -n 30 "$STATE/$name.log" >&2
      exit 1
    fi
  done
}

leases() { # extra args...
  timeout 30 "$TESTKIT" ddb-leases --dynamodb "http://127.0.0.1:$dynamodb_port" --table "$leases_table" \
    --partitions "$partitions" --pollers "$pollers" "$@"
}

log "warming up for ${warmup_s} s, then until the leases settle (at most ${settle_timeout_s} s in all)"
started=$SECONDS
while ((SECONDS - started < warmup_s)); do
  check_alive
  sleep 1
done
until before_text=$(leases --save "$STATE/leases-before.json"); do
  check_alive
  if ((SECONDS - started > settle_timeout_s)); then
    log "the leases did not settle within ${settle_timeout_s} s: $before_text"
    for ((i = 1; i <= pollers; i++)); do
      log "poller-$i.log (last 15 lines):"
      tail -n 15 "$STATE/poller-$i.log" >&2
    done
    exit 1
  fi
  sleep 1
done
log "settled after $((SECONDS - started)) s: $before_text"

log "measuring for ${window_s} s"
timeout 30 "$TESTKIT" ddb-reset --proxy "http://127.0.0.1:$proxy_port" --stub "http://127.0.0.1:$lambda_port"
window_started=$SECONDS
while ((SECONDS - window_started < window_s)); do
  sleep 1
  check_alive
done
after_rc=0
after_text=$(leases --save "$STATE/leases-after.json" --compare "$STATE/leases-before.json") || after_rc=$?

duration_ms=${ESM_LEASE_DURATION_MS:-10000}
if [ -n "${ESM_LEASE_RENEW_MS:-}" ]; then
  renew_ms=$ESM_LEASE_RENEW_MS renew_note=""
else
  renew_ms=$(awk -v d="$duration_ms" 'BEGIN { r = d / 2; if (r == int(r)) printf "%.1f", r; else print r }') renew_note=" (duration / 2)"
fi
settings="ESM_LEASE_DURATION_MS=$duration_ms ESM_LEASE_RENEW_MS=$renew_ms$renew_note"
settings+=" ESM_LEASE_SCAN_MS=${ESM_LEASE_SCAN_MS:-5000} ESM_REFRESH_INTERVAL_MS=${ESM_REFRESH_INTERVAL_MS:-3000}"
settings+=" ESM_FETCH_WAIT_MS=$ESM_FETCH_WAIT_MS rate=${rate}/s window=${window_s}s"
command="DDB_CALLS_POLLERS=$pollers DDB_CALLS_PARTITIONS=$partitions DDB_CALLS_WARMUP_S=$warmup_s"
command+=" DDB_CALLS_WINDOW_S=$window_s DDB_CALLS_RATE=$rate DDB_CALLS_PROFILE=$profile ${user_esm}scripts/ddb-calls.sh"

timeout 30 "$TESTKIT" ddb-report \
  --proxy "http://127.0.0.1:$proxy_port" --stub "http://127.0.0.1:$lambda_port" \
  --partitions "$partitions" --pollers "$pollers" --warmup-s "$((window_started - started))" --rate "$rate" \
  --renew-ms "$renew_ms" \
  --scan-ms "${ESM_LEASE_SCAN_MS:-5000}" --refresh-ms "${ESM_REFRESH_INTERVAL_MS:-3000}" \
  --settings "$settings" --build "$build" --command "$command" \
  --before-text "$before_text" --after-text "$after_text"

case $after_rc in
  0) ;;
  4) die "a lease changed owner or counter during the window: not a steady state (see $STATE/poller-*.log)" ;;
  *) die "the leases were not settled at the end of the window (see $STATE/poller-*.log)" ;;
esac
