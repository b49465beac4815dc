#!/usr/bin/env python3
"""Reference MSK IAM tokens from AWS's own signer, for kafka-esm's byte-compatibility test.

Runs `aws-msk-iam-sasl-signer-python` (the version pinned in scripts/install-deps.sh) on fixed,
fake credentials, Regions and signing times, and prints the tokens as JSON. `src/msk_iam.rs`
checks that it produces the same bytes for every case (`cargo test --lib msk_iam`).

  scripts/msk-iam-reference-tokens.py > tests/data/msk-iam-reference-tokens.json
  scripts/msk-iam-reference-tokens.py --check tests/data/msk-iam-reference-tokens.json

`--check` regenerates the tokens and fails (exit 1) when they differ from the checked-in file, so
CI proves the file still comes from the reference library and was not edited by hand.
"""
import argparse
import datetime
import json
import sys
from unittest import mock

import botocore.auth
from botocore.credentials import CredentialProvider, Credentials

from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

# AWS's documented example keys, and session tokens with the characters that need encoding.
CASES = [
    ("us-east-1", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None,
     "2026-01-01T00:00:00Z"),
    ("us-west-2", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None,
     "2024-02-29T23:59:59Z"),
    ("eu-central-1", "ASIAIOSFODNN7EXAMPLE", "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
     "IQoJb3JpZ2luX2VjEXAMPLE//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+session/token+with=padding==",
     "2025-07-14T12:34:56Z"),
    ("ap-southeast-2", "ASIAQEXAMPLEKEYID123", "secret+key/with=odd chars",
     "FwoGZXIvYXdzEXAMPLE/short-lived+token=", "2030-12-31T23:45:00Z"),
    ("cn-north-1", "AKIDEXAMPLECHINA", "SECRETEXAMPLECHINA", "token-without-special-chars",
     "2026-06-15T06:07:08Z"),
    ("us-gov-west-1", "AKIAGOVEXAMPLE", "govsecretEXAMPLE", None, "2027-03-03T03:03:03Z"),
]


class FixedProvider(CredentialProvider):
    def __init__(self, access_key, secret_key, token):
        super().__init__()
        self.credentials = Credentials(access_key, secret_key, token)

    def load(self):
        return self.credentials


def generate():
    out = []
    for region, access_key, secret_key, token, at in CASES:
        when = datetime.datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ")
        # botocore reads the signing time through this one function.
        with mock.patch.object(botocore.auth, "get_current_datetime", lambda *a, **k: when):
            signed, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_credentials_provider(
                region, FixedProvider(access_key, secret_key, token))
        out.append({
            "region": region,
            "access_key_id": access_key,
            "secret_access_key": secret_key,
            "session_token": token,
            "signing_time": at,
            "user_agent": MSKAuthTokenProvider.__get_user_agent__(),
            "token": signed,
            "expiry_ms": int(expiry_ms),
        })
    return {"generator": "aws-msk-iam-sasl-signer-python " + MSKAuthTokenProvider.__get_user_agent__(),
            "cases": out}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", metavar="FILE", help="compare with FILE instead of printing")
    args = ap.parse_args()
    fresh = generate()
    if args.check:
        with open(args.check, encoding="utf-8") as f:
            stored = json.load(f)
        if stored != fresh:
            print(f"{args.check} differs from what the reference signer produces now", file=sys.stderr)
            print(json.dumps(fresh, indent=2), file=sys.stderr)
            return 1
        print(f"{args.check}: {len(fresh['cases'])} reference tokens match")
        return 0
    print(json.dumps(fresh, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
