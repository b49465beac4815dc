#!/usr/bin/env bash
# Builds the Lambda artifacts (release, for provided.al2023) and checks each one before anything
# deploys it.
#
#   scripts/build-lambda.sh [arm64|x86_64|all] [--check-only]     (default: all)
#   scripts/build-lambda.sh check ARCH FILE [BINARY]                 (default BINARY: poller)
#
# For each architecture it runs `cargo lambda build --release --<arch> --locked` for every package
# in PACKAGES below into target/lambda/<arch>/<binary>/bootstrap (both architectures coexist;
# nothing else is written under target/lambda/), then checks every bootstrap. `check` runs the same
# checks on a bootstrap built elsewhere (`sam build`'s .aws-sam/build/Poller/bootstrap, a CDK
# asset). The checks:
#
#   elf       ELF64 little-endian executable whose e_machine (read from the header) is the
#             architecture's: 183 (AArch64) for arm64, 62 (x86-64) for x86_64
#   glibc     no GLIBC_x.y symbol version newer than 2.34 (Amazon Linux 2023, provided.al2023), read
#             from the version-needs section (`readelf -V`), and the architecture's glibc loader
#   needed    no shared library beyond glibc's and libgcc_s (DT_NEEDED): librdkafka, OpenSSL, zlib
#             and zstd are linked in statically
#   kafka     for the binaries in KAFKA_BINARIES: librdkafka's built-in feature list names SSL,
#             SASL SCRAM and OAUTHBEARER, zlib, zstd and snappy, and vendored OpenSSL 3 is linked in
#   starts    the host architecture's bootstrap runs under `cargo lambda watch --only-lambda-apis`
#             (its Runtime API), takes one invocation and answers it; the other architecture only
#             when qemu-user and its cross glibc are there (Debian, on x86_64: qemu-user
#             libc6-arm64-cross), otherwise the check says it was skipped
#
# and prints where the artifacts are, their sizes and how long each step took. Exits non-zero when
# the build or any check fails. `--check-only` skips the build and checks what is there.
# The Lambda's architecture must match the artifact's: deploy target/lambda/arm64/... only to an
# arm64 function.
#
# Installs what it needs first, once, into $KAFKA_ESM_CACHE/lambda-build (default
# ~/.cache/kafka-esm): a Python venv with pinned cargo-lambda, ziglang (the C cross compiler and
# linker cargo-lambda drives through cargo-zigbuild) and cmake (librdkafka is built with CMake so
# that it honours the cross toolchain; see docs/building.md). Also needed: rustup (adds the
# aarch64/x86_64 Rust std), perl and make (OpenSSL's Configure), python3 with venv, readelf
# (binutils) and curl.
#
# A first build takes a while (measured: 10.5 minutes for arm64, 19.5 for both, on 2 cores with
# little else running; a rebuild after a code change 5-6 minutes per architecture): every C library
# (OpenSSL, libcurl, librdkafka, zstd, zlib) and every crate is compiled per architecture, then
# linked with LTO; docs/building.md has the measured times. CARGO_TARGET_DIR is honoured (CI can
# keep the release build in its cache); the artifacts still go to target/lambda/<arch>/.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=scripts/env.sh
source scripts/env.sh

# Every Lambda that deploys (the poller, and the Custom::KafkaEsmEventSource provider); their
# binaries are found with `cargo metadata`.
PACKAGES=(
  kafka-esm-poller
  kafka-esm-custom-resource
)
# Binaries that link librdkafka: their feature list is checked.
KAFKA_BINARIES=(poller)

# Pinned tools. CARGO_LAMBDA_VERSION is the one scripts/install-deps.sh installs for `cargo lambda
# watch`; zig 0.14 and cmake 3.31 are the releases cargo-lambda's own CI builds with.
CARGO_LAMBDA_VERSION=1.9.2
ZIGLANG_VERSION=0.14.1
CMAKE_VERSION=3.31.10
# Amazon Linux 2023 (the provided.al2023 runtime) ships glibc 2.34.
GLIBC_MAX=2.34
# How long the start check waits for the invocation's answer.
START_TIMEOUT_S=${START_TIMEOUT_S:-60}

