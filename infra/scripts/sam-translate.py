"""Prints template.yaml as CloudFormation after the SAM transform, as JSON, without AWS access.

Uses the SAM CLI's own validator (the code `sam validate` runs), with an empty managed-policy map:
the template attaches no managed policies, so nothing needs IAM. infra/test/parity.test.ts reads
the output (KAFKA_ESM_SAM_TRANSLATED) to compare the real expansion of AWS::Serverless::Function
with the CDK stack.

Usage: python sam-translate.py TEMPLATE OUT.json
"""

import json
import sys

from samcli.lib.translate.sam_template_validator import SamTemplateValidator
from samcli.yamlhelper import yaml_parse


class NoManagedPolicies:
    """The template references no managed policy; fail loudly if that ever changes."""

    def load(self):
        raise SystemExit("template.yaml references an AWS managed policy; kafka-esm's role must not")


def main(template_path: str, out_path: str) -> None:
    with open(template_path, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    validator = SamTemplateValidator(template, NoManagedPolicies(), region="us-east-1")
    translated = yaml_parse(validator.get_translated_template_if_valid())
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(translated, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
