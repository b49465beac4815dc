"""Renders the JSON golden files with the AWS CLI's own formatters (awscli's TableFormatter and
TextFormatter, table width 80 as when stdout is not a terminal), so tests/cli.rs can check that
`esm --output table|text [--query …]` prints exactly what `aws lambda … --output …` would.

Run from the repository root with the AWS CLI installed (`pip install awscli`):
    python3 tests/golden/render-with-aws-cli.py
"""
import io
import json
import pathlib

import jmespath
from awscli.formatter import TableFormatter, TextFormatter

GOLDEN = pathlib.Path(__file__).parent
LIST_QUERY = "EventSourceMappings[].{Topic: Topics[0], UUID: UUID, State: State}"

# (output file, input JSON golden, operation, format, --query); "table-color" is --color on.
CASES = [
    ("get-msk.table", "get-msk.json", "GetEventSourceMapping", "table", None),
    ("get-msk.text", "get-msk.json", "GetEventSourceMapping", "text", None),
    ("list-msk.table", "list-msk.json", "ListEventSourceMappings", "table", None),
    ("list-msk.text", "list-msk.json", "ListEventSourceMappings", "text", None),
    ("create-self-managed.table", "create-self-managed.json", "CreateEventSourceMapping", "table", None),
    ("create-self-managed.text", "create-self-managed.json", "CreateEventSourceMapping", "text", None),
    ("list-msk-query.table", "list-msk.json", "ListEventSourceMappings", "table", LIST_QUERY),
    ("list-msk-query.text", "list-msk.json", "ListEventSourceMappings", "text", LIST_QUERY),
    ("get-msk.table-color", "get-msk.json", "GetEventSourceMapping", "table-color", None),
    ("create-self-managed.table-color", "create-self-managed.json", "CreateEventSourceMapping", "table-color", None),
]


class Args:
    def __init__(self, query, color):
        self.query = jmespath.compile(query) if query else None
        self.color = color


for out, source, operation, fmt, query in CASES:
    response = json.loads((GOLDEN / source).read_text())
    args = Args(query, "on" if fmt == "table-color" else "off")
    formatter = (TableFormatter if fmt.startswith("table") else TextFormatter)(args)
    stream = io.StringIO()
    formatter(operation, response, stream)
    (GOLDEN / out).write_text(stream.getvalue())
    print(out)
