#!/usr/bin/env bash
# bench/proxy/instructions.sh: user-space instructions per HTTP/1.1 request (1 KB answer,
# keep-alive on both sides) of pic2 proxy, nginx and HAProxy, each with one worker, counted
# by valgrind's callgrind over the same N requests, then pic2's ratio to each.
#
# Why beside run.sh: on this kind of machine (2 shared cores, no hardware counters) req/s
# moves 10-20 % from one minute to the next, and the kernel's part of a proxied request (the
# same four system calls and segments for all three) is three quarters of its CPU. The
# proxies differ in their user-space part, and an instruction count does not depend on the
# neighbours: two runs give the same figures to within a fraction of a percent, so a change
# of 1 % is seen. It is not time (a cache miss costs more than an instruction): run.sh stays
# the judge of req/s and latency.
#
#   bench/proxy/instructions.sh          (N=20000 requests counted, after 800 not counted)
#   PIC2_BIN=/tmp/serve-old bench/proxy/instructions.sh    another build of the serve example
#   CACHE=1 bench/proxy/instructions.sh  adds callgrind's cache and branch simulation: misses
#       per request (first-level instruction and data caches, mispredicted branches). A model,
#       not this CPU, and it runs slower; it shows where an instruction costs more than
#       another (pic2's code is larger than nginx's: about twice its instruction-cache misses)
#
# All traffic on 127.0.0.1, ports 18180-18183; the client is bounded in count.
set -euo pipefail
shopt -s inherit_errexit # count() runs in $(…): a failed client must fail the run
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
N=${N:-20000}
for c in nginx haproxy valgrind callgrind_control callgrind_annotate python3 curl; do
    command -v "$c" >/dev/null || { echo "missing $c: run dev/packages.sh" >&2; exit 1; }
done
if [[ -n ${PIC2_BIN:-} ]]; then # another build of the serve example, to compare two
    PIC2=$PIC2_BIN
else
    PIC2="$ROOT/target/release/examples/serve"
    cargo build -q --release -p pic2-proxy --example serve --manifest-path "$ROOT/Cargo.toml"
fi
SIM=(); [[ ${CACHE:-0} != 1 ]] || SIM=(--cache-sim=yes --branch-sim=yes)
W=$(mktemp -d /tmp/pic2-bench-insn.XXXXXX)
chmod 755 "$W"
PIDS=()
# count() runs in a subshell: its proxies' pids come back through a file
cleanup() {
    [[ -f $W/pids ]] && mapfile -t -O "${#PIDS[@]}" PIDS <"$W/pids"
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT

python3 -c 'import sys; open(sys.argv[1] + "/1k", "w").write("x" * 1024)' "$W"
mkdir -p "$W/tmp"
TEMPS="client_body_temp_path $W/tmp/b; proxy_temp_path $W/tmp/p; fastcgi_temp_path $W/tmp/f; uwsgi_temp_path $W/tmp/u; scgi_temp_path $W/tmp/s;"
cat >"$W/backend.conf" <<EOC
worker_processes 1; pid $W/backend.pid; error_log $W/backend.err; daemon off;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 120s; $TEMPS
  server { listen 127.0.0.1:18180; root $W; location / { } } }
EOC
nginx -c "$W/backend.conf" -p "$W" & PIDS+=($!)

# the three proxies, configured as in run.sh, one worker each, not started yet
cat >"$W/nginx.conf" <<EOC
worker_processes 1; master_process off; pid $W/nginx.pid; error_log $W/nginx.err; daemon off;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000; $TEMPS
  upstream be { server 127.0.0.1:18180; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:18182; server_name bench.test;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme; } } }
EOC
cat >"$W/haproxy.cfg" <<EOC
global
  maxconn 1024
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend f
  bind 127.0.0.1:18183
  default_backend b
backend b
  server s1 127.0.0.1:18180
