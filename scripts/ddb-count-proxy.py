#!/usr/bin/env python3
"""Helpers for scripts/ddb-calls.sh, which measures DynamoDB calls per partition-minute of
`esm poll` at steady state. Python 3.11 standard library only, except `trickle` (confluent-kafka,
from the venv scripts/install-deps.sh creates).

  ddb-count-proxy.py proxy  --port 38001 --upstream 127.0.0.1:38000   # counting DynamoDB proxy
  ddb-count-proxy.py stub   --port 39001                              # always-200 Invoke API
  ddb-count-proxy.py trickle --bootstrap 127.0.0.1:39092 --topic T --partitions 12 --rate 6
  ddb-count-proxy.py reset  --proxy http://127.0.0.1:38001 --stub http://127.0.0.1:39001
  ddb-count-proxy.py leases --dynamodb http://127.0.0.1:38000 --table kafka-esm-leases \
      --partitions 12 --pollers 3 [--save FILE] [--compare FILE]
      # exit 0 when steady, 3 when not, 4 when steady but a lease changed since --compare
  ddb-count-proxy.py report --proxy … --stub … --partitions 12 --pollers 3 --before F --after F …

proxy: forwards every request to DynamoDB (dynalite) unchanged and counts it by operation
(`X-Amz-Target`), table and item kind (the `LeaseKey` prefix: `poller#` heartbeat items,
`lease#` partition leases), plus error answers by type (ConditionalCheckFailedException
separately) and the items scans read (`ScannedCount`). `GET /__ddb_calls/counts` returns the
counts since the last `POST /__ddb_calls/reset`.

stub: answers `POST /2015-03-31/functions/{name}/invocations` with 200 `null` and
`X-Amz-Executed-Version: $LATEST`, `GET /2015-03-31/functions/{name}` (GetFunction) with an ARN,
and counts invocations and records (`GET /__stub/counts`, `POST /__stub/reset`).

leases: reads the leases table straight from dynalite (not through the proxy, so it is not
counted): steady means every partition is leased by a live poller, exactly `--pollers` pollers
are live and none is stopping, and each holds its fair share.
"""
import argparse
import http.client
import json
import math
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
READS = {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
CCF = "ConditionalCheckFailedException"


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers=()) -> None:
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def reply_json(handler: BaseHTTPRequestHandler, value) -> None:
    reply(handler, 200, json.dumps(value).encode(), [("Content-Type", "application/json")])


class Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the AWS SDK expects

    def log_message(self, *_args):
        pass


# ---------------------------------------------------------------------------------------- proxy

def item_kind(request: dict) -> str:
    """`poller#` / `lease#` from the item's key (or a scan's `:p` prefix), else `-`."""
    candidates = []
    for field in ("Key", "Item"):
        if isinstance(request.get(field), dict):
            candidates += [v.get("S") for v in request[field].values() if isinstance(v, dict)]
    values = request.get("ExpressionAttributeValues")
    if isinstance(values, dict) and isinstance(values.get(":p"), dict):
        candidates.append(values[":p"].get("S"))
    for value in candidates:
        if isinstance(value, str) and "#" in value:
            return value.split("#", 1)[0] + "#"
    return "-"


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.since = time.time()
            self.calls = {}  # (op, table, kind) -> count
            self.errors = {}  # (op, error type) -> count
            self.scanned = 0
            self.upstream_failures = 0

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "since": self.since,
                "elapsed_s": time.time() - self.since,
                "calls": [{"op": k[0], "table": k[1], "kind": k[2], "count": v} for k, v in sorted(self.calls.items())],
                "errors": [{"op": k[0], "type": k[1], "count": v} for k, v in sorted(self.errors.items())],
                "scanned_items": self.scanned,
                "upstream_failures": self.upstream_failures,
            }


