#!/usr/bin/env python3
"""Helpers for scripts/handoff-gap.sh (run with the confluent-kafka venv from install-deps.sh).

  handoff-gap.py front   --listen PORT --watch URL --function poller --timeout-ms N --log FILE
  handoff-gap.py produce --bootstrap B --topic T --partitions N --rate R --stop-file F --out FILE
  handoff-gap.py sample  --bootstrap B --topic T --group G --interval-ms 50 --out FILE
  handoff-gap.py report  --samples FILE --front-log FILE --produced FILE --final FILE --stop-margin-ms N

front: what `cargo lambda watch` 1.9.2 does not emulate, in front of it, for the poller only.
  * Runtime API (/.rt/<function>/...): forwarded to watch; the `lambda-runtime-deadline-ms` header
    of each delivered invocation is set to now + --timeout-ms (watch always sends 600000, i.e.
    1970-01-01T00:10:00Z). Deliveries and results are logged with their times.
  * Invoke API (/2015-03-31/functions/<name>/invocations): `X-Amz-Invocation-Type: Event` gets
    202 at once and the invoke is forwarded to watch in the background (watch answers every
    invoke synchronously, so an async self-invoke would otherwise block until the successor
    returns). Synchronous invokes are forwarded unchanged. Other paths (GetFunction) get 404.
produce: one record per producer batch (tansu 0.6), --rate records/s per partition, until the
  stop file appears; writes the count per partition.
sample: the consumer group's committed offsets and the high watermarks every --interval-ms, read
  by an independent librdkafka client, until SIGTERM.
report: per handoff, the longest time each partition's committed offset did not advance while
  records were waiting; the poller invocations, their deadlines, and the final lag.
"""
import argparse
import http.client
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# --------------------------------------------------------------------------------------------
# front


class FrontLog:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def write(self, **event):
        event.setdefault("t", time.time())
        with self.lock:
            self.f.write(json.dumps(event) + "\n")


HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "host", "content-length"}


def forward(watch, method, path, headers, body):
    """One request to watch, on a fresh connection; returns (status, headers, body)."""
    conn = http.client.HTTPConnection(watch.hostname, watch.port, timeout=None)
    try:
        out = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
        out["Content-Length"] = str(len(body))
        conn.request(method, path, body=body, headers=out)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.getheaders(), data
    finally:
        conn.close()


def make_handler(watch, function, timeout_ms, log):
    rt_prefix = f"/.rt/{function}/"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args):
            pass

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def reply(self, status, headers, data):
            self.send_response(status)
            for k, v in headers:
                if k.lower() not in HOP_BY_HOP:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.handle_any("GET")

        def do_POST(self):
            self.handle_any("POST")

        def do_PUT(self):
            self.handle_any("PUT")

        def handle_any(self, method):
            body = self.body()
            path = self.path
            try:
                if path.startswith(rt_prefix):
                    self.runtime(method, path, body)
                elif path.startswith("/2015-03-31/functions/") and path.endswith("/invocations"):
                    self.invoke(method, path, body)
                else:
                    # GetFunction and the rest: watch has none of them, and with --only-lambda-apis
                    # it would queue an unknown path as an invoke of its default function, which
                    # never returns here. A plain 404, as watch answers without that flag.
                    self.reply(404, [("Content-Type", "application/json")],
                               json.dumps({"detail": f"{method} {path} is not emulated"}).encode())
            except (BrokenPipeError, ConnectionResetError):
                pass
            except Exception as e:  # noqa: BLE001 - an emulator: report, keep serving
                log.write(event="front-error", path=path, error=repr(e))
                try:
                    self.reply(502, [("Content-Type", "text/plain")], repr(e).encode())
                except OSError:
                    pass

        def runtime(self, method, path, body):
            status, headers, data = forward(watch, method, path, dict(self.headers), body)
            if path.endswith("/runtime/invocation/next") and status == 200:
                now = time.time()
                deadline_ms = int(now * 1000) + timeout_ms
                headers = [(k, v) for k, v in headers if k.lower() != "lambda-runtime-deadline-ms"]
                headers.append(("Lambda-Runtime-Deadline-Ms", str(deadline_ms)))
                rid = dict((k.lower(), v) for k, v in headers).get("lambda-runtime-aws-request-id")
                try:
                    payload = json.loads(data or b"null")
                except ValueError:
                    payload = None
                log.write(event="delivered", t=now, rid=rid, deadline=deadline_ms / 1000,
                          payload=payload, instance=self.client_address[1])
            elif "/runtime/invocation/" in path and (path.endswith("/response") or path.endswith("/error")):
                rid = path.rsplit("/", 2)[-2]
                try:
                    result = json.loads(body or b"null")
                except ValueError:
                    result = body.decode(errors="replace")
                log.write(event="returned" if path.endswith("/response") else "failed", rid=rid, result=result)
            self.reply(status, headers, data)

        def invoke(self, method, path, body):
            name = path.split("/")[3]
            kind = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
            if kind == "Event":
                try:
                    payload = json.loads(body or b"null")
                except ValueError:
                    payload = None
                log.write(event="async-invoke", function=name, payload=payload)
                headers = dict(self.headers)
                headers.pop("X-Amz-Invocation-Type", None)

                def run():
                    try:
                        status, _, data = forward(watch, method, path, headers, body)
                        log.write(event="async-invoke-done", function=name, status=status,
                                  body=data.decode(errors="replace")[:500])
                    except Exception as e:  # noqa: BLE001
                        log.write(event="async-invoke-error", function=name, error=repr(e))

                threading.Thread(target=run, daemon=True).start()
                self.reply(202, [("Content-Type", "application/json")], b"")
            else:
                self.reply(*forward(watch, method, path, dict(self.headers), body))

    return Handler


