#!/usr/bin/env bash
# Checks the deployment code: the CDK app in infra/ and the SAM template.yaml. Offline once installed.
#
#   1. sam translate   template.yaml through the SAM CLI's own translator (what `sam validate` runs),
#                      saved for the parity test
#   2. jest            `npm test` in infra/: tsc --noEmit, construct tests, cdk-nag, CDK/SAM parity
#   3. cdk synth       the example app with the event source provider and alarms, with cdk-nag AwsSolutions,
#                      into a temporary directory (stand-in bootstraps: no Rust build)
#   4. cfn-lint (CDK)  the synthesized template
#   5. cfn-lint (SAM)  template.yaml, and infra/examples/mapping.yaml (a Custom::KafkaEsmEventSource)
#   6. sam validate    `sam validate --lint` on template.yaml
#   7. (KAFKA_ESM_CDK_BUILD=ARCH only) cdk synth without codePath: synthesis runs
#      scripts/build-lambda.sh ARCH, and each Lambda asset's ELF header must name ARCH
#   8. (KAFKA_ESM_SAM_BUILD=ARCH only) sam build of template.yaml with Architecture=ARCH into a
#      temporary build directory; every function it built must be there, and each bootstrap must
#      pass `scripts/build-lambda.sh check ARCH` (ELF machine, glibc, static libraries, starts)
#
# Installs what is missing first: infra/node_modules (`npm ci`, again whenever package-lock.json
# changes) and a Python venv with pinned cfn-lint and SAM CLI, cached outside the clone in
# $KAFKA_ESM_CACHE/infra-py (default ~/.cache/kafka-esm/infra-py). The first run takes a few
# minutes; later ones well under two.
#
# No AWS account is used: the CDK app imports the VPC by id from cdk.json, `sam validate --lint`
# and the translation need no credentials (the template attaches no managed policy, so SAM never
# asks IAM for one), and telemetry, version checks and the instance metadata service are off.
# Runs every check, then prints `infra: N passed, M failed` and exits non-zero if any failed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
infra="$root/infra"
cache="${KAFKA_ESM_CACHE:-$HOME/.cache/kafka-esm}/infra-py"

SAM_CLI_VERSION=1.170.0
CFN_LINT_VERSION=1.58.0

log() { printf '[test-infra] %s\n' "$*" >&2; }

# Offline and quiet: no telemetry, no update checks, no credential lookups on an instance role.
export CDK_DISABLE_CLI_TELEMETRY=true CDK_DISABLE_VERSION_CHECK=true SAM_CLI_TELEMETRY=0
export AWS_EC2_METADATA_DISABLED=true AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
unset AWS_PROFILE
export __SAM_CLI_APP_DIR="$cache/sam-app-dir"  # SAM CLI's settings, kept beside its venv, not in ~/.aws-sam
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false

