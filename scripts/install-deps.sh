#!/usr/bin/env bash
# Installs what the local stack needs, once, into a cache outside the clone, and prints nothing
# else on success. Re-running is cheap: every step checks before it installs.
#
#   tansu        Kafka-compatible broker (cargo install, ~10 min on 2 cores: cached)
#   dynalite     DynamoDB emulator (npm)
#   cargo-lambda `cargo lambda watch`, a local Invoke API (PyPI ships the binary)
#   stunnel4     TLS terminator in front of tansu's plain listener (Debian)
#   cmake        builds librdkafka (PyPI, in the same venv)
#   aws-msk-iam-sasl-signer-python  AWS's MSK IAM token signer: the reference our tokens are
#                    compared with (scripts/msk-iam-reference-tokens.py), botocore pinned with it
#
# Cache directory: $KAFKA_ESM_CACHE (default ~/.cache/kafka-esm). Source `scripts/env.sh` to get
# the PATH that finds these tools.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/env.sh
source "$here/env.sh"

TANSU_VERSION=0.6.0
DYNALITE_VERSION=4.0.0
CARGO_LAMBDA_VERSION=1.9.2
CMAKE_VERSION=3.31.10
MSK_IAM_SIGNER_VERSION=1.0.2
# The signer signs with botocore: pinned so the reference tokens are reproducible.
BOTOCORE_VERSION=1.44.8

mkdir -p "$KAFKA_ESM_CACHE"
log() { printf '[install-deps] %s\n' "$*" >&2; }

# Several scripts may call this at once (tests, demo): one installer at a time.
exec 9>"$KAFKA_ESM_CACHE/.install.lock"
flock 9

# One build serves both engines: memory:// (most tests) and sqlite:// (SCRAM users, timestamps).
TANSU_FEATURES=dynostore,libsql
if ! [ -x "$KAFKA_ESM_CACHE/tansu/bin/tansu" ] || [ "$(cat "$KAFKA_ESM_CACHE/tansu/features" 2>/dev/null)" != "$TANSU_FEATURES" ]; then
  log "building tansu $TANSU_VERSION with $TANSU_FEATURES (about 15 minutes, once; cached in $KAFKA_ESM_CACHE/tansu)"
  CARGO_TARGET_DIR="$KAFKA_ESM_CACHE/tansu-build" \
    cargo install tansu --version "$TANSU_VERSION" --locked --features "$TANSU_FEATURES" \
      --root "$KAFKA_ESM_CACHE/tansu" --quiet --force
  echo "$TANSU_FEATURES" >"$KAFKA_ESM_CACHE/tansu/features"
  rm -rf "$KAFKA_ESM_CACHE/tansu-build"
fi

if ! [ -x "$KAFKA_ESM_CACHE/node/node_modules/.bin/dynalite" ]; then
  log "installing dynalite $DYNALITE_VERSION (npm)"
  mkdir -p "$KAFKA_ESM_CACHE/node"
  npm install --prefix "$KAFKA_ESM_CACHE/node" --no-audit --no-fund --silent \
    "dynalite@$DYNALITE_VERSION" >&2
fi

if ! [ -x "$KAFKA_ESM_CACHE/py/bin/cargo-lambda" ]; then
  log "installing cargo-lambda $CARGO_LAMBDA_VERSION (PyPI, in a venv)"
  python3 -m venv "$KAFKA_ESM_CACHE/py"
  "$KAFKA_ESM_CACHE/py/bin/pip" install --quiet --disable-pip-version-check \
    "cargo-lambda==$CARGO_LAMBDA_VERSION" >&2
fi

if ! "$KAFKA_ESM_CACHE/py/bin/python" -c 'import aws_msk_iam_sasl_signer' 2>/dev/null; then
  log "installing aws-msk-iam-sasl-signer-python $MSK_IAM_SIGNER_VERSION (PyPI, in the venv)"
  "$KAFKA_ESM_CACHE/py/bin/pip" install --quiet --disable-pip-version-check \
    "aws-msk-iam-sasl-signer-python==$MSK_IAM_SIGNER_VERSION" \
    "botocore==$BOTOCORE_VERSION" "boto3==$BOTOCORE_VERSION" >&2
fi

# cmake: librdkafka is built with CMake (rdkafka's cmake-build feature), so every cargo build
# needs it; the venv is on PATH through scripts/env.sh.
if ! [ -x "$KAFKA_ESM_CACHE/py/bin/cmake" ]; then
  log "installing cmake $CMAKE_VERSION (PyPI, in the venv)"
  "$KAFKA_ESM_CACHE/py/bin/pip" install --quiet --disable-pip-version-check "cmake==$CMAKE_VERSION" >&2
fi

if ! command -v stunnel4 >/dev/null && ! command -v stunnel >/dev/null; then
  log "installing stunnel4 (Debian)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stunnel4 >&2
  else
    sudo apt-get update -qq >&2 && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stunnel4 >&2
  fi
fi