log() { printf '[build-lambda] %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; }

arches=()
check_only=false
check_file=""
check_binary=poller
if [ "${1:-}" = check ]; then
  [ $# -ge 3 ] || {
    usage
    die "usage: scripts/build-lambda.sh check ARCH FILE [BINARY]"
  }
  case $2 in arm64 | x86_64) arches=("$2") ;; *) die "unknown architecture: $2 (arm64 or x86_64)" ;; esac
  check_only=true check_file=$3 check_binary=${4:-poller}
  shift $#
fi
for arg in "$@"; do
  case $arg in
    arm64 | x86_64) arches+=("$arg") ;;
    all) arches+=(arm64 x86_64) ;;
    --check-only) check_only=true ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      usage
      die "unknown argument: $arg"
      ;;
  esac
done
[ ${#arches[@]} -gt 0 ] || arches=(arm64 x86_64)
# all, twice, or arm64 x86_64 arm64: each architecture once.
mapfile -t arches < <(printf '%s\n' "${arches[@]}" | awk '!seen[$0]++')

# Architecture names are Lambda's (arm64, x86_64); these map them to Rust's and the ELF header's.
rust_target() { case $1 in arm64) echo aarch64-unknown-linux-gnu ;; x86_64) echo x86_64-unknown-linux-gnu ;; esac }
cargo_lambda_flag() { case $1 in arm64) echo --arm64 ;; x86_64) echo --x86-64 ;; esac }
elf_machine() { case $1 in arm64) echo 183 ;; x86_64) echo 62 ;; esac }
glibc_loader() { case $1 in arm64) echo /lib/ld-linux-aarch64.so.1 ;; x86_64) echo /lib64/ld-linux-x86-64.so.2 ;; esac }
host_arch() { case $(uname -m) in aarch64 | arm64) echo arm64 ;; x86_64 | amd64) echo x86_64 ;; *) uname -m ;; esac }

# Step timings, printed at the end.
timings=()
timed() { # name cmd...
  local name=$1 started=$SECONDS status=0
  shift
  "$@" || status=$?
  timings+=("$(printf '%-32s %5ds%s' "$name" $((SECONDS - started)) "$([ $status = 0 ] || echo '  FAILED')")")
  return $status
}

