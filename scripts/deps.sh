#!/usr/bin/env bash
# Installs what building and testing rollbackd needs, once; a second run
# only checks (about a second).
#
#   scripts/deps.sh           everything the test command needs
#   scripts/deps.sh --build   only what `cargo build` needs: a C toolchain,
#                             perl, pkg-config, zlib and OpenSSL headers
#                             (librdkafka is built from source by rdkafka-sys)
#
# Everything: the Debian packages for the build, Prometheus,
# Alertmanager and Chromium (the tests run the real programs), the Python
# packages of tests/python/requirements.txt in a virtualenv, then the two brokers the
# Kafka tests run against, tansu and noida-db (prebuilt binaries; see
# scripts/kafka-broker.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_PACKAGES=(build-essential perl pkg-config zlib1g-dev libssl-dev)
# prometheus: its promtool checks the alert rules in deploy/ and a real
# Prometheus scrapes /metrics; prometheus-alertmanager: a real Alertmanager
# delivers webhooks in the tests; chromium (headless) loads the status page
# and the replay report, with a font to render them in.
TEST_PACKAGES=(python3 python3-venv prometheus prometheus-alertmanager chromium fonts-dejavu-core)

apt_install() {
  local need=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
  done
  [ "${#need[@]}" -gt 0 ] || return 0
  echo "installing Debian packages: ${need[*]}" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

if [ "${1:-}" = "--build" ]; then
  apt_install "${BUILD_PACKAGES[@]}"
  exit 0
fi
apt_install "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"

# The OpenTelemetry Python SDK and PyYAML, pinned, in $ROLLBACKD_TOOLS/venv;
# reinstalled only when the requirements change.
TOOLS="${ROLLBACKD_TOOLS:-/var/tmp/rollbackd-tools}"
VENV="$TOOLS/venv"
REQ=tests/python/requirements.txt
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$want" ]; then
  echo "installing Python packages into $VENV" >&2
  rm -rf "$VENV"
  mkdir -p "$TOOLS"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
  echo "$want" >"$VENV/.requirements"
fi

./scripts/kafka-broker.sh install