def front(args):
    watch = urlsplit(args.watch)
    log = FrontLog(args.log)
    server = ThreadingHTTPServer(("127.0.0.1", args.listen),
                                 make_handler(watch, args.function, args.timeout_ms, log))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


# --------------------------------------------------------------------------------------------
# produce


def produce(args):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 0,
                         "batch.num.messages": 1, "max.in.flight.requests.per.connection": 1})
    errors = []
    counts = [0] * args.partitions

    def delivered(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            counts[msg.partition()] += 1

    period = 1.0 / args.rate
    started = time.time()
    tick = 0
    while not os.path.exists(args.stop_file):
        for p in range(args.partitions):
            value = json.dumps({"n": tick, "partition": p, "at": time.time()})
            producer.produce(args.topic, key=f"k-{tick % 97}", value=value, partition=p,
                             on_delivery=delivered)
        producer.poll(0)
        tick += 1
        delay = started + tick * period - time.time()
        if delay > 0:
            time.sleep(delay)
    stopped_at = time.time()
    producer.flush(60)
    with open(args.out, "w") as f:
        json.dump({"partitions": counts, "stopped_at": stopped_at, "errors": errors[:5], "error_count": len(errors),
                   "seconds": time.time() - started}, f)
    return 1 if errors else 0


# --------------------------------------------------------------------------------------------
# sample


def sample(args):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group,
                         "enable.auto.commit": False})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    meta = consumer.list_topics(args.topic, timeout=10)
    parts = sorted(meta.topics[args.topic].partitions)
    tps = [TopicPartition(args.topic, p) for p in parts]
    period = args.interval_ms / 1000
    with open(args.out, "w", buffering=1) as out:
        while not stop.is_set():
            began = time.time()
            try:
                committed = consumer.committed(tps, timeout=5)
                highs = [consumer.get_watermark_offsets(tp, timeout=5, cached=False)[1] for tp in tps]
            except Exception as e:  # noqa: BLE001 - keep sampling through a broker hiccup
                out.write(json.dumps({"t": began, "error": str(e)}) + "\n")
                stop.wait(period)
                continue
            t = time.time()
            out.write(json.dumps({"t": (began + t) / 2,
                                  "c": [tp.offset if tp.offset >= 0 else None for tp in committed],
                                  "h": highs}) + "\n")
            stop.wait(max(0.0, period - (time.time() - began)))
    consumer.close()
    return 0


# --------------------------------------------------------------------------------------------
# report


