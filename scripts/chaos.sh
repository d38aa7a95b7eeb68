#!/usr/bin/env bash
# Faults at length: three instances on a noida-db broker (transactions
# on); each iteration starts a bad, a healthy and an alerted canary and
# injects one fault, in random order: kill -9 of an instance, an owner
# frozen past its session timeout, a broker restart, a broker outage
# longer than max.poll.interval.ms. Then, per fault: exactly one command
# per bad and per alerted deploy, none per healthy one, the healthy
# canary's requests counted once, no instance stuck — as a table.
#
#   scripts/chaos.sh [ITERATIONS] [SEED]     (default 100, random seed)
#
# It is the test `faults_in_random_order_leave_one_command_per_bad_deploy`
# of tests/chaos.rs (four iterations in the test command), run longer.
set -euo pipefail
cd "$(dirname "$0")/.."

export ROLLBACKD_CHAOS_ITERATIONS="${1:-100}"
if [ -n "${2:-}" ]; then export ROLLBACKD_CHAOS_SEED="$2"; fi

KAFKA_BROKER=noida ./scripts/kafka-broker.sh install >/dev/null
# Build, then run the test binary itself: cargo is not held for the run.
exe=$(cargo test --locked --test chaos --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("executable") and m.get("target", {}).get("name") == "chaos":
        print(m["executable"])')
log="${TMPDIR:-/tmp}/rollbackd-chaos.log"
echo "full output: $log"
set +e
"$exe" faults_in_random_order_leave_one_command_per_bad_deploy --exact --nocapture >"$log" 2>&1
status=$?
set -e
grep -E '^(chaos|iteration|\||test )|panicked' "$log"
exit "$status"