install_node_modules() {
  local stamp="$infra/node_modules/.kafka-esm-lock.sha256" want
  want=$(sha256sum "$infra/package-lock.json" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return
  fi
  log "npm ci in infra/ (package-lock.json changed or node_modules missing)"
  (cd "$infra" && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$want" >"$stamp"
}

install_python_tools() {
  local want="aws-sam-cli==$SAM_CLI_VERSION cfn-lint==$CFN_LINT_VERSION"
  mkdir -p "$cache"
  # Several test runs may start at once: one installer at a time.
  exec 8>"$cache/.lock"
  flock 8
  if [ -x "$cache/venv/bin/sam" ] && [ "$(cat "$cache/.installed" 2>/dev/null)" = "$want" ]; then
    exec 8>&-
    return
  fi
  log "installing $want into $cache/venv (once; about a minute)"
  rm -rf "$cache/venv" "$cache/.installed"
  python3 -m venv "$cache/venv"
  # shellcheck disable=SC2086 # $want is two requirement specifiers
  "$cache/venv/bin/pip" install --quiet --disable-pip-version-check $want >&2
  "$cache/venv/bin/sam" --version >/dev/null
  "$cache/venv/bin/cfn-lint" --version >/dev/null
  echo "$want" >"$cache/.installed"
  exec 8>&-
}

install_node_modules
install_python_tools
export PATH="$cache/venv/bin:$PATH"

work=$(mktemp -d "${TMPDIR:-/tmp}/kafka-esm-infra.XXXXXX")
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
failures=()
check() {
  local name=$1
  shift
  log "$name"
  local started=$SECONDS
  if "$@"; then
    passed=$((passed + 1))
    log "$name: ok ($((SECONDS - started)) s)"
  else
    failed=$((failed + 1))
    failures+=("$name")
    log "$name: FAILED ($((SECONDS - started)) s)"
  fi
}

sam_translate() {
  python "$infra/scripts/sam-translate.py" "$root/template.yaml" "$work/sam-translated.json"
}
jest_tests() {
  # The parity test compares the CDK stack with SAM's own expansion of template.yaml when it exists.
  local translated=""
  [ -s "$work/sam-translated.json" ] && translated="$work/sam-translated.json"
  (cd "$infra" && KAFKA_ESM_SAM_TRANSLATED="$translated" npm test --silent)
}
cdk_synth() {
  # Prebuilt stand-ins (the ELF header of an arm64 executable, all the construct checks) instead
  # of the real build, which `cdk synth` runs when no codePath is given and which takes minutes.
  local binary
  for binary in poller custom-resource; do
    mkdir -p "$work/lambda/$binary"
    python3 -c 'import struct, sys; sys.stdout.buffer.write(b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HH", 3, 183) + bytes(44))' \
      >"$work/lambda/$binary/bootstrap"
  done
  (cd "$infra" && npx cdk synth --quiet --no-notices --output "$work/cdk.out" \
    -c codePath="$work/lambda" -c eventSourceProvider=true -c alarms=true -c offsetLagAlarmThreshold=10000)
}
cfn_lint_cdk() {
  # W3005 (DependsOn also implied by a reference): CDK always adds DependsOn on the function's role.
  cfn-lint --ignore-checks W3005 -- "$work"/cdk.out/*.template.json
}
cfn_lint_sam() {
  cfn-lint -- "$root/template.yaml" "$infra/examples/mapping.yaml"
}
sam_validate() {
  (cd "$root" && sam validate --lint --template template.yaml)
}
cdk_build_synth() { # arch
  # What `cdk deploy` does with no codePath: synthesis runs scripts/build-lambda.sh for the
  # architecture (LAMBDA_PROFILE is passed through; a no-op when the build is fresh) and packages
  # the result. Every Lambda asset of the synthesized template must be an ELF executable for it.
  local arch=$1 machine
  case $arch in arm64) machine=183 ;; x86_64) machine=62 ;; *) log "unknown architecture $arch"; return 1 ;; esac
  (cd "$infra" && npx cdk synth --quiet --no-notices --output "$work/cdk-build.out" \
    -c architecture="$arch" -c eventSourceProvider=true)
  (cd "$root" && python3 - "$work/cdk-build.out" "$arch" "$machine") <<'PY'
import json, pathlib, struct, sys
out, arch, machine = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
template = json.loads(next(out.glob("*.template.json")).read_text())
assets = json.loads(next(out.glob("*.assets.json")).read_text())["files"]
functions = {k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::Lambda::Function"}
assert len(functions) == 2, f"expected the poller and the provider, got {list(functions)}"
for name, fn in functions.items():
    assert fn["Properties"]["Architectures"] == [arch], (name, fn["Properties"]["Architectures"])
    key = fn["Properties"]["Code"]["S3Key"]
    asset = next(a for a in assets.values() if any(d["objectKey"] == key for d in a["destinations"].values()))
    header = (out / asset["source"]["path"] / "bootstrap").read_bytes()[:20]
    found = struct.unpack_from("<H", header, 18)[0]
    assert header[:4] == b"\x7fELF" and header[4] == 2 and found == machine, f"{name}: e_machine {found}, want {machine} ({arch})"
    # The binary just built for this function, byte for byte.
    binary = "custom-resource" if "provider" in fn["Properties"]["Description"] else "poller"
    built = pathlib.Path("target/lambda") / arch / binary / "bootstrap"
    assert (out / asset["source"]["path"] / "bootstrap").read_bytes() == built.read_bytes(), f"{name}: not {built}"
    print(f"{name}: {asset['source']['path']}/bootstrap is {built}, an ELF64 executable for {arch} (e_machine {found})")
PY
}

sam_build_check() { # arch
  # What `sam build` does with the template (SAM runs `cargo lambda build` for each function),
  # into a build directory of its own. The built template names each function's directory; its
  # bootstrap must be an executable for the architecture, checked like scripts/build-lambda.sh's.
  local arch=$1 tools="${KAFKA_ESM_CACHE:-$HOME/.cache/kafka-esm}/lambda-build"
  case $arch in arm64 | x86_64) ;; *) log "unknown architecture $arch"; return 1 ;; esac
  if ! [ -x "$tools/bin/cargo-lambda" ]; then
    log "no cargo-lambda in $tools: run scripts/build-lambda.sh $arch first (it installs the tools)"
    return 1
  fi
  # samconfig.toml's cached = false and parameter_overrides apply; --parameter-overrides replaces
  # the latter for this command only. EventSourceProvider=true: the provider is built too.
  (cd "$root" && PATH="$tools/bin:$PATH" sam build --template template.yaml \
    --build-dir "$work/sam-build-$arch" --parameter-overrides "Architecture=$arch EventSourceProvider=true")
  local functions
  functions=$(python3 - "$work/sam-build-$arch" <<'PY'
import pathlib, sys, yaml
out = pathlib.Path(sys.argv[1])
class Loader(yaml.SafeLoader):
    pass
# The built template keeps CloudFormation's short-form tags (!Ref, !Sub, ...): read them as plain values.
Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
template = yaml.load((out / "template.yaml").read_text(), Loader=Loader)
for name, resource in template["Resources"].items():
    if resource["Type"] == "AWS::Serverless::Function":
        binary = resource["Metadata"]["BuildProperties"]["Binary"]
        print(name, binary, out / resource["Properties"]["CodeUri"] / "bootstrap")
PY
  ) || return 1
  local count=0 name binary file status=0
  while read -r name binary file; do
    count=$((count + 1))
    log "$name ($binary): $file"
    bash "$root/scripts/build-lambda.sh" check "$arch" "$file" "$binary" </dev/null || status=1
    # Informational: the same bytes as scripts/build-lambda.sh's artifact when that was built too.
    if [ -f "$root/target/lambda/$arch/$binary/bootstrap" ]; then
      if cmp -s "$file" "$root/target/lambda/$arch/$binary/bootstrap"; then
        log "$name: identical to target/lambda/$arch/$binary/bootstrap"
      else
        log "$name: differs from target/lambda/$arch/$binary/bootstrap (built separately)"
      fi
    fi
  done <<<"$functions"
  if [ "$count" != 2 ]; then
    log "expected the poller and the provider in the SAM build, got $count function(s)"
    return 1
  fi
  return $status
}

check "sam translate" sam_translate
check "jest (npm test)" jest_tests
check "cdk synth" cdk_synth
check "cfn-lint CDK template" cfn_lint_cdk
check "cfn-lint template.yaml" cfn_lint_sam
check "sam validate --lint" sam_validate
# Opt-in, after scripts/build-lambda.sh (it builds when nothing is built: minutes):
# KAFKA_ESM_CDK_BUILD=x86_64 also synthesizes with the real build and checks the assets' ELF headers.
if [ -n "${KAFKA_ESM_CDK_BUILD:-}" ]; then
  check "cdk synth with the build ($KAFKA_ESM_CDK_BUILD)" cdk_build_synth "$KAFKA_ESM_CDK_BUILD"
fi
# Opt-in, not in scripts/test.sh (a release build per architecture: minutes when warm):
# KAFKA_ESM_SAM_BUILD=arm64 runs `sam build` for arm64 and checks every bootstrap it built.
if [ -n "${KAFKA_ESM_SAM_BUILD:-}" ]; then
  check "sam build ($KAFKA_ESM_SAM_BUILD)" sam_build_check "$KAFKA_ESM_SAM_BUILD"
fi

if [ "$failed" -gt 0 ]; then
  log "failed: ${failures[*]}"
fi
echo "infra: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
