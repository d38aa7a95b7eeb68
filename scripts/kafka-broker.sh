#!/usr/bin/env bash
# A Kafka-compatible broker (tansu 0.6.0) as a plain process, for the tests
# and for trying rollbackd locally. Idempotent.
#
#   scripts/kafka-broker.sh install            build tansu once (about 10 minutes)
#   scripts/kafka-broker.sh start [--durable]  start on 127.0.0.1:$KAFKA_PORT and create the topics
#   scripts/kafka-broker.sh stop
#   scripts/kafka-broker.sh path               print the tansu binary's path
#
# KAFKA_PORT (default 19092) and ROLLBACKD_TOOLS (default /var/tmp/rollbackd-tools)
# choose the port and where tansu is installed; the broker's data and log
# live in $ROLLBACKD_TOOLS/broker-$KAFKA_PORT.
set -euo pipefail

TOOLS="${ROLLBACKD_TOOLS:-/var/tmp/rollbackd-tools}"
PORT="${KAFKA_PORT:-19092}"
RUN_DIR="$TOOLS/broker-$PORT"
TANSU="$TOOLS/bin/tansu"
TOPICS=(deploy-events rollback-commands rollback-results rollbackd-audit rollbackd-dlq rollbackd-admin)
TELEMETRY_TOPICS=(otlp_spans otlp_metrics)

tansu_path() {
  if [ -x "$TANSU" ]; then echo "$TANSU"; return; fi
  if command -v tansu >/dev/null 2>&1 && tansu --version 2>/dev/null | grep -q '0\.6\.0'; then
    command -v tansu; return
  fi
  return 1
}

install() {
  if tansu_path >/dev/null; then return 0; fi
  echo "installing tansu 0.6.0 into $TOOLS (once; about 10 minutes on 2 cores)" >&2
  mkdir -p "$TOOLS"
  CARGO_TARGET_DIR="$TOOLS/target" cargo install tansu --version 0.6.0 --locked \
    --features dynostore,libsql --root "$TOOLS"
  rm -rf "$TOOLS/target"
}

answers() {
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

start() {
  install
  local bin storage
  bin="$(tansu_path)"
  if [ -f "$RUN_DIR/pid" ] && kill -0 "$(cat "$RUN_DIR/pid")" 2>/dev/null; then
    echo "broker already running on 127.0.0.1:$PORT" >&2
  else
    mkdir -p "$RUN_DIR/data"
    storage="memory://tansu/"
    if [ "${1:-}" = "--durable" ]; then storage="sqlite://data/tansu.db"; fi
    (cd "$RUN_DIR" && nohup "$bin" broker --storage-engine "$storage" \
      --listener-url "tcp://127.0.0.1:$PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$PORT" >"$RUN_DIR/broker.log" 2>&1 &
      echo $! >"$RUN_DIR/pid")
    for _ in $(seq 1 100); do
      answers && break
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
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$RUN_DIR/pid"
  fi
}

case "${1:-}" in
  install) install ;;
  start) shift; start "$@" ;;
  stop) stop ;;
  path) tansu_path ;;
  *) echo "usage: $0 install|start [--durable]|stop|path" >&2; exit 2 ;;
esac
