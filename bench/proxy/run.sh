#!/usr/bin/env bash
# bench/proxy/run.sh: pic2 proxy against nginx, HAProxy and Caddy (Debian's), same backend,
# same run. Prints req/s, p50, p99 and RSS per proxy and pic2's ratio to each; then pic2 with
# 10 vs 10,000 routes, and errors during 100 reloads under load. Prints, never asserts.
#
#   bench/proxy/run.sh            (DURATION=5 CONNS=64 to change the load)
#
# All traffic on 127.0.0.1, ports 18080-18099 and 18443-18449; every loop is bounded.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DUR=${DURATION:-5}
CONNS=${CONNS:-64}
W=$(mktemp -d /tmp/pic2-bench-proxy.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
for c in nginx haproxy caddy wrk h2load openssl curl; do
    command -v "$c" >/dev/null || { echo "missing $c: run dev/packages.sh" >&2; exit 1; }
done
PIC2="$ROOT/target/release/examples/serve"
cargo build -q --release -p pic2-proxy --example serve --manifest-path "$ROOT/Cargo.toml" ||
    { [[ -x $PIC2 ]] && echo "build failed: using the existing $PIC2" >&2; } || exit 1

python3 -c 'import sys; [open(sys.argv[1] + "/" + n, "w").write("x" * s) for n, s in (("1k", 1024), ("100k", 102400))]' "$W"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=bench.test \
    -addext subjectAltName=DNS:bench.test -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
cat "$W/cert.pem" "$W/key.pem" >"$W/both.pem"

wait_port() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; echo "port $1 not up" >&2; return 1; }

# the backend: nginx serving the two files, 1 worker
cat >"$W/backend.conf" <<EOC
worker_processes 1; pid $W/backend.pid; error_log $W/backend.err; daemon off;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000;
  server { listen 127.0.0.1:18080; root $W; location / { } } }
EOC
nginx -c "$W/backend.conf" -p "$W" & PIDS+=($!)
wait_port 18080

# nginx as proxy (upstream keep-alive), 1 worker like the others' default footprint
cat >"$W/nginx.conf" <<EOC
worker_processes 1; pid $W/nginx.pid; error_log $W/nginx.err; daemon off;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 100000;
  upstream be { server 127.0.0.1:18080; keepalive 256; }
  server { listen 127.0.0.1:18082; listen 127.0.0.1:18442 ssl http2; server_name bench.test;
    ssl_certificate $W/cert.pem; ssl_certificate_key $W/key.pem;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$remote_addr; } } }
EOC
nginx -c "$W/nginx.conf" -p "$W" & PIDS+=($!)

cat >"$W/haproxy.cfg" <<EOC
global
  maxconn 4096
  nbthread 2
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option forwardfor
  http-reuse always
frontend f
  bind 127.0.0.1:18083
  bind 127.0.0.1:18443 ssl crt $W/both.pem alpn h2,http/1.1
  default_backend b
backend b
  server s1 127.0.0.1:18080
EOC
haproxy -f "$W/haproxy.cfg" -db & PIDS+=($!)

cat >"$W/Caddyfile" <<EOC
{
  admin off
  auto_https off
  servers { protocols h1 h2 }
}
http://bench.test:18084, http://127.0.0.1:18084 {
  reverse_proxy 127.0.0.1:18080
}
https://bench.test:18444 {
  tls $W/cert.pem $W/key.pem
  reverse_proxy 127.0.0.1:18080
}
EOC
XDG_DATA_HOME=$W XDG_CONFIG_HOME=$W caddy run --config "$W/Caddyfile" --adapter caddyfile >"$W/caddy.log" 2>&1 & PIDS+=($!)

routes() { # routes N FILE: N sites, bench.test among them
    python3 - "$1" "$2" "$W" <<'EOP'
import json, sys
n, out, w = int(sys.argv[1]), sys.argv[2], sys.argv[3]
sites = [{"name": "bench.test", "hosts": ["bench.test", "127.0.0.1"], "backend": "127.0.0.1:18080",
          "tls": {"mode": "files", "cert": w + "/cert.pem", "key": w + "/key.pem"}}]
sites += [{"name": f"s{i}.test", "hosts": [f"s{i}.test", f"www.s{i}.test"], "backend": "127.0.0.1:18080",
           "tls": {"mode": "none"}} for i in range(n - 1)]
json.dump({"version": 1, "settings": {"listen_http": "127.0.0.1:18081", "listen_https": "127.0.0.1:18441",
           "state_dir": w + "/state", "metrics_listen": None}, "sites": sites}, open(out, "w"))
EOP
}
start_pic2() { # start_pic2 N
    routes "$1" "$W/routes.json"
    "$PIC2" "$W/routes.json" 2>"$W/pic2.log" & PIC2_PID=$!
    PIDS+=($PIC2_PID)
    wait_port 18081
}
stop_pic2() { kill "$PIC2_PID"; wait "$PIC2_PID" 2>/dev/null || true; }
start_pic2 10
wait_port 18082; wait_port 18083
for _ in $(seq 50); do curl -s -o /dev/null -H 'Host: bench.test' http://127.0.0.1:18084/1k && break; sleep 0.1; done