def run_proxy(args) -> None:
    host, port = args.upstream.rsplit(":", 1)
    counts = Counts()

    class Handler(Quiet):
        def do_GET(self):
            if self.path == "/__ddb_calls/counts":
                reply_json(self, counts.snapshot())
            else:
                self.forward(b"")

        def do_POST(self):
            body = read_body(self)
            if self.path == "/__ddb_calls/reset":
                counts.reset()
                reply_json(self, counts.snapshot())
                return
            self.forward(body)

        def forward(self, body: bytes):
            target = self.headers.get("X-Amz-Target", "")
            op = target.rsplit(".", 1)[-1] if target else f"{self.command} {self.path}"
            try:
                request = json.loads(body) if body else {}
            except ValueError:
                request = {}
            table = request.get("TableName", "-") if isinstance(request, dict) else "-"
            kind = item_kind(request) if isinstance(request, dict) else "-"
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"}
            headers["Content-Length"] = str(len(body))
            # One upstream connection per request: no stale keep-alive connection to retry on.
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            try:
                conn.request(self.command, self.path, body, headers)
                response = conn.getresponse()
                data = response.read()
                status, out_headers = response.status, response.getheaders()
            except OSError as e:
                with counts.lock:
                    counts.calls[(op, table, kind)] = counts.calls.get((op, table, kind), 0) + 1
                    counts.upstream_failures += 1
                reply(self, 502, json.dumps({"message": f"ddb-count-proxy: upstream: {e}"}).encode())
                return
            finally:
                conn.close()
            error_type = None
            scanned = 0
            if status >= 400:
                try:
                    error_type = json.loads(data).get("__type", "").rsplit("#", 1)[-1] or f"HTTP {status}"
                except ValueError:
                    error_type = f"HTTP {status}"
            elif op == "Scan":
                try:
                    scanned = int(json.loads(data).get("ScannedCount", 0))
                except (ValueError, TypeError):
                    pass
            with counts.lock:
                counts.calls[(op, table, kind)] = counts.calls.get((op, table, kind), 0) + 1
                counts.scanned += scanned
                if error_type:
                    counts.errors[(op, error_type)] = counts.errors.get((op, error_type), 0) + 1
            reply(self, status, data, [(k, v) for k, v in out_headers
                                       if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"])

    serve(args.port, Handler, f"proxy on 127.0.0.1:{args.port} -> {args.upstream}")


# ----------------------------------------------------------------------------------------- stub

def run_stub(args) -> None:
    lock = threading.Lock()
    state = {"since": time.time(), "invocations": 0, "records": 0}

    class Handler(Quiet):
        def name(self) -> str:
            parts = urllib.parse.urlsplit(self.path).path.split("/")
            return urllib.parse.unquote(parts[3]) if len(parts) > 3 else ""

        def do_GET(self):
            path = urllib.parse.urlsplit(self.path).path
            if path == "/__stub/counts":
                with lock:
                    reply_json(self, dict(state, elapsed_s=time.time() - state["since"]))
            elif path.startswith("/2015-03-31/functions/"):
                name = self.name().rsplit(":function:", 1)[-1]
                arn = f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
                reply_json(self, {"Configuration": {"FunctionName": name, "FunctionArn": arn}})
            else:
                reply(self, 404, b'{"message":"not found"}')

        def do_POST(self):
            body = read_body(self)
            path = urllib.parse.urlsplit(self.path).path
            if path == "/__stub/reset":
                with lock:
                    state.update(since=time.time(), invocations=0, records=0)
                reply_json(self, state)
                return
            if not (path.startswith("/2015-03-31/functions/") and path.endswith("/invocations")):
                reply(self, 404, b'{"message":"not found"}')
                return
            try:
                records = sum(len(v) for v in json.loads(body).get("records", {}).values())
            except (ValueError, AttributeError, TypeError):
                records = 0
            with lock:
                state["invocations"] += 1
                state["records"] += records
            reply(self, 200, b"null", [("Content-Type", "application/json"),
                                       ("X-Amz-Executed-Version", "$LATEST")])

    serve(args.port, Handler, f"Invoke stub on 127.0.0.1:{args.port}")


def serve(port: int, handler, what: str) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(what, flush=True)
    server.serve_forever()


# -------------------------------------------------------------------------------------- trickle

def run_trickle(args) -> int:
    from confluent_kafka import Producer  # the venv's; only this subcommand needs it

    # One record per producer batch, as scripts/produce.py: tansu 0.6 skips the rest of a
    # multi-record batch when a fetch starts inside it.
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 0, "batch.num.messages": 1,
                         "max.in.flight.requests.per.connection": 1})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    errors = []
    every = 1.0 / args.rate
    next_at = time.monotonic()
    i = 0
    while not stop.is_set():
        producer.produce(args.topic, key=f"k-{i}", value=json.dumps({"n": i, "at": time.time()}),
                         partition=i % args.partitions,
                         on_delivery=lambda err, _m: err is not None and errors.append(err))
        producer.poll(0)
        i += 1
        next_at += every
        stop.wait(max(0.0, next_at - time.monotonic()))
        if errors:
            print(f"trickle: produce failed: {errors[0]}", file=sys.stderr)
            return 1
    producer.flush(10)
    print(f"trickle: produced {i} records", flush=True)
    return 0


# ---------------------------------------------------------------------------------------- leases

def scan_direct(endpoint: str, table: str) -> list:
    """A Scan straight to dynalite, which wants an Authorization header but checks no signature."""
    items, start = [], None
    while True:
        body = {"TableName": table, "ConsistentRead": True}
        if start:
            body["ExclusiveStartKey"] = start
        request = urllib.request.Request(endpoint, data=json.dumps(body).encode(), method="POST", headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.Scan",
            "Authorization": "AWS4-HMAC-SHA256 Credential=local/20240101/us-east-1/dynamodb/aws4_request, "
                             "SignedHeaders=host, Signature=0",
            "X-Amz-Date": "20240101T000000Z",
        })
        with urllib.request.urlopen(request, timeout=10) as response:
            out = json.loads(response.read())
        items += out.get("Items", [])
        start = out.get("LastEvaluatedKey")
        if not start:
            return items


