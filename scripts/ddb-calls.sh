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
# front of dynalite and an always-200 Invoke stub (scripts/ddb-count-proxy.py), builds `esm`,
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
#   ESM_* variables reach the pollers unchanged: ESM_LEASE_DURATION_MS (20000),
#   ESM_LEASE_RENEW_MS (duration x 2/5), ESM_LEASE_SCAN_MS (5000), ESM_REFRESH_INTERVAL_MS (3000);
#   ESM_FETCH_WAIT_MS defaults to 100 here (tansu holds every fetch that long; no DynamoDB effect).
# Logs: $KAFKA_ESM_STATE/ddb-calls/ (default .local/ddb-calls/).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/env.sh
source scripts/env.sh

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
state=${KAFKA_ESM_STATE:-$repo/.local}/ddb-calls
helper="$repo/scripts/ddb-count-proxy.py"

log() { printf '[ddb-calls] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

for v in POLLERS:$pollers PARTITIONS:$partitions WARMUP_S:$warmup_s SETTLE_TIMEOUT_S:$settle_timeout_s WINDOW_S:$window_s; do
  [[ ${v#*:} =~ ^[1-9][0-9]*$ ]] || die "DDB_CALLS_${v%%:*}=${v#*:} must be a positive whole number"
done
((pollers <= partitions)) || die "DDB_CALLS_POLLERS=$pollers: at most one poller per partition ($partitions)"
[[ $rate =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "DDB_CALLS_RATE=$rate must be a number of records per second"
case $profile in debug | release) ;; *) die "DDB_CALLS_PROFILE=$profile: debug or release" ;; esac

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port name seconds
  local deadline=$((SECONDS + $3))
  until port_open "$1"; do
    if ((SECONDS > deadline)); then
      log "$2 did not open port $1 within $3 s; its log:"
      tail -n 30 "$state/$2.log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

for p in "$kafka_port" "$dynamodb_port" "$proxy_port" "$lambda_port"; do
  if port_open "$p"; then
    die "port $p is in use (another ddb-calls run?); set DDB_CALLS_{KAFKA,DYNAMODB,PROXY,LAMBDA}_PORT"
  fi
done

mkdir -p "$state"
rm -f "$state"/*.log "$state"/leases-*.json

# Process groups (setsid) of the services, and the pollers' pids.
services=()
poller_pids=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if ((${#poller_pids[@]})); then
    kill -TERM "${poller_pids[@]}" 2>/dev/null || true
    for _ in $(seq 150); do
      local alive=0
      for pid in "${poller_pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      ((alive)) || break
      sleep 0.1
    done
    kill -KILL "${poller_pids[@]}" 2>/dev/null || true
  fi
  # Newest first: trickle, stub, proxy, dynalite, tansu.
  for ((i = ${#services[@]} - 1; i >= 0; i--)); do
    local pid=${services[i]}
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_service() { # name command...
  local name=$1
  shift
  setsid "$@" >"$state/$name.log" 2>&1 </dev/null &
  services+=("$!")
}

log "installing what is missing (scripts/install-deps.sh)"
bash scripts/install-deps.sh

log "building esm ($profile)"
if [ "$profile" = release ]; then
  cargo build --release --quiet -p kafka-esm --bin esm
else
  cargo build --quiet -p kafka-esm --bin esm
fi
esm="${CARGO_TARGET_DIR:-$repo/target}/$profile/esm"
dirty=$(git status --porcelain -- src functions Cargo.toml Cargo.lock 2>/dev/null | awk '{print $2}' | tr '\n' ' ')
build="esm $profile build of $(git rev-parse --short HEAD 2>/dev/null || echo unknown)${dirty:+ + uncommitted changes in ${dirty% }}"

log "starting tansu :$kafka_port, dynalite :$dynamodb_port, counting proxy :$proxy_port, Invoke stub :$lambda_port"
start_service tansu tansu broker \
  --listener-url "tcp://127.0.0.1:$kafka_port" \
  --advertised-listener-url "tcp://127.0.0.1:$kafka_port" \
  --storage-engine memory://tansu/
start_service dynalite dynalite --host 127.0.0.1 --port "$dynamodb_port"
start_service proxy python "$helper" proxy --port "$proxy_port" --upstream "127.0.0.1:$dynamodb_port"
start_service stub python "$helper" stub --port "$lambda_port"
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
"$esm" init >"$state/init.log" 2>&1 || { cat "$state/init.log" >&2; die "esm init failed"; }
topic="ddb-calls-$(date +%s)"
tansu topic create "$topic" --partitions "$partitions" --broker "tcp://$bootstrap" >/dev/null
mapping_json=$("$esm" create-event-source-mapping \
  --function-name ddb-calls-fn \
  --topics "$topic" \
  --starting-position TRIM_HORIZON \
  --self-managed-event-source "{\"Endpoints\":{\"KAFKA_BOOTSTRAP_SERVERS\":[\"$bootstrap\"]}}")
uuid=$(python -c 'import json,sys; print(json.load(sys.stdin)["UUID"])' <<<"$mapping_json")
log "mapping $uuid: topic $topic ($partitions partitions) -> ddb-calls-fn"

start_service trickle python "$helper" trickle --bootstrap "$bootstrap" --topic "$topic" \
  --partitions "$partitions" --rate "$rate"

log "starting $pollers x esm poll (logs: $state/poller-N.log)"
for ((i = 1; i <= pollers; i++)); do
  "$esm" poll --progress-interval 0 >"$state/poller-$i.log" 2>&1 </dev/null &
  poller_pids+=("$!")
done

check_alive() {
  local i=0
  for pid in "${poller_pids[@]}"; do
    i=$((i + 1))
    if ! kill -0 "$pid" 2>/dev/null; then
      log "esm poll #$i (pid $pid) exited; its log:"
      tail -n 30 "$state/poller-$i.log" >&2
      exit 1
    fi
  done
  for pid in "${services[@]}"; do
    kill -0 "$pid" 2>/dev/null || die "a service (pid $pid) exited; see $state/*.log"
  done
}

leases() { # extra args...
  python "$helper" leases --dynamodb "http://127.0.0.1:$dynamodb_port" --table "$leases_table" \
    --partitions "$partitions" --pollers "$pollers" "$@"
}

log "warming up for ${warmup_s} s, then until the leases settle (at most ${settle_timeout_s} s in all)"
started=$SECONDS
while ((SECONDS - started < warmup_s)); do
  check_alive
  sleep 1
done
until before_text=$(leases --save "$state/leases-before.json"); do
  check_alive
  if ((SECONDS - started > settle_timeout_s)); then
    log "the leases did not settle within ${settle_timeout_s} s: $before_text"
    for ((i = 1; i <= pollers; i++)); do
      log "poller-$i.log (last 15 lines):"
      tail -n 15 "$state/poller-$i.log" >&2
    done
    exit 1
  fi
  sleep 1
done
log "settled after $((SECONDS - started)) s: $before_text"

log "measuring for ${window_s} s"
python "$helper" reset --proxy "http://127.0.0.1:$proxy_port" --stub "http://127.0.0.1:$lambda_port"
window_started=$SECONDS
while ((SECONDS - window_started < window_s)); do
  sleep 1
  check_alive
done
after_rc=0
after_text=$(leases --save "$state/leases-after.json" --compare "$state/leases-before.json") || after_rc=$?

duration_ms=${ESM_LEASE_DURATION_MS:-20000}
if [ -n "${ESM_LEASE_RENEW_MS:-}" ]; then
  renew_ms=$ESM_LEASE_RENEW_MS renew_note=""
else
  renew_ms=$(python -c "print(round($duration_ms * 2 / 5, 1))") renew_note=" (duration x 2/5)"
fi
settings="ESM_LEASE_DURATION_MS=$duration_ms ESM_LEASE_RENEW_MS=$renew_ms$renew_note"
settings+=" ESM_LEASE_SCAN_MS=${ESM_LEASE_SCAN_MS:-5000} ESM_REFRESH_INTERVAL_MS=${ESM_REFRESH_INTERVAL_MS:-3000}"
settings+=" ESM_FETCH_WAIT_MS=$ESM_FETCH_WAIT_MS rate=${rate}/s window=${window_s}s"
command="DDB_CALLS_POLLERS=$pollers DDB_CALLS_PARTITIONS=$partitions DDB_CALLS_WARMUP_S=$warmup_s"
command+=" DDB_CALLS_WINDOW_S=$window_s DDB_CALLS_RATE=$rate DDB_CALLS_PROFILE=$profile ${user_esm}scripts/ddb-calls.sh"

python "$helper" report \
  --proxy "http://127.0.0.1:$proxy_port" --stub "http://127.0.0.1:$lambda_port" \
  --partitions "$partitions" --pollers "$pollers" --warmup-s "$((window_started - started))" --rate "$rate" \
  --renew-ms "$renew_ms" \
  --scan-ms "${ESM_LEASE_SCAN_MS:-5000}" --refresh-ms "${ESM_REFRESH_INTERVAL_MS:-3000}" \
  --settings "$settings" --build "$build" --command "$command" \
  --before-text "$before_text" --after-text "$after_text"

case $after_rc in
  0) ;;
  4) die "a lease changed owner or counter during the window: not a steady state (see $state/poller-*.log)" ;;
  *) die "the leases were not settled at the end of the window (see $state/poller-*.log)" ;;
esac
