"""Producer throughput: simulated gpu.metrics.v1 samples onto a 12-partition topic, against a naive baseline.

Compared in the same run, on the same broker (a fresh tansu unless KAFKA_BOOTSTRAP_SERVERS is set):
  naive      stdlib json.dumps of a dict per message and a delivery callback per message (the common tutorial code)
  ours       KafkaOutput.send: msgspec encoding, idempotent producer, only failed deliveries reported
  limit      KafkaOutput.send_encoded of bytes encoded beforehand (the producer alone)
  simulator  the simulator generating the samples (no Kafka, no encoding)
  pipeline   `pipeline produce --source simulator` in-process: generate + encode + produce (produce_simulated)
Every producing variant flushes before the clock stops, and must report zero failed deliveries.

    .venv/bin/python bench/bench_producer.py [--samples 200000] [--repeat 3]

Each variant runs `--repeat` times, interleaved; the median time is reported (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec

from backend.embedded.tansu import TansuBroker
from backend.messaging.kafka import ensure_topics, make_producer
from backend.settings_loader import load_settings
from backend.telemetry.messages import GpuSample, encode, key
from backend.telemetry.producer import KafkaOutput, produce_simulated
from backend.telemetry.simulator import Fleet

START = datetime(2026, 1, 1, tzinfo=UTC)
INTERVAL = timedelta(seconds=10)


def fleet_for(samples: int) -> tuple[Fleet, datetime]:
    """25 hosts × 8 GPUs, as many 10-second steps as needed for `samples`."""
    fleet = Fleet(hosts=25, gpus_per_host=8, seed=1, start=START)
    return fleet, START + INTERVAL * -(-samples // len(fleet.gpus))


def timed(run: Callable[[], int]) -> tuple[int, float]:
    began = time.perf_counter()
    count = run()
    return count, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    broker = None
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        broker = TansuBroker()
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.start()
    try:
        run(args.samples, args.repeat)
    finally:
        if broker is not None:
            broker.stop()


def run(n: int, repeat: int) -> None:
    def settings_for(name: str):
        return load_settings(telemetry_topic=f"bench.{name}.{uuid.uuid4().hex[:8]}", kafka_partitions=12,
                             token_usage_topic=f"bench.tokens.{uuid.uuid4().hex[:8]}",
                             dlq_topic=f"bench.dlq.{uuid.uuid4().hex[:8]}")

    def simulator() -> int:
        fresh, stop_at = fleet_for(n)
        return sum(1 for _ in fresh.samples(end=stop_at, interval=INTERVAL))

    fleet, end = fleet_for(n)
    samples: list[GpuSample] = list(fleet.samples(end=end, interval=INTERVAL))
    size = sum(len(encode(s)) for s in samples[:1000]) / 1000

    def naive() -> int:
        settings = settings_for("naive")
        ensure_topics([settings.telemetry_topic], settings)
        producer = make_producer(settings)
        failed = 0

        def on_delivery(err, _msg) -> None:
            nonlocal failed
            failed += err is not None

        for s in samples:
            value = json.dumps(msgspec.to_builtins(s)).encode()
            while True:
                try:
                    producer.produce(settings.telemetry_topic, value, s.gpu_uuid.encode(), on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        assert producer.flush(60) == 0 and failed == 0
        return len(samples)

    def ours() -> int:
        output = KafkaOutput(settings_for("ours"))
        for s in samples:
            output.send(s)
        report = output.close()
        assert report.failed == 0
        return report.sent

    encoded = [(key(s), encode(s)) for s in samples]

    def limit() -> int:
        settings = settings_for("limit")
        output = KafkaOutput(settings)
        topic = settings.telemetry_topic
        for k, v in encoded:
            output.send_encoded(topic, k, v)
        report = output.close()
        assert report.failed == 0
        return report.sent

    def pipeline() -> int:
        fresh, stop_at = fleet_for(n)
        report = produce_simulated(settings_for("pipeline"), fresh, end=stop_at, interval=INTERVAL, tokens=False)
        assert report.failed == 0
        return report.sent

    variants = {"simulator": simulator, "naive": naive, "ours": ours, "limit": limit, "pipeline": pipeline}
    runs: dict[str, list[tuple[int, float]]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, fn in variants.items():
            runs[name].append(timed(fn))
    results = {name: sorted(r, key=lambda run: run[1])[len(r) // 2] for name, r in runs.items()}

    base = results["naive"][0] / results["naive"][1]
    print(f"{n} samples, {size:.0f} bytes each (JSON), 12 partitions, idempotent producer, lz4, linger 5 ms, "
          f"median of {repeat}\n")
    print("| variant | messages | seconds | messages/s | × naive |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (count, seconds) in results.items():
        rate = count / seconds
        print(f"| {name} | {count} | {seconds:.2f} | {rate:,.0f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()
