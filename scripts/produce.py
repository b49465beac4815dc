#!/usr/bin/env python3
"""Produces demo records with confluent-kafka (librdkafka): JSON values, a key, and a header.

  scripts/produce.py --bootstrap 127.0.0.1:19092 --topic orders --count 3000 [--partitions 3]

One record per producer batch (linger.ms=0, batch.num.messages=1): tansu 0.6 skips the rest of a
multi-record batch when a fetch starts inside it. Real Kafka does not need this.
"""
import argparse
import json
import sys
import time

from confluent_kafka import Producer


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--partitions", type=int, default=3)
    args = ap.parse_args()
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 0,
                         "batch.num.messages": 1, "max.in.flight.requests.per.connection": 1})
    errors = []

    def delivered(err, _msg):
        if err is not None:
            errors.append(err)

    started = time.time()
    for i in range(args.count):
        value = json.dumps({"order": i, "amount": round(10 + i * 0.37, 2), "currency": "EUR"})
        producer.produce(args.topic, key=f"customer-{i % 97}", value=value,
                         partition=i % args.partitions, headers=[("source", "kafka-esm-demo")],
                         on_delivery=delivered)
        producer.poll(0)
    producer.flush(60)
    if errors:
        print(f"produce failed: {errors[0]}", file=sys.stderr)
        return 1
    print(f"produced {args.count} records to {args.topic} in {time.time() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
