#!/usr/bin/env bash
# bench/passwd/run.sh: the password application's change flow against the dev slapd, next to
# raw LDAP bind + Password Modify measured in the same run; and the application's RSS, idle and
# under that load. Everything on 127.0.0.1, bounded (ACCOUNTS x ROUNDS changes, 120 s at most).
#
#   bench/passwd/run.sh [ACCOUNTS=16] [ROUNDS=10] [CONCURRENCY=4]
#
# Needs the dev services (dev/up.sh: slapd on 3389, SMTP capture on 2525). Builds the two
# release examples of pic2-passwd (the server is `pic2 passwd`'s code without the rest of pic2).
set -euo pipefail
cd "$(dirname "$0")/../.."
ACCOUNTS=${1:-16}
ROUNDS=${2:-10}
CONC=${3:-4}
PORT=${PIC2_BENCH_PORT:-8091}

for p in 3389:dev/ldap.sh 2525:dev/smtp.sh; do
    if ! timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/${p%%:*}" 2>/dev/null; then
        echo "ERROR: nothing on 127.0.0.1:${p%%:*}: run dev/up.sh (or ${p#*:} start)" >&2
        exit 1
    fi
done

cargo build -q --release -p pic2-passwd --example passwd-server --example passwd-bench
BIN=target/release/examples

"$BIN/passwd-server" "127.0.0.1:$PORT" 2>/tmp/pic2-passwd-bench.log &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null && break
    sleep 0.1
done
rss() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$SERVER/status"; }
for _ in 1 2 3; do curl -fsS -o /dev/null "http://127.0.0.1:$PORT/password"; done
IDLE=$(rss VmRSS)

"$BIN/passwd-bench" "http://127.0.0.1:$PORT" "$ACCOUNTS" "$ROUNDS" "$CONC"

LOADED=$(rss VmRSS)
PEAK=$(rss VmHWM)
awk -v i="$IDLE" -v l="$LOADED" -v p="$PEAK" 'BEGIN {
    printf "app RSS: idle %.1f MB, after load %.1f MB, peak %.1f MB (target < 20 MB)\n", i/1024, l/1024, p/1024 }'
