#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ for a while each — decoders,
# replay_line, and otlp_proto (the protobuf decoder against its reference)
# — (not part of the test command: it needs a nightly toolchain and
# minutes of CPU).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     default 300
#
# cargo-fuzz is installed once into $ROLLBACKD_TOOLS (default
# /var/tmp/rollbackd-tools). The targets are built without a sanitizer: the
# crate forbids unsafe code, so what is looked for is panics (and hangs,
# and runaway memory), and librdkafka's bundled C dependencies do not link
# with AddressSanitizer instrumentation. Seeds: fuzz/seeds/<target>/ (one
# record of each input kind); the corpus grows in fuzz/corpus/<target>/.
# A crash leaves its input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS="${1:-300}"
TOOLS="${ROLLBACKD_TOOLS:-/var/tmp/rollbackd-tools}"
export PATH="$TOOLS/bin:$PATH"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-/var/tmp/rollbackd-fuzz-target}"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "a nightly toolchain is needed: rustup toolchain install nightly" >&2
  exit 2
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz into $TOOLS (once)" >&2
  CARGO_TARGET_DIR="$TOOLS/cargo-fuzz-build" cargo install cargo-fuzz --locked --root "$TOOLS"
  rm -rf "$TOOLS/cargo-fuzz-build"
fi

cd fuzz
for target in decoders replay_line otlp_proto; do
  echo "== $target for ${SECS}s"
  mkdir -p "corpus/$target"
  cargo +nightly fuzz run -O --sanitizer none "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=1024 -timeout=10 2>&1 | tail -n 4
done