def lease_snapshot(endpoint: str, table: str) -> dict:
    now_ms = int(time.time() * 1000)
    pollers, leases = {}, []
    for item in scan_direct(endpoint, table):
        key = item.get("LeaseKey", {}).get("S", "")
        if key.startswith("poller#"):
            pollers[key[len("poller#"):]] = {
                "expires_at_ms": int(item.get("ExpiresAtMs", {}).get("N", 0)),
                "held": int(item.get("Held", {}).get("N", 0)),
                "stopping": bool(item.get("Stopping", {}).get("BOOL", False)),
                "counter": int(item.get("Counter", {}).get("N", 0)),
            }
        elif key.startswith("lease#"):
            leases.append({"partition": int(item.get("Partition", {}).get("N", -1)),
                           "owner": item.get("Owner", {}).get("S"),
                           "counter": int(item.get("Counter", {}).get("N", 0))})
    leases.sort(key=lambda l: l["partition"])
    return {"now_ms": now_ms, "pollers": pollers, "leases": leases}


def assess(snap: dict, partitions: int, pollers: int) -> tuple[bool, str]:
    live = {p: v for p, v in snap["pollers"].items() if v["expires_at_ms"] >= snap["now_ms"]}
    held = {}
    for lease in snap["leases"]:
        if lease["owner"] in live:
            held[lease["owner"]] = held.get(lease["owner"], 0) + 1
    leased = sum(held.values())
    share = math.ceil(partitions / max(1, pollers))
    spread = "/".join(str(held.get(p, 0)) for p in sorted(live))
    text = (f"{leased}/{partitions} partitions leased by live pollers; {len(live)} live "
            f"poller{'' if len(live) == 1 else 's'} holding {spread or '-'} (fair share {share})")
    steady = (len(snap["leases"]) == partitions and leased == partitions and len(live) == pollers
              and not any(v["stopping"] for v in live.values())
              and all(n <= share for n in held.values()))
    return steady, text


def run_leases(args) -> int:
    snap = lease_snapshot(args.dynamodb, args.table)
    steady, text = assess(snap, args.partitions, args.pollers)
    if args.save:
        with open(args.save, "w", encoding="utf-8") as f:
            json.dump(snap, f)
    changed = 0
    if args.compare:
        with open(args.compare, encoding="utf-8") as f:
            before = {l["partition"]: l for l in json.load(f)["leases"]}
        changed = sum(1 for l in snap["leases"] if before.get(l["partition"]) != l)
        text += ("; no lease changed owner or counter since the start" if not changed
                 else f"; {changed} leases changed owner or counter since the start")
    print(text, flush=True)
    if not steady:
        return 3
    return 4 if changed else 0


# ---------------------------------------------------------------------------------------- report

def get_json(url: str, method: str = "GET") -> dict:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def run_reset(args) -> int:
    get_json(f"{args.proxy}/__ddb_calls/reset", "POST")
    get_json(f"{args.stub}/__stub/reset", "POST")
    return 0


WHAT = {
    ("UpdateItem", "poller#"): "heartbeats",
    ("UpdateItem", "lease#"): "lease acquire/release",
    ("PutItem", "lease#"): "lease items created",
    ("DeleteItem", "poller#"): "heartbeat removed",
    ("DeleteItem", "lease#"): "lease items deleted",
    ("Scan", "poller#"): "live pollers (every lease scan)",
    ("Scan", "lease#"): "a mapping's leases (every lease scan)",
}


