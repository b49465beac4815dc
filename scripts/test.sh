#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what is missing (cached outside the clone),
# checks formatting and lints, runs the unit and integration tests against real local services
# (tansu, dynalite and stunnel started by the test kit; `cargo lambda watch` serving the example
# consumer), the demo as a new user runs it (a fresh clone, nothing running), the Lambda artifacts,
# then the infra checks (CDK jest tests, cdk synth with the real build, cfn-lint, sam validate).
#
#   TEST_SKIP_DEMO=1   skip the clean-clone demo
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"
LOG_TAG=test
started=$SECONDS
step() { printf '\n==> %s (%ds)\n' "$*" $((SECONDS - started)) >&2; }

step "installing local services (cached in $KAFKA_ESM_CACHE)"
bash scripts/install-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "building"
cargo build --workspace --all-targets --locked

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

if [ "${TEST_SKIP_DEMO:-0}" != 1 ]; then
  step "the demo from a clean clone, nothing running (scripts/demo-clean.sh)"
  bash scripts/demo-clean.sh
fi

# `cargo lambda watch` runs the example consumer behind the Invoke API for the end-to-end test.
# Its own ports and state, so a demo left running does not interfere.
export KAFKA_ESM_STATE="$repo/.local/test"
export KAFKA_PORT=${TEST_KAFKA_PORT:-29092} DYNAMODB_PORT=${TEST_DYNAMODB_PORT:-28000} LAMBDA_PORT=${TEST_LAMBDA_PORT:-29001}
trap 'bash scripts/local-stack.sh stop' EXIT
step "starting the local stack for the cargo lambda test"
bash scripts/local-stack.sh start >/dev/null
export KAFKA_ESM_TEST_LAMBDA_ENDPOINT="http://127.0.0.1:$LAMBDA_PORT"

step "cargo test (unit and integration)"
cargo test --workspace --locked --no-fail-fast

# The poller Lambda itself: a short deadline, relay to its successor through asynchronous
# invokes, every record committed (it checks those and prints the handoff gap, which it does not
# assert: timings are benchmarks).
step "poller Lambda relay under cargo lambda watch (scripts/handoff-gap.sh)"
bash scripts/handoff-gap.sh

step "MSK IAM tokens still equal the reference signer's (scripts/msk-iam-reference-tokens.py)"
"$KAFKA_ESM_CACHE/py/bin/python" scripts/msk-iam-reference-tokens.py --check tests/data/msk-iam-reference-tokens.json

# The Lambda artifact for this machine's architecture, built the way deploys build it (cargo
# lambda, zig, cmake) and checked: ELF machine, glibc <= 2.34, static C libraries, starts under
# the Runtime API. The lambda-ci profile skips LTO to fit CI's time; deploys use release.
arch=$(uname -m | sed 's/aarch64/arm64/')
step "Lambda artifacts for this architecture (scripts/build-lambda.sh, lambda-ci profile)"
LAMBDA_PROFILE=lambda-ci bash scripts/build-lambda.sh "$arch"

# The infra checks, including a `cdk synth` that builds the code as `cdk deploy` does (fresh
# from the step above) and checks that each Lambda asset is the bootstrap just built.
step "infra checks (scripts/test-infra.sh, with the real build for $arch)"
KAFKA_ESM_CDK_BUILD=$arch LAMBDA_PROFILE=lambda-ci bash scripts/test-infra.sh

step "all tests passed"
