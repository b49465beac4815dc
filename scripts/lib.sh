# Sourced by every script: logging, ports, background services and the test kit's binary.
# Sets `repo` (the clone's root), puts the cached tools on PATH (env.sh) and changes nothing else.
#
# Logging:   LOG_TAG=name; log MSG (stderr, "[name] MSG"); say MSG (a step heading, stdout);
#            die MSG (log, exit 1).
# Ports:     port_open PORT; wait_port PORT NAME SECONDS (tail of NAME's log on failure);
#            require_free_ports PORT... (die if one is taken; wait out TIME_WAIT, bounded).
# Services:  with STATE=dir set, start_service NAME CMD... runs CMD in a session of its own
#            (setsid), stdin from /dev/null and stdout+stderr to $STATE/NAME.log, and writes
#            $STATE/NAME.pid. stop_service NAME ends every process of that session (SIGTERM, then
#            SIGKILL after a grace period) and checks that none is left; stop_services stops every
#            service this shell started, newest first. service_alive NAME.
# Test kit:  testkit_bin (builds once, sets TESTKIT to the `kafka-esm-testkit` binary).
#
# Why sessions: a service may start children of its own (`cargo lambda watch` runs the function
# under `cargo run`); killing only the pid we know leaves them running. Why the redirections on
# the background command itself: a service that inherits a command substitution's stdout keeps
# `x=$(script)` waiting until the service exits.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/env.sh
source "$repo/scripts/env.sh"