def stalls(samples, p):
    """(start, end, offset) intervals during which partition p's committed offset stayed at
    `offset` while the high watermark was above it. `end` is None if it never advanced."""
    out = []
    cur = None  # committed offset being watched
    since = None  # when records first waited at that offset
    for s in samples:
        c, h, t = s["c"][p], s["h"][p], s["t"]
        c = 0 if c is None else c
        if cur is None or c != cur:
            if since is not None:
                out.append((since, t, cur))
            cur, since = c, None
        if since is None and h > c:
            since = t
    if since is not None:
        out.append((since, None, cur))
    return out


def report(args):
    samples = []
    with open(args.samples) as f:
        for line in f:
            s = json.loads(line)
            if "c" in s:
                samples.append(s)
    events = []
    with open(args.front_log) as f:
        for line in f:
            events.append(json.loads(line))
    produced = json.load(open(args.produced))
    final = json.load(open(args.final))
    margin = args.stop_margin_ms / 1000
    t0 = samples[0]["t"] if samples else 0.0
    rel = lambda t: t - t0  # noqa: E731

    # Poller invocations as the runtime saw them.
    inv = {}
    for e in events:
        if e["event"] == "delivered":
            payload = e.get("payload") or {}
            reason = ((payload.get("kafkaEsm") or {}).get("reason")) if isinstance(payload, dict) else None
            inv[e["rid"]] = {"rid": e["rid"], "start": e["t"], "deadline": e["deadline"],
                             "reason": reason or "schedule", "end": None, "result": None}
        elif e["event"] in ("returned", "failed") and e["rid"] in inv:
            inv[e["rid"]]["end"] = e["t"]
            inv[e["rid"]]["result"] = e["result"] if e["event"] == "returned" else {"error": e["result"]}
    invocations = sorted(inv.values(), key=lambda i: i["start"])
    relays = [e for e in events if e["event"] == "async-invoke"
              and ((e.get("payload") or {}).get("kafkaEsm") or {}).get("reason") == "relay"]
    errors = [e for e in events if e["event"] in ("front-error", "async-invoke-error")]

    ok = True
    print(f"Poller invocations (cargo lambda watch, deadline {args.timeout_ms / 1000:.0f} s after delivery, "
          f"stop margin {margin:.0f} s); times in s from the first sample:")
    print("   #  reason     started  deadline  returned  before deadline  result")
    for n, i in enumerate(invocations, 1):
        if i["end"] is None:
            left, ret = "(running)", "-"
        else:
            left = f"{i['deadline'] - i['end']:.2f} s"
            ret = f"{rel(i['end']):8.2f}"
            if i["end"] > i["deadline"]:
                left += "  LATE"
                ok = False
        res = i["result"]
        res_s = "-" if res is None else (
            f"exit={res.get('exit')} records={res.get('records')} batches={res.get('batches')} "
            f"failedInvokes={res.get('failedInvokes')}" if isinstance(res, dict) and "exit" in res else json.dumps(res)[:120])
        print(f"  {n:2d}  {i['reason']:<9} {rel(i['start']):8.2f}  {rel(i['deadline']):8.2f}  {ret:>8}  {left:>15}  {res_s}")
    successors = [i for i in invocations if i["reason"] == "relay"]
    print(f"  relay invokes sent (async, 202): {len(relays)}; successor invocations delivered: {len(successors)}")
    if errors:
        ok = False
        for e in errors[:5]:
            print(f"  front error: {e}")

    # Handoffs: a poller that returned and a relay successor that started.
    handoffs = []
    for i in invocations:
        if i["end"] is None:
            continue
        stop_at = i["deadline"] - margin
        succ = next((s for s in successors if s["start"] >= stop_at - 1.0 and s is not i), None)
        if succ is not None:
            handoffs.append((i, succ, stop_at))
    nparts = len(samples[0]["c"]) if samples else 0
    all_stalls = {p: stalls(samples, p) for p in range(nparts)}
    prod_end = produced.get("stopped_at")
    first_advance = None
    for s in samples:
        if any((c or 0) > 0 for c in s["c"]):
            first_advance = s["t"]
            break

    def in_window(st, lo, hi):
        end = st[1] if st[1] is not None else float("inf")
        return st[0] <= hi and end >= lo

    print()
    print(f"Handoff gaps: per partition, the longest time its committed offset did not advance while "
          f"records were waiting (sampled every {args.interval_ms} ms by a separate librdkafka client), "
          f"in stalls overlapping [stop - 0.5 s, successor start + 10 s]:")
    used = set()
    gaps = []
    for k, (a, b, stop_at) in enumerate(handoffs, 1):
        lo, hi = stop_at - 0.5, b["start"] + 10
        if prod_end is not None and lo > prod_end:
            note = " (after production stopped: nothing waiting)"
        else:
            note = ""
        per = []
        for p in range(nparts):
            best = 0.0
            for st in all_stalls[p]:
                if in_window(st, lo, hi):
                    used.add((p, st[0]))
                    end = st[1] if st[1] is not None else samples[-1]["t"]
                    best = max(best, end - st[0])
            per.append(best)
        gap = max(per) if per else 0.0
        if not note:
            gaps.append(gap)
        print(f"  handoff {k}: stop at {rel(stop_at):6.2f} s, successor started {b['start'] - stop_at:+.2f} s, "
              f"predecessor returned {a['end'] - stop_at:+.2f} s; max gap {gap:.2f} s "
              f"(partitions: {', '.join(f'{g:.2f}' for g in per)}){note}")
    steady = 0.0
    for p in range(nparts):
        for st in all_stalls[p]:
            if (p, st[0]) in used or st[1] is None:
                continue
            if first_advance is not None and st[0] < first_advance:
                continue  # the first poller's start, not a handoff
            steady = max(steady, st[1] - st[0])
    if gaps:
        print(f"  overall max handoff gap: {max(gaps):.2f} s over {len(gaps)} handoffs with records flowing "
              f"(target <= 1 s on the local stack); steady state between handoffs: max {steady:.2f} s")
    else:
        print("  no handoff happened while records were flowing")

    # Final state.
    print()
    total_prod = sum(produced["partitions"])
    committed = [r["committed"] for r in final["partitions"]]
    print(f"Records: produced {total_prod} ({', '.join(map(str, produced['partitions']))} per partition, "
          f"{produced['error_count']} produce errors); committed {sum(c or 0 for c in committed)} "
          f"({', '.join(str(c) for c in committed)}); lag {final['lag']}")
    checks = [
        (f"every poller invocation that returned did so before its deadline ({sum(1 for i in invocations if i['end'])} returned)",
         all(i["end"] is None or i["end"] <= i["deadline"] for i in invocations) and any(i["end"] for i in invocations)),
        (f"successors ran (relay invocations: {len(successors)}, handoffs with records flowing: {len(gaps)}, need >= {args.min_handoffs})",
         len(successors) >= args.min_handoffs and len(gaps) >= args.min_handoffs),
        ("no records lost: committed == produced on every partition",
         produced["error_count"] == 0 and committed == produced["partitions"]),
        ("lag reached 0", final["lag"] == 0),
    ]
    for name, passed in checks:
        print(f"  [{'ok' if passed else 'FAIL'}] {name}")
        ok = ok and passed
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("front")
    f.add_argument("--listen", type=int, required=True)
    f.add_argument("--watch", required=True)
    f.add_argument("--function", default="poller")
    f.add_argument("--timeout-ms", type=int, required=True)
    f.add_argument("--log", required=True)
    p = sub.add_parser("produce")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--partitions", type=int, required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--out", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--bootstrap", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--group", required=True)
    s.add_argument("--interval-ms", type=int, default=50)
    s.add_argument("--out", required=True)
    r = sub.add_parser("report")
    r.add_argument("--samples", required=True)
    r.add_argument("--front-log", required=True)
    r.add_argument("--produced", required=True)
    r.add_argument("--final", required=True)
    r.add_argument("--stop-margin-ms", type=int, required=True)
    r.add_argument("--timeout-ms", type=int, required=True)
    r.add_argument("--interval-ms", type=int, default=50)
    r.add_argument("--min-handoffs", type=int, default=2)
    args = ap.parse_args()
    return {"front": front, "produce": produce, "sample": sample, "report": report}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
