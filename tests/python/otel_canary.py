"""Instrumented services, built with the official OpenTelemetry Python SDK,
exporting over OTLP/HTTP (protobuf) to rollbackd.

Each service runs a baseline (the previous version) and a candidate (the
version being deployed) as two SDK resources, and for every simulated request
records what an HTTP server instrumentation records: a SERVER span with
`http.response.status_code` (status ERROR on 5xx) and a point in the
`http.server.request.duration` histogram (unit `s`, cumulative temporality,
the semantic-convention bucket boundaries).

    otel_canary.py --endpoint http://127.0.0.1:9464 --seconds 8 \\
        --service checkout:spans,metrics:errors --service search:spans,metrics:healthy

A service is NAME:SIGNALS:BEHAVIOUR where SIGNALS is `spans`, `metrics` or
both (comma-separated) and BEHAVIOUR is what the candidate does: `healthy`
(as the baseline: one 5xx in 400 requests, 30 ms), `errors` (one request in
four fails) or `slow` (one request in three takes 1.2 s). Every service uses
`deployment.environment.name` = --environment, versions --baseline and
--candidate. Traffic is deterministic: no randomness.
"""

import argparse
import time

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

# The semantic conventions' advice for http.server.request.duration.
BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]


def request_outcome(behaviour, i):
    """(status code, duration in seconds) of the i-th request."""
    if behaviour == "errors" and i % 4 == 0:
        return 503, 0.030
    if behaviour == "slow" and i % 3 == 0:
        return 200, 1.2
    if i % 400 == 399:
        return 500, 0.030
    return 200, 0.030


class Instance:
    """One version of one service: its own SDK resource, tracer and meter."""

    def __init__(self, endpoint, service, version, environment, signals, behaviour):
        self.behaviour = behaviour
        self.count = 0
        resource = Resource.create(
            {
                "service.name": service,
                "service.version": version,
                "deployment.environment.name": environment,
            }
        )
        self.tracer_provider = None
        self.meter_provider = None
        if "spans" in signals:
            self.tracer_provider = TracerProvider(resource=resource)
            self.tracer_provider.add_span_processor(
                BatchSpanProcessor(
                    OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"),
                    schedule_delay_millis=200,
                    max_queue_size=20000,
                    max_export_batch_size=512,
                )
            )
            self.tracer = self.tracer_provider.get_tracer("otel_canary")
        if "metrics" in signals:
            reader = PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics"),
                export_interval_millis=500,
            )
            self.meter_provider = MeterProvider(
                resource=resource,
                metric_readers=[reader],
                views=[
                    View(
                        instrument_name="http.server.request.duration",
                        aggregation=ExplicitBucketHistogramAggregation(BUCKETS),
                    )
                ],
            )
            self.duration = self.meter_provider.get_meter("otel_canary").create_histogram(
                "http.server.request.duration",
                unit="s",
                description="Duration of HTTP server requests.",
            )

    def serve(self, n):
        for _ in range(n):
            status, seconds = request_outcome(self.behaviour, self.count)
            self.count += 1
            attrs = {
                "http.request.method": "GET",
                "http.route": "/api/items",
                "http.response.status_code": status,
            }
            if self.tracer_provider is not None:
                end = time.time_ns()
                span = self.tracer.start_span(
                    "GET /api/items",
                    kind=SpanKind.SERVER,
                    attributes=attrs,
                    start_time=end - int(seconds * 1e9),
                )
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                span.end(end_time=end)
            if self.meter_provider is not None:
                self.duration.record(seconds, attributes=attrs)

    def shutdown(self):
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush()
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.force_flush()
            self.meter_provider.shutdown()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", required=True, help="rollbackd's base URL")
    ap.add_argument("--service", action="append", required=True, help="NAME:SIGNALS:BEHAVIOUR")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rate", type=int, default=100, help="requests per second per instance")
    ap.add_argument("--environment", default="prod")
    ap.add_argument("--baseline", default="v1")
    ap.add_argument("--candidate", default="v2")
    args = ap.parse_args()

    instances = []
    for spec in args.service:
        name, signals, behaviour = spec.split(":")
        signals = signals.split(",")
        instances.append(
            Instance(args.endpoint, name, args.baseline, args.environment, signals, "healthy")
        )
        instances.append(
            Instance(args.endpoint, name, args.candidate, args.environment, signals, behaviour)
        )

    tick = 0.1
    per_tick = max(1, int(args.rate * tick))
    until = time.monotonic() + args.seconds
    next_tick = time.monotonic()
    while time.monotonic() < until:
        for inst in instances:
            inst.serve(per_tick)
        next_tick += tick
        time.sleep(max(0.0, next_tick - time.monotonic()))
    for inst in instances:
        inst.shutdown()
    print(f"sent {sum(i.count for i in instances)} requests", flush=True)


if __name__ == "__main__":
    main()