log() { printf '[%s] %s\n' "${LOG_TAG:-kafka-esm}" "$*" >&2; }
die() {
  log "$*"
  exit 1
}
say() {
  if [ -t 1 ]; then printf '\n\033[1m==> %s\033[0m\n' "$*"; else printf '==> %s\n' "$*"; fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_port PORT NAME SECONDS: until something listens on 127.0.0.1:PORT. On timeout (or when
# the service NAME has exited), prints the tail of $STATE/NAME.log and returns 1.
wait_port() {
  local port=$1 name=$2 deadline=$((SECONDS + $3))
  until port_open "$port"; do
    if ((SECONDS > deadline)) || { [ -f "${STATE:-}/$name.pid" ] && ! service_alive "$name"; }; then
      if ((SECONDS > deadline)); then
        log "$name did not open port $port within $3 s; the end of its log ($STATE/$name.log):"
      else
        log "$name exited before it opened port $port; the end of its log ($STATE/$name.log):"
      fi
      tail -n 30 "${STATE:-.}/$name.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
}

# require_free_ports PORT...: die when one is in use; wait (at most 90 s) for a previous run's
# connections in TIME_WAIT to close, since some services cannot bind while they linger.
require_free_ports() {
  local port deadline
  for port in "$@"; do
    port_open "$port" && die "port $port is in use (another run, or a stack left running?); pick other ports or stop it"
    if command -v ss >/dev/null; then
      deadline=$((SECONDS + 90))
      if [ -n "$(ss -Htan "( sport = :$port )" 2>/dev/null)" ]; then
        log "waiting for port $port's old connections (TIME_WAIT) to close"
        while [ -n "$(ss -Htan "( sport = :$port )" 2>/dev/null)" ]; do
          ((SECONDS < deadline)) || die "port $port still has connections after 90 s"
          sleep 2
        done
      fi
    fi
  done
}

# The live (not zombie) processes of session $1 and all their descendants, as `pid:starttime`
# lines. Descendants count even when they moved to sessions of their own: `cargo lambda watch`
# starts each function instance with setsid.
service_tree() {
  local sid=$1 f stat rest pid changed=1
  local -a fields
  local -A ppid_of=() start_of=() in_tree=()
  for f in /proc/[0-9]*/stat; do
    { read -r stat <"$f"; } 2>/dev/null || continue
    rest=${stat##*) }
    read -r -a fields <<<"$rest"
    # fields: state ppid pgrp session ... (starttime is the 20th)
    [ "${fields[0]}" = Z ] && continue
    pid=${f#/proc/}
    pid=${pid%/stat}
    ppid_of[$pid]=${fields[1]}
    start_of[$pid]=${fields[19]}
    if [ "${fields[3]}" = "$sid" ]; then in_tree[$pid]=1; fi
  done
  while ((changed)); do
    changed=0
    for pid in "${!ppid_of[@]}"; do
      if [ -z "${in_tree[$pid]:-}" ] && [ -n "${in_tree[${ppid_of[$pid]}]:-}" ]; then
        in_tree[$pid]=1
        changed=1
      fi
    done
  done
  for pid in "${!in_tree[@]}"; do echo "$pid:${start_of[$pid]}"; done
}

# Which of the `pid:starttime` lines on stdin are still running (same process, not a zombie).
still_running() {
  local entry pid started stat rest
  local -a fields
  while read -r entry; do
    [ -n "$entry" ] || continue
    pid=${entry%%:*}
    started=${entry#*:}
    { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || continue
    rest=${stat##*) }
    read -r -a fields <<<"$rest"
    if [ "${fields[0]}" != Z ] && [ "${fields[19]}" = "$started" ]; then echo "$entry"; fi
  done
  return 0
}

# Pids of `pid:starttime` lines.
pids_of() { sed 's/:.*//' | tr '\n' ' '; }

# The start time (clock ticks since boot) of process $1, to tell a reused pid from ours.
start_time() {
  local stat rest
  local -a fields
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  rest=${stat##*) }
  read -r -a fields <<<"$rest"
  echo "${fields[19]}"
}

SERVICE_NAMES=()
SERVICE_PID=
# Seconds between SIGTERM and SIGKILL per service name (default 5).
declare -A SERVICE_GRACE=()

# start_service NAME CMD...: see the header. Sets SERVICE_PID (the session leader, a child of
# this shell: `wait "$SERVICE_PID"` gives its exit status).
start_service() {
  local name=$1 pidfile
  shift
  [ -n "${STATE:-}" ] || die "start_service $name: STATE is not set"
  pidfile="$STATE/$name.pid"
  rm -f "$pidfile"
  # The session leader writes "pid starttime" itself before it becomes CMD (exec keeps the pid),
  # so the pid file names the session even if setsid had to fork.
  # shellcheck disable=SC2016
  setsid bash -c 'stat=$(<"/proc/$$/stat"); read -r -a f <<<"${stat##*) }"; echo "$$ ${f[19]}" >"$0"; exec "$@"' \
    "$pidfile" "$@" </dev/null >"$STATE/$name.log" 2>&1 &
  SERVICE_PID=$!
  SERVICE_NAMES+=("$name")
  local deadline=$((SECONDS + 10))
  until [ -s "$pidfile" ]; do
    ((SECONDS < deadline)) || die "$name did not start within 10 s; see $STATE/$name.log"
    sleep 0.05
  done
}

# The session id of service $1, or nothing when the pid file is missing or names a process that
# is not ours any more.
service_session() {
  local pidfile="$STATE/$1.pid" sid started now
  [ -s "$pidfile" ] || return 0
  read -r sid started <"$pidfile" || return 0
  [[ $sid =~ ^[0-9]+$ ]] || return 0
  # A leader that is still there must be the one we started; if it is gone, the kernel does not
  # reuse its pid while members of its session remain.
  if now=$(start_time "$sid"); then
    [ "$now" = "$started" ] || return 0
  fi
  echo "$sid"
}

service_alive() {
  local sid
  sid=$(service_session "$1")
  [ -n "$sid" ] && [ -n "$(service_tree "$sid")" ]
}

# stop_service NAME [GRACE_SECONDS=${SERVICE_GRACE[NAME]:-5}]: SIGTERM to the service's session
# and every descendant, SIGKILL to what is left after the grace period, then checks that nothing
# is left (returns 1 and says so otherwise).
stop_service() {
  local name=$1 grace=${2:-${SERVICE_GRACE[$1]:-5}} sid tree left deadline
  sid=$(service_session "$name")
  if [ -n "$sid" ]; then
    # The tree is read before anything is signalled: an orphan cannot be traced to us later.
    tree=$(service_tree "$sid")
    if [ -n "$tree" ]; then
      kill -TERM -- "-$sid" 2>/dev/null || true
      # shellcheck disable=SC2046
      kill -TERM $(pids_of <<<"$tree") 2>/dev/null || true
      deadline=$((SECONDS + grace))
      while :; do
        # Children started meanwhile are part of the service too.
        tree=$(printf '%s\n%s\n' "$tree" "$(service_tree "$sid")" | sort -u)
        left=$(still_running <<<"$tree")
        [ -n "$left" ] && ((SECONDS < deadline)) || break
        sleep 0.1
      done
      if [ -n "$left" ]; then
        # shellcheck disable=SC2046
        kill -KILL $(pids_of <<<"$left") 2>/dev/null || true
        deadline=$((SECONDS + 5))
        while [ -n "$(still_running <<<"$left")" ] && ((SECONDS < deadline)); do sleep 0.1; done
        left=$(still_running <<<"$left")
      fi
      if [ -n "$left" ]; then
        log "could not stop $name: still running: $(pids_of <<<"$left")"
        return 1
      fi
    fi
  fi
  rm -f "$STATE/$name.pid"
}

# Stops every service this shell started, newest first; returns 1 if one could not be stopped.
stop_services() {
  local i rc=0
  for ((i = ${#SERVICE_NAMES[@]} - 1; i >= 0; i--)); do
    stop_service "${SERVICE_NAMES[i]}" || rc=1
  done
  SERVICE_NAMES=()
  return "$rc"
}

# Builds the test kit's binary once per script (debug, like the tests) and sets TESTKIT.
testkit_bin() {
  if [ -z "${TESTKIT:-}" ]; then
    cargo build --quiet -p kafka-esm-testkit --bin kafka-esm-testkit
    TESTKIT="${CARGO_TARGET_DIR:-$repo/target}/debug/kafka-esm-testkit"
  fi
}
