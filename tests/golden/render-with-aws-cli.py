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

# A seeded corpus of random responses (nested objects, lists, lists of objects, scalars of every
# type, wide and non-ASCII text) with what the AWS CLI prints for each as table, text and JSON
# after a --query: src/cli/output.rs checks every line of it.
import random

random.seed(7)
WORDS = ["a", "UUID", "State", "Enabled", "x" * 30, "日本語", "Ünïcode", "", "it's", "orders-topic",
         "arn:aws:lambda:us-east-1:123456789012:function:f"]
KEYS = ["Key", "Name", "Topics", "Zeta", "alpha", "Beta", "Endpoints", "Config"]
QUERIES = ["@", "Top0", "[Top1, Top0]", "{z: Top1, a: Top0}", "Top0[0]", "*", "values(@)", "keys(@)",
           "Top0[?K]", "length(@)"]


def scalar():
    r = random.random()
    if r < 0.4:
        return random.choice(WORDS)
    if r < 0.55:
        return random.randint(-5, 100000)
    if r < 0.65:
        return random.choice([1.5, 1580331394.363, 100.0, 0.1, 1e20, 1e-7])
    if r < 0.8:
        return random.choice([True, False])
    return None


def value(depth):
    r = random.random()
    if depth > 3 or r < 0.5:
        return scalar()
    if r < 0.75:
        return {random.choice(KEYS) + str(random.randint(0, 3)): value(depth + 1) for _ in range(random.randint(0, 4))}
    n = random.randint(0, 3)
    kind = random.random()
    if kind < 0.4:
        return [value(depth + 1) for _ in range(n)]
    if kind < 0.7:
        return [{random.choice("KLM"): value(depth + 1) for _ in range(random.randint(1, 3))} for _ in range(n)]
    return [scalar() for _ in range(n)]


def rendered(formatter_class, query, doc):
    stream = io.StringIO()
    formatter_class(Args(query, "off"))("SomeOperation", json.loads(json.dumps(doc)), stream)
    return stream.getvalue()


with open(GOLDEN / "formatter-corpus.jsonl", "w") as corpus:
    written = 0
    while written < 120:
        doc = {"Top" + str(j): value(0) for j in range(random.randint(1, 4))}
        query = random.choice(QUERIES)
        try:
            case = {
                "response": doc,
                "table": rendered(TableFormatter, None, doc),
                "text": rendered(TextFormatter, None, doc),
                "query": query,
                "json": json.dumps(jmespath.search(query, doc), indent=4, ensure_ascii=False) + "\n",
            }
        except (ValueError, AttributeError, TypeError, IndexError, jmespath.exceptions.JMESPathError):
            continue  # inputs the AWS CLI itself fails on
        corpus.write(json.dumps(case, ensure_ascii=False) + "\n")
        written += 1
print("formatter-corpus.jsonl")
