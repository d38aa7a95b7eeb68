#!/usr/bin/env bash
# Exactly once under crashes, at length: three instances on a noida-db
# broker (transactions on); each iteration starts a bad and a healthy
# canary and, at a random moment around the decision, kills a random
# instance with SIGKILL and restarts it. Then: exactly one command per bad
# deploy, none for the healthy ones, one command audit record each.
#
#   scripts/chaos.sh [ITERATIONS] [SEED]     (default 100, random seed)
#
# It is the test `exactly_one_command_per_bad_deploy_under_kill_9` of
# tests/scaleout.rs (three iterations in the test command), run longer.
set -euo pipefail
cd "$(dirname "$0")/.."

export ROLLBACKD_CHAOS_ITERATIONS="${1:-100}"
if [ -n "${2:-}" ]; then export ROLLBACKD_CHAOS_SEED="$2"; fi

KAFKA_BROKER=noida ./scripts/kafka-broker.sh install >/dev/null
# Build, then run the test binary itself: cargo is not held for the run.
exe=$(cargo test --locked --test scaleout --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("executable") and m.get("target", {}).get("name") == "scaleout":
        print(m["executable"])')
log="${TMPDIR:-/tmp}/rollbackd-chaos.log"
echo "full output: $log"
set +e
"$exe" exactly_one_command_per_bad_deploy_under_kill_9 --exact --nocapture >"$log" 2>&1
status=$?
set -e
grep -E '^(chaos|iteration|test )|panicked' "$log"
exit "$status"