def run_report(args) -> int:
    counts = get_json(f"{args.proxy}/__ddb_calls/counts")
    stub = get_json(f"{args.stub}/__stub/counts")
    minutes = counts["elapsed_s"] / 60.0
    partitions, pollers = args.partitions, args.pollers
    writes = sum(c["count"] for c in counts["calls"] if c["op"] in WRITES)
    reads = sum(c["count"] for c in counts["calls"] if c["op"] in READS)
    other = sum(c["count"] for c in counts["calls"] if c["op"] not in WRITES | READS)
    ccf = sum(e["count"] for e in counts["errors"] if e["type"] == CCF)
    scans = sum(c["count"] for c in counts["calls"] if c["op"] == "Scan")
    wpm = writes / partitions / minutes
    rpm = reads / partitions / minutes
    out = []
    p = out.append
    p("")
    p(f"DynamoDB calls of {pollers} x `esm poll` over one {partitions}-partition mapping, steady state")
    p(f"  window: {counts['elapsed_s']:.1f} s, after a warm-up of {args.warmup_s:.0f} s "
      f"(leases at the start: {args.before_text})")
    p(f"  {'operation':<11} {'table':<19} {'item':<8} {'calls':>6} {'/min':>7}   what")
    for c in counts["calls"]:
        if c["op"] == "Scan" and c["kind"] == "-":
            what = "mappings refresh" if "mappings" in c["table"] else "lease scan (heartbeats and leases, one Scan)"
        else:
            what = WHAT.get((c["op"], c["kind"]), "")
        p(f"  {c['op']:<11} {c['table']:<19} {c['kind']:<8} {c['count']:>6} {c['count'] / minutes:>7.1f}   {what}")
    if not counts["calls"]:
        p("  (no calls)")
    per_op = {}
    for c in counts["calls"]:
        per_op[c["op"]] = per_op.get(c["op"], 0) + c["count"]
    p("  per operation: " + (", ".join(f"{op} {n}" for op, n in sorted(per_op.items())) or "-"))
    p(f"  writes: {writes} ({writes / minutes:.1f}/min, {writes / minutes / pollers:.1f} per poller-minute)"
      f"   reads: {reads} ({reads / minutes:.1f}/min, {reads / minutes / pollers:.1f} per poller-minute)"
      + (f"   other: {other}" if other else ""))
    p(f"  conditional-check failures: {ccf}" + "".join(
        f"; {e['op']} {e['type']}: {e['count']}" for e in counts["errors"] if e["type"] != CCF))
    if counts["upstream_failures"]:
        p(f"  proxy could not reach dynalite {counts['upstream_failures']} times")
    p(f"  items read by scans (ScannedCount): {counts['scanned_items']}"
      + (f" ({counts['scanned_items'] / scans:.1f} per scan)" if scans else ""))
    p(f"  writes per partition-minute: {wpm:.2f}   reads per partition-minute: {rpm:.2f}")
    # What the settings predict: one heartbeat per renew interval per poller; one Scan of the
    # leases table per lease scan; one mappings scan per refresh.
    model_w = pollers * 60000 / args.renew_ms / partitions
    model_r = pollers * (60000 / args.scan_ms + 60000 / args.refresh_ms) / partitions
    p(f"  model at these settings: {model_w:.2f} writes and {model_r:.2f} reads per partition-minute "
      f"(pollers x 60000/RENEW; pollers x (60000/SCAN + 60000/REFRESH); / partitions)")
    met = wpm <= 2.0
    p(f"  target <= 2 writes per partition-minute: {'MET' if met else 'NOT MET'} ({wpm:.2f})")
    p(f"  heartbeat writes are per poller, not per partition: <= 2 per partition-minute needs >= "
      f"{60000 / args.renew_ms / 2:.1f} partitions per poller at these settings")
    p(f"  function: {stub['invocations']} invocations, {stub['records']} records in the window "
      f"(trickle {args.rate:g} records/s)")
    p(f"  leases at the end: {args.after_text}")
    p(f"  settings: pollers={pollers} partitions={partitions} {args.settings}")
    p(f"  build: {args.build}")
    p(f"  reproduce: {args.command}")
    print("\n".join(out), flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("proxy")
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--upstream", required=True, help="host:port of DynamoDB (dynalite)")
    a = sub.add_parser("stub")
    a.add_argument("--port", type=int, required=True)
    a = sub.add_parser("trickle")
    a.add_argument("--bootstrap", required=True)
    a.add_argument("--topic", required=True)
    a.add_argument("--partitions", type=int, required=True)
    a.add_argument("--rate", type=float, required=True, help="records per second")
    a = sub.add_parser("reset")
    a.add_argument("--proxy", required=True)
    a.add_argument("--stub", required=True)
    a = sub.add_parser("leases")
    a.add_argument("--dynamodb", required=True, help="dynalite's URL (not the proxy: not counted)")
    a.add_argument("--table", required=True)
    a.add_argument("--partitions", type=int, required=True)
    a.add_argument("--pollers", type=int, required=True)
    a.add_argument("--save")
    a.add_argument("--compare", help="a snapshot saved earlier: did any lease change since?")
    a = sub.add_parser("report")
    for name in ("--proxy", "--stub", "--settings", "--command", "--build", "--before-text", "--after-text"):
        a.add_argument(name, required=True)
    for name in ("--partitions", "--pollers"):
        a.add_argument(name, type=int, required=True)
    for name in ("--warmup-s", "--rate", "--renew-ms", "--scan-ms", "--refresh-ms"):
        a.add_argument(name, type=float, required=True)
    args = ap.parse_args()
    if args.cmd == "proxy":
        run_proxy(args)
        return 0
    if args.cmd == "stub":
        run_stub(args)
        return 0
    return {"trickle": run_trickle, "reset": run_reset, "leases": run_leases, "report": run_report}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
