#!/usr/bin/env bash
# The one test command: installs what the tests need (idempotently), then
# runs the format check, clippy, every test, and the shared scenarios.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== dependencies"
./scripts/deps.sh

echo "== format"
cargo fmt --check

echo "== clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "== release build"
# The README's walkthroughs (tests/walkthrough.rs) and the scenarios run
# the release binary.
cargo build --release --locked

echo "== tests"
# The Kafka tests start their own tansu broker processes on free loopback
# ports; they find tansu where scripts/kafka-broker.sh installed it. Every
# test binary runs even after one failed, so a run shows every failure.
cargo test --locked --no-fail-fast

echo "== scenarios"
scen_src="../shared/scenarios"
if [ -f "$scen_src/gen.py" ] && [ -f "$scen_src/check.py" ]; then
  target_dir="${CARGO_TARGET_DIR:-target}"
  scen_dir="$(mktemp -d)"
  trap 'rm -rf "$scen_dir"' EXIT
  python3 "$scen_src/gen.py" "$scen_dir" >/dev/null
  python3 "$scen_src/check.py" "$scen_dir" "$target_dir/release/rollbackd"
else
  echo "shared scenarios not found beside this checkout: skipped"
fi