tools=$KAFKA_ESM_CACHE/lambda-build
install_tools() {
  local want="cargo-lambda==$CARGO_LAMBDA_VERSION ziglang==$ZIGLANG_VERSION cmake==$CMAKE_VERSION"
  mkdir -p "$KAFKA_ESM_CACHE"
  # Two builds may start at once (CI, a developer): one installer at a time.
  exec 8>"$tools.lock"
  flock 8
  if ! [ -x "$tools/bin/cargo-lambda" ] || [ "$(cat "$tools/.installed" 2>/dev/null)" != "$want" ]; then
    log "installing $want into $tools (once)"
    rm -rf "$tools"
    python3 -m venv "$tools"
    # shellcheck disable=SC2086 # $want is three requirement specifiers
    "$tools/bin/pip" install --quiet --disable-pip-version-check $want >&2
    echo "$want" >"$tools/.installed"
  fi
  exec 8>&-

  local missing=() tool
  for tool in perl make readelf strings curl; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [ ${#missing[@]} = 0 ] || die "missing: ${missing[*]} (Debian: apt-get install perl make binutils curl)"

  if command -v rustup >/dev/null; then
    local installed arch
    installed=$(rustup target list --installed)
    for arch in "${arches[@]}"; do
      grep -qx "$(rust_target "$arch")" <<<"$installed" || rustup target add "$(rust_target "$arch")" >&2
    done
  fi
}

# The binaries (bootstrap directories) the packages produce, one per line.
binaries() {
  cargo metadata --no-deps --format-version 1 --locked | python3 -c '
import json, sys
packages = set(sys.argv[1:])
for package in json.load(sys.stdin)["packages"]:
    if package["name"] in packages:
        for target in package["targets"]:
            if "bin" in target["kind"]:
                print(target["name"])
' "${PACKAGES[@]}"
}

build() { # arch
  local arch=$1 args=() package
  for package in "${PACKAGES[@]}"; do args+=(--package "$package"); done
  # The tools' bin directory first: cargo-zigbuild finds zig as `python3 -m ziglang`, and the cmake
  # crate runs the first `cmake` on PATH.
  # LAMBDA_PROFILE=lambda-ci: the same toolchain, C libraries and checks without LTO and with
  # light optimisation, so CI can afford it; deploys use the release profile.
  local profile=(--release)
  if [ -n "${LAMBDA_PROFILE:-}" ] && [ "$LAMBDA_PROFILE" != release ]; then profile=(--profile "$LAMBDA_PROFILE"); fi
  PATH="$tools/bin:$PATH" cargo lambda build "${profile[@]}" "$(cargo_lambda_flag "$arch")" --locked \
    --lambda-dir "target/lambda/$arch" "${args[@]}"
}

# --- checks; each prints one line and returns non-zero on failure ------------------------------

check_elf() { # arch file
  local arch=$1 file=$2 ident machine etype
  # e_ident: magic, EI_CLASS (2 = 64-bit), EI_DATA (1 = little-endian); e_type at 16, e_machine at 18.
  ident=$(od -An -tx1 -N6 "$file" | tr -d ' \n')
  etype=$(od -An -tu2 -j16 -N2 --endian=little "$file" | tr -d ' ')
  machine=$(od -An -tu2 -j18 -N2 --endian=little "$file" | tr -d ' ')
  if [ "$ident" != 7f454c460201 ]; then
    echo "not an ELF64 little-endian file (e_ident $ident)"
    return 1
  fi
  # 2 = ET_EXEC, 3 = ET_DYN (a position-independent executable).
  if [ "$etype" != 2 ] && [ "$etype" != 3 ]; then
    echo "not an executable (e_type $etype)"
    return 1
  fi
  if [ "$machine" != "$(elf_machine "$arch")" ]; then
    echo "e_machine $machine, expected $(elf_machine "$arch") for $arch"
    return 1
  fi
  echo "ELF64 LE, e_machine $machine ($arch)"
}

check_glibc() { # arch file
  local arch=$1 file=$2 newest interp
  newest=$(readelf -W -V "$file" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1)
  interp=$(readelf -W -l "$file" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
  if [ -z "$newest" ]; then
    echo "no GLIBC symbol versions found (not a glibc binary?)"
    return 1
  fi
  if [ "$(printf '%s\n%s\n' "$newest" "$GLIBC_MAX" | sort -V | tail -n1)" != "$GLIBC_MAX" ]; then
    echo "needs GLIBC_$newest, newer than $GLIBC_MAX: $(readelf -W -V "$file" | grep -o "GLIBC_$newest" | head -n1) in:"
    readelf -W --dyn-syms "$file" | grep "GLIBC_$newest" | awk '{print "    " $8}' | head -n 10
    return 1
  fi
  if [ "$interp" != "$(glibc_loader "$arch")" ]; then
    echo "program interpreter '$interp', expected $(glibc_loader "$arch")"
    return 1
  fi
  echo "newest GLIBC_$newest (<= $GLIBC_MAX), interpreter $interp"
}

check_needed() { # file
  local file=$1 needed unexpected=()
  needed=$(readelf -W -d "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  local lib
  for lib in $needed; do
    case $lib in
      # glibc's own libraries, and libgcc_s (Rust's unwinder; part of every Amazon Linux image).
      libc.so.6 | libm.so.6 | libdl.so.2 | libpthread.so.0 | librt.so.1 | libutil.so.1 | ld-linux-*.so.* | libgcc_s.so.1) ;;
      *) unexpected+=("$lib") ;;
    esac
  done
  if [ ${#unexpected[@]} -gt 0 ]; then
    echo "links shared libraries that provided.al2023 may not have: ${unexpected[*]}"
    return 1
  fi
  echo "NEEDED: $(tr '\n' ' ' <<<"$needed" | sed 's/ $//')"
}

check_kafka() { # file
  local file=$1 text built feature missing=()
  text=$(strings -n 8 "$file")
  # librdkafka's BUILT_WITH string (logged when a client starts): the options its build enabled.
  built=$(grep -m1 -E '^CMAKE .* SNAPPY|^GCC .* SNAPPY' <<<"$text" || true)
  for feature in SSL ZLIB ZSTD SNAPPY; do
    grep -qw -- "$feature" <<<"$built" || missing+=("$feature")
  done
  # The CMake build leaves SASL_SCRAM and SASL_OAUTHBEARER out of BUILT_WITH (it lists them only
  # with cyrus-sasl), so look for messages of the source files that exist only when they are built.
  grep -qF 'Unsupported mandatory SCRAM extension' <<<"$text" || missing+=(SASL_SCRAM)
  grep -qF 'SASL/OAUTHBEARER extension key' <<<"$text" || missing+=(SASL_OAUTHBEARER)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "librdkafka built without ${missing[*]} (BUILT_WITH: '${built:-not found}')"
    return 1
  fi
  local openssl
  openssl=$(grep -m1 -oE 'OpenSSL 3\.[0-9]+\.[0-9]+' <<<"$text" || true)
  if [ -z "$openssl" ]; then
    echo "no OpenSSL 3 version string: OpenSSL is not linked in"
    return 1
  fi
  echo "librdkafka BUILT_WITH '$built' + SASL_SCRAM SASL_OAUTHBEARER; $openssl"
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Runs the bootstrap under `cargo lambda watch --only-lambda-apis` (the Runtime API the local stack
# uses), invokes it once and expects an answer from the function and the process still running.
check_starts() { # arch binary file
  local arch=$1 binary=$2 file=$3 runner=()
  if [ "$arch" != "$(host_arch)" ]; then
    local qemu sysroot
    case $arch in
      arm64) qemu=$(command -v qemu-aarch64 || command -v qemu-aarch64-static || true) sysroot=/usr/aarch64-linux-gnu ;;
      x86_64) qemu=$(command -v qemu-x86_64 || command -v qemu-x86_64-static || true) sysroot=/usr/x86_64-linux-gnu ;;
    esac
    if [ -z "$qemu" ] || ! [ -d "$sysroot/lib" ]; then
      echo "skipped: not the host architecture ($(host_arch)); qemu-user and the $arch cross glibc would run it"
      return 0
    fi
    runner=("$qemu" -L "$sysroot")
  fi

  local work port dead status answer
  work=$(mktemp -d "${TMPDIR:-/tmp}/build-lambda-start.XXXXXX")
  port=$(free_port)
  dead=$(free_port) # nothing listens here: AWS calls fail at once and never leave the machine
  setsid "$tools/bin/cargo-lambda" lambda watch --only-lambda-apis --invoke-address 127.0.0.1 \
    --invoke-port "$port" >"$work/watch.log" 2>&1 </dev/null &
  local watch_pid=$!
  local deadline=$((SECONDS + 60))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if ((SECONDS > deadline)) || ! kill -0 "$watch_pid" 2>/dev/null; then
      echo "cargo lambda watch did not listen on $port; its log:"
      tail -n 20 "$work/watch.log"
      kill -TERM -- "-$watch_pid" 2>/dev/null || true
      rm -rf "$work"
      return 1
    fi
    sleep 0.2
  done
  # The environment Lambda gives a function, plus dummy credentials and unreachable endpoints:
  # this checks the binary starts and serves the Runtime API, not the poller's logic.
  setsid env AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$port/.rt/$binary" \
    AWS_LAMBDA_FUNCTION_NAME="$binary" AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024 \
    AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=build-check AWS_SECRET_ACCESS_KEY=build-check \
    AWS_ENDPOINT_URL="http://127.0.0.1:$dead" AWS_EC2_METADATA_DISABLED=true RUST_LOG=info \
    "${runner[@]}" "$file" >"$work/bootstrap.log" 2>&1 </dev/null &
  local boot_pid=$!
  curl -sS --max-time "$START_TIMEOUT_S" -o "$work/answer" -w '%{http_code}' -X POST \
    "http://127.0.0.1:$port/2015-03-31/functions/$binary/invocations" -d '{}' \
    >"$work/status" 2>"$work/curl.log" &
  local curl_pid=$!
  # Until the answer comes, or the bootstrap exits (watch would hold the invoke until the timeout).
  local alive=true
  while kill -0 "$curl_pid" 2>/dev/null; do
    if ! kill -0 "$boot_pid" 2>/dev/null; then
      alive=false
      kill "$curl_pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  wait "$curl_pid" 2>/dev/null || true
  kill -0 "$boot_pid" 2>/dev/null || alive=false
  status=$(cat "$work/status" 2>/dev/null || true)
  answer=$(head -c 300 "$work/answer" 2>/dev/null || true)
  kill -TERM -- "-$boot_pid" "-$watch_pid" 2>/dev/null || true
  sleep 0.5
  kill -KILL -- "-$boot_pid" "-$watch_pid" 2>/dev/null || true
  local ok=true
  if [ "$status" != 200 ] || [ -z "$answer" ] || [ "$alive" != true ]; then ok=false; fi
  if $ok; then
    echo "answered its first invocation through the Runtime API${runner:+ (under ${runner[0]##*/})}: $answer"
  else
    echo "no answer (HTTP ${status:-none}, process $([ "$alive" = true ] && echo running || echo exited)); bootstrap log:"
    tail -n 20 "$work/bootstrap.log"
    cat "$work/curl.log"
  fi
  rm -rf "$work"
  $ok
}

run_check() { # label cmd...
  local label=$1 out status=0
  shift
  out=$("$@") || status=$?
  if [ $status = 0 ]; then
    printf '  ok    %-8s %s\n' "$label" "$out"
  else
    printf '  FAIL  %-8s %s\n' "$label" "$out"
    failed=$((failed + 1))
  fi
}

check_artifact() { # arch binary file
  local arch=$1 binary=$2 file=$3
  echo "$arch $binary: $file"
  if ! [ -f "$file" ] || ! [ -x "$file" ]; then
    printf '  FAIL  %-8s %s\n' exists "no executable there (build it: scripts/build-lambda.sh $arch)"
    failed=$((failed + 1))
    return
  fi
  run_check elf check_elf "$arch" "$file"
  run_check glibc check_glibc "$arch" "$file"
  run_check needed check_needed "$file"
  if printf '%s\n' "${KAFKA_BINARIES[@]}" | grep -qx "$binary"; then
    run_check kafka check_kafka "$file"
  fi
  local started=$SECONDS
  run_check starts check_starts "$arch" "$binary" "$file"
  timings+=("$(printf '%-32s %5ds' "start check $arch/$binary" $((SECONDS - started)))")
}

total_started=$SECONDS
timed "install tools" install_tools
failed=0
artifacts=()
if [ -n "$check_file" ]; then
  check_artifact "${arches[0]}" "$check_binary" "$check_file"
  artifacts+=("$check_file")
else
  mapfile -t bins < <(binaries)
  [ ${#bins[@]} -gt 0 ] || die "no binaries found in packages: ${PACKAGES[*]}"
  for arch in "${arches[@]}"; do
    if ! $check_only; then
      log "cargo lambda build --release $(cargo_lambda_flag "$arch") (${PACKAGES[*]})"
      timed "cargo lambda build $arch" build "$arch" || die "the $arch build failed"
    fi
    for binary in "${bins[@]}"; do
      check_artifact "$arch" "$binary" "target/lambda/$arch/$binary/bootstrap"
      artifacts+=("target/lambda/$arch/$binary/bootstrap")
    done
  done
fi

echo
echo "Artifacts:"
for file in "${artifacts[@]}"; do
  [ -f "$file" ] || continue
  zipped=$(python3 -c 'import io, sys, zipfile
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
    z.write(sys.argv[1], "bootstrap")
print(len(buf.getvalue()))' "$file")
  awk -v f="$file" -v size="$(stat -c %s "$file")" -v zipped="$zipped" \
    'BEGIN { printf "  %-40s %6.1f MB (%.1f MB zipped)\n", f, size / 1e6, zipped / 1e6 }'
done
echo "Timings:"
printf '  %s\n' "${timings[@]}" "$(printf '%-32s %5ds' total $((SECONDS - total_started)))"
if [ "$failed" -gt 0 ]; then
  die "$failed check(s) failed"
fi
echo "build-lambda: all checks passed"