EOC
python3 -c 'import json, sys; json.dump({"version": 1, "settings": {"listen_http": "127.0.0.1:18181", "listen_https": None, "state_dir": sys.argv[1] + "/state", "metrics_listen": None}, "sites": [{"name": "bench.test", "hosts": ["bench.test"], "backend": "127.0.0.1:18180", "tls": {"mode": "none"}}]}, open(sys.argv[1] + "/routes.json", "w"))' "$W"

# N requests on 8 keep-alive connections, in lockstep; each answer read whole (its length)
cat >"$W/client.py" <<'EOC'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
req = b"GET /1k HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
conns = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(8)]
done = 0
while done < n:
    for s in conns:
        s.sendall(req)
    for s in conns:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                sys.exit("the proxy closed the connection")
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            sys.exit("not 200: %r" % head[:80])
        length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:"))
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                sys.exit("the proxy closed the connection mid-answer")
            body += chunk
    done += len(conns)
EOC

# count NAME PORT COMMAND...: Ir per request of COMMAND while it serves N requests (with
# CACHE=1: then I1 misses, D1 misses read + write, mispredicted branches, per request)
count() {
    local name=$1 port=$2; shift 2
    valgrind --tool=callgrind --callgrind-out-file="$W/$name.out" --instr-atstart=no "${SIM[@]}" "$@" \
        >"$W/$name.log" 2>&1 & local pid=$!
    echo "$pid" >>"$W/pids"
    for _ in $(seq 150); do
        curl -s -m 2 -o /dev/null -H 'Host: bench.test' "http://127.0.0.1:$port/1k" && break; sleep 0.2
    done
    timeout 120 python3 "$W/client.py" "$port" 800 # warm-up, not counted
    callgrind_control -i on "$pid" >/dev/null 2>&1
    timeout 600 python3 "$W/client.py" "$port" "$N"
    callgrind_control -i off "$pid" >/dev/null 2>&1
    kill "$pid"; wait "$pid" 2>/dev/null || true
    # reaped: its pid may be another process's by the end, which cleanup must not kill
    sed -i "/^$pid\$/d" "$W/pids"
    # the totals line holds one figure per event, in the order of "Events shown"
    callgrind_annotate --show-percs=no "$W/$name.out" 2>/dev/null |
        awk -v n="$N" '/^Events shown:/ { for (i = 3; i <= NF; i++) ev[i - 2] = $i }
            /PROGRAM TOTALS/ { for (i = 1; i in ev; i++) { gsub(",", "", $i); v[ev[i]] = $i / n }
                if (("D1mr" in v)) printf "%.0f %.0f %.0f %.0f\n", v["Ir"], v["I1mr"], v["D1mr"] + v["D1mw"], v["Bcm"] + v["Bim"]
                else printf "%.0f\n", v["Ir"] }'
}

printf '\nbench/proxy/instructions.sh: user-space instructions per HTTP/1.1 request (1 KB), %s requests on 8 keep-alive connections, one worker each (callgrind)\n\n' "$N"
pic2=$(WORKERS=1 count pic2 18181 "$PIC2" "$W/routes.json")
nginx=$(count nginx 18182 nginx -c "$W/nginx.conf" -p "$W")
haproxy=$(count haproxy 18183 haproxy -f "$W/haproxy.cfg" -db)
if [[ ${CACHE:-0} == 1 ]]; then
    printf '%-8s %12s %14s %10s %10s %12s\n' proxy "Ir/request" "pic2 / proxy" "I1 misses" "D1 misses" "mispredicts"
else
    printf '%-8s %12s %14s\n' proxy "Ir/request" "pic2 / proxy"
fi
for p in pic2 nginx haproxy; do
    read -r ir rest <<<"${!p}"
    printf '%-8s %12s %14s' "$p" "$ir" "$(awk -v a="${pic2%% *}" -v b="$ir" 'BEGIN { printf "%.2f", a / b }')"
    if [[ ${CACHE:-0} == 1 ]]; then read -r i1 d1 br <<<"$rest"; printf ' %10s %10s %12s' "$i1" "$d1" "$br"; fi
    printf '\n'
done