rss_of() { # total RSS (MB) of a process and its children
    local pids; pids=$(pgrep -P "$1" 2>/dev/null || true)
    local kb=0 p
    for p in "$1" $pids; do kb=$((kb + $(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done
    awk -v k="$kb" 'BEGIN {printf "%.1f", k/1024}'
}
wrk_run() { # wrk_run PORT PATH -> "reqs p50ms p99ms errors"
    wrk -t2 -c"$CONNS" -d"${DUR}s" --latency -H 'Host: bench.test' "http://127.0.0.1:$1$2" >"$W/wrk.out" 2>&1 || true
    awk '/Requests\/sec/ {r=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
         /Non-2xx/ {e+=$NF} /Socket errors/ {gsub(",","");e+=$4+$6+$8+$10}
         END {printf "%s %s %s %d\n", r, p50, p99, e}' "$W/wrk.out"
}
ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) {sub("us","",v); print v/1000} else if (v ~ /ms$/) {sub("ms","",v); print v+0} else if (v ~ /s$/) {sub("s","",v); print v*1000} else print v }'; }
h2_run() { # h2_run PORT -> "reqs p50ms(mean) p99(max)"
    h2load -n $((20000 * DUR / 5)) -c 32 -m 10 --connect-to=127.0.0.1:"$1" "https://bench.test:$1/1k" >"$W/h2.out" 2>&1 || true
    awk '/finished in/ {r=$(NF-2)} /^time for request:/ {mean=$6; max=$5} /^requests:/ {e=$10+$12}
         END {printf "%s %s %s %d\n", r, mean, max, e}' "$W/h2.out"
}

declare -A PORT=([pic2]=18081 [nginx]=18082 [haproxy]=18083 [caddy]=18084)
declare -A TLSPORT=([pic2]=18441 [nginx]=18442 [haproxy]=18443 [caddy]=18444)
pid_of() { case $1 in pic2) echo "$PIC2_PID" ;; nginx) cat "$W/nginx.pid" ;; haproxy) pgrep -n -x haproxy ;; caddy) pgrep -n -x caddy ;; esac; }

printf '\nbench/proxy: %s s per run, %s connections, 2 wrk threads; backend nginx on 127.0.0.1:18080\n\n' "$DUR" "$CONNS"
printf '%-8s %-22s %10s %9s %9s %6s %8s\n' proxy test req/s p50_ms p99_ms errors rss_MB
declare -A RPS
for p in pic2 nginx haproxy caddy; do
    for body in 1k 100k; do
        read -r r p50 p99 e < <(wrk_run "${PORT[$p]}" "/$body")
        RPS[$p.$body]=$r
        printf '%-8s %-22s %10s %9s %9s %6s %8s\n' "$p" "wrk h1 $body" "$r" "$(ms "$p50")" "$(ms "$p99")" "$e" "$(rss_of "$(pid_of "$p")")"
    done
    read -r r mean max e < <(h2_run "${TLSPORT[$p]}")
    RPS[$p.h2]=$r
    printf '%-8s %-22s %10s %9s %9s %6s %8s\n' "$p" "h2load h2/TLS 1k" "$r" "mean $mean" "max $max" "$e" "$(rss_of "$(pid_of "$p")")"
done
printf '\npic2 req/s ratio to each peer (>1: pic2 faster)\n'
for p in nginx haproxy caddy; do
    for t in 1k 100k h2; do
        printf '  vs %-8s %-5s %s\n' "$p" "$t" "$(awk -v a="${RPS[pic2.$t]}" -v b="${RPS[$p.$t]}" 'BEGIN { if (b > 0) printf "%.2f", a/b; else print "n/a" }')"
    done
done

stop_pic2
start_pic2 10000
read -r r10k _ _ _ < <(wrk_run 18081 /1k)
printf '\npic2 with 10,000 routes: %s req/s; ratio to 10 routes: %s\n' "$r10k" \
    "$(awk -v a="$r10k" -v b="${RPS[pic2.1k]}" 'BEGIN { if (b > 0) printf "%.3f", a/b }')"

# 100 reloads (SIGHUP) under load
wrk -t2 -c"$CONNS" -d"$((DUR + 6))s" -H 'Host: bench.test' http://127.0.0.1:18081/1k >"$W/wrk-reload.out" 2>&1 &
WRK=$!
sleep 1
for _ in $(seq 100); do kill -HUP "$PIC2_PID"; sleep 0.05; done
wait "$WRK" || true
awk '/Requests\/sec/ {r=$2} /Non-2xx/ {e+=$NF} /Socket errors/ {gsub(",","");e+=$4+$6+$8+$10}
     END {printf "100 SIGHUP reloads under load (10,000 routes): %s req/s, %d errors\n", r, e}' "$W/wrk-reload.out"
grep -c reloaded "$W/pic2.log" | xargs printf '  reloads logged by pic2: %s\n'
