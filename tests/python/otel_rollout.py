"""Services built with the official OpenTelemetry Python SDK rolling out a
new version under load, with no deploy event anywhere: what rollbackd sees
is only the telemetry (spans over OTLP/HTTP protobuf).

    otel_rollout.py --endpoint http://127.0.0.1:9464 \\
        --service shop:errors --service cart:healthy --before 4 --during 8 --after 6

Each service serves --from alone for --before seconds, then --from and --to
side by side for --during seconds (a rolling update), then --to alone for
--after seconds. BEHAVIOUR is what --to does: `healthy` (as --from: one 5xx
in 400 requests) or `errors` (one request in four fails). Traffic is
deterministic: no randomness.
"""

import argparse
import time

from otel_canary import KINDS, Instance


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", required=True, help="rollbackd's base URL")
    ap.add_argument("--service", action="append", required=True, help="NAME:BEHAVIOUR")
    ap.add_argument("--before", type=float, default=4.0)
    ap.add_argument("--during", type=float, default=8.0)
    ap.add_argument("--after", type=float, default=6.0)
    ap.add_argument("--rate", type=int, default=100, help="requests per second per instance")
    ap.add_argument("--environment", default="prod")
    ap.add_argument("--from", dest="old", default="v1")
    ap.add_argument("--to", dest="new", default="v2")
    args = ap.parse_args()

    old, new = [], []
    for spec in args.service:
        name, behaviour = spec.split(":")
        for version, does, into in ((args.old, "healthy", old), (args.new, behaviour, new)):
            into.append(
                Instance(args.endpoint, name, version, args.environment, ["spans"], does, KINDS["http"])
            )

    tick = 0.1
    per_tick = max(1, int(args.rate * tick))
    start = time.monotonic()
    phases = [(args.before, old), (args.before + args.during, old + new)]
    end = args.before + args.during + args.after
    next_tick = start
    while (elapsed := time.monotonic() - start) < end:
        serving = next((s for until, s in phases if elapsed < until), new)
        for inst in serving:
            inst.serve(per_tick)
        next_tick += tick
        time.sleep(max(0.0, next_tick - time.monotonic()))
    for inst in old + new:
        inst.shutdown()
    print(f"sent {sum(i.count for i in old + new)} requests", flush=True)


if __name__ == "__main__":
    main()
