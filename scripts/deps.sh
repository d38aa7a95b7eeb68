#!/usr/bin/env bash
# Installs what building and testing rollbackd needs, once; a second run
# only checks. Debian packages for librdkafka's build (built from source
# by rdkafka-sys), the Python packages of tests/python/requirements.txt in
# a virtualenv, then the tansu broker the Kafka tests run against.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# prometheus: its promtool checks the alert rules in deploy/; prometheus-alertmanager:
# a real Alertmanager delivers webhooks in the tests.
for pkg in build-essential perl pkg-config zlib1g-dev libssl-dev python3 python3-venv prometheus prometheus-alertmanager; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

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
