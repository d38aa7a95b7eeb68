"""Instrumented services, built with the official OpenTelemetry Python SDK,
exporting over OTLP/HTTP (protobuf) to rollbackd.

Each service runs a baseline (the previous version) and a candidate (the
version being deployed) as two SDK resources, and for every simulated request
records what its kind's instrumentation records, with cumulative histograms
in the semantic-convention bucket boundaries:

- `http`: a SERVER span with `http.response.status_code` (status ERROR on
  5xx) and a point in `http.server.request.duration` (unit `s`);
- `grpc`: a SERVER span with `rpc.system` = grpc and `rpc.grpc.status_code`
  (status ERROR on every code but OK, as instrumentations did before the
  conventions kept it for a server's failures) and a point in
  `rpc.server.call.duration` (unit `s`);
- `consumer`: a CONSUMER span of a processed Kafka message (status ERROR
  and `error.type` when processing failed) and a point in
  `messaging.process.duration` (unit `s`, `error.type` when it failed).

    otel_canary.py --endpoint http://127.0.0.1:9464 --seconds 8 \\
        --service checkout:spans,metrics:errors --service cart:spans:errors:grpc

A service is NAME:SIGNALS:BEHAVIOUR[:KIND] where SIGNALS is `spans`,
`metrics` or both (comma-separated), BEHAVIOUR is what the candidate does:
`healthy` (as the baseline: one server failure in 400 requests, 30 ms),
`errors` (one request in four fails: HTTP 503, gRPC UNAVAILABLE, a failed
message), `not_found` (one request in four is answered HTTP 404 or gRPC
NOT_FOUND: the caller's mistake) or `slow` (one request in three takes
1.2 s), and KIND is `http` (the default), `grpc` or `consumer`. Every
service uses `deployment.environment.name` = --environment, versions
--baseline and --candidate. Traffic is deterministic: no randomness.
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

# The semantic conventions' advice for request-duration histograms.
BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]

# gRPC status codes.
GRPC_OK, GRPC_NOT_FOUND, GRPC_INTERNAL, GRPC_UNAVAILABLE = 0, 5, 13, 14


def request_outcome(behaviour, i):
    """(outcome, duration in seconds) of the i-th request: outcome is `ok`,
    `failed` (the server's fault), `rare` (the baseline's occasional
    failure) or `not_found` (the caller's mistake)."""
    if behaviour == "errors" and i % 4 == 0:
        return "failed", 0.030
    if behaviour == "not_found" and i % 4 == 0:
        return "not_found", 0.030
    if behaviour == "slow" and i % 3 == 0:
        return "ok", 1.2
    if i % 400 == 399:
        return "rare", 0.030
    return "ok", 0.030


class Http:
    """An HTTP server's request."""

    metric = "http.server.request.duration"
    span_kind = SpanKind.SERVER
    span_name = "GET /api/items"
    statuses = {"ok": 200, "failed": 503, "rare": 500, "not_found": 404}

    def attributes(self, outcome):
        status = self.statuses[outcome]
        attrs = {
            "http.request.method": "GET",
            "http.route": "/api/items",
            "http.response.status_code": status,
        }
        return attrs, status >= 500


class Grpc:
    """A gRPC server's call."""

    metric = "rpc.server.call.duration"
    span_kind = SpanKind.SERVER
    span_name = "shop.Catalog/GetItem"
    codes = {
        "ok": GRPC_OK,
        "failed": GRPC_UNAVAILABLE,
        "rare": GRPC_INTERNAL,
        "not_found": GRPC_NOT_FOUND,
    }

    def attributes(self, outcome):
        code = self.codes[outcome]
        attrs = {
            "rpc.system": "grpc",
            "rpc.service": "shop.Catalog",
            "rpc.method": "GetItem",
            "rpc.grpc.status_code": code,
        }
        return attrs, code != GRPC_OK


class Consumer:
    """A message a Kafka consumer processed."""

    metric = "messaging.process.duration"
    span_kind = SpanKind.CONSUMER
    span_name = "process orders"

    def attributes(self, outcome):
        attrs = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": "orders",
            "messaging.consumer.group.name": "workers",
        }
        failed = outcome in ("failed", "rare")
        if failed:
            attrs["error.type"] = "ProcessingError"
        return attrs, failed


KINDS = {"http": Http(), "grpc": Grpc(), "consumer": Consumer()}


class Instance:
    """One version of one service: its own SDK resource, tracer and meter."""

    def __init__(self, endpoint, service, version, environment, signals, behaviour, kind):
        self.behaviour = behaviour
        self.kind = kind
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
                        instrument_name=kind.metric,
                        aggregation=ExplicitBucketHistogramAggregation(BUCKETS),
                    )
                ],
            )
            self.duration = self.meter_provider.get_meter("otel_canary").create_histogram(
                kind.metric,
                unit="s",
                description=kind.__doc__,
            )

    def serve(self, n):
        for _ in range(n):
            outcome, seconds = request_outcome(self.behaviour, self.count)
            self.count += 1
            attrs, span_error = self.kind.attributes(outcome)
            if self.tracer_provider is not None:
                end = time.time_ns()
                span = self.tracer.start_span(
                    self.kind.span_name,
                    kind=self.kind.span_kind,
                    attributes=attrs,
                    start_time=end - int(seconds * 1e9),
                )
                if span_error:
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
    ap.add_argument(
        "--service", action="append", required=True, help="NAME:SIGNALS:BEHAVIOUR[:KIND]"
    )
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rate", type=int, default=100, help="requests per second per instance")
    ap.add_argument("--environment", default="prod")
    ap.add_argument("--baseline", default="v1")
    ap.add_argument("--candidate", default="v2")
    args = ap.parse_args()

    instances = []
    for spec in args.service:
        name, signals, behaviour, *kind = spec.split(":")
        kind = KINDS[kind[0] if kind else "http"]
        signals = signals.split(",")
        for version, does in [(args.baseline, "healthy"), (args.candidate, behaviour)]:
            instances.append(
                Instance(args.endpoint, name, version, args.environment, signals, does, kind)
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
