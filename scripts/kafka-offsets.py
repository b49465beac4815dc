#!/usr/bin/env python3
"""Prints a consumer group's committed offsets and lag per partition, using confluent-kafka
(librdkafka) as an independent client. Used by the demo and by the tests.

  scripts/kafka-offsets.py --bootstrap 127.0.0.1:19092 --group GROUP --topic TOPIC [--json]
"""
import argparse
import json
import sys

from confluent_kafka import Consumer, TopicPartition


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--ca", help="PEM CA bundle: connect over TLS trusting it")
    args = ap.parse_args()
    config = {"bootstrap.servers": args.bootstrap, "group.id": args.group,
              "enable.auto.commit": False}
    if args.ca:
        config.update({"security.protocol": "ssl", "ssl.ca.location": args.ca})
    consumer = Consumer(config)
    try:
        meta = consumer.list_topics(args.topic, timeout=10)
        topic = meta.topics.get(args.topic)
        if topic is None or topic.error is not None:
            print(f"topic {args.topic} not found", file=sys.stderr)
            return 1
        parts = sorted(topic.partitions)
        committed = consumer.committed([TopicPartition(args.topic, p) for p in parts], timeout=10)
        rows = []
        for tp in committed:
            low, high = consumer.get_watermark_offsets(TopicPartition(args.topic, tp.partition), timeout=10)
            offset = tp.offset if tp.offset >= 0 else None
            lag = high - (offset if offset is not None else low)
            rows.append({"partition": tp.partition, "committed": offset, "high": high, "lag": lag})
    finally:
        consumer.close()
    total_lag = sum(r["lag"] for r in rows)
    if args.json:
        print(json.dumps({"group": args.group, "topic": args.topic, "partitions": rows, "lag": total_lag}))
    else:
        for r in rows:
            print(f"  {args.topic}-{r['partition']}: committed={r['committed']} end={r['high']} lag={r['lag']}")
        print(f"  total lag: {total_lag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
