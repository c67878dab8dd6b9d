#!/usr/bin/env bash
# bench/proxy/run.sh: pic2 proxy against nginx, HAProxy and Caddy (Debian's), one backend,
# same Host, same run. Each peer is checked with curl first (200, full body, HTTP/1.1 on the
# plain port, HTTP/2 over TLS on the TLS port); a peer that fails the check is not measured.
# Prints req/s, p50, p99, errors (wrk: socket errors + status >= 400 + short bodies, so a 3xx
# counts too; h2load: every request without a 2xx), backend connections opened (upstream
# keep-alive shows as a handful), the proxy's CPU time per request (user + system of its
# processes and threads, from /proc: steadier than req/s on a shared machine), RSS, and
# pic2's ratio to each peer; a row with errors is marked INVALID and left out of the ratios
# and the targets. The peers take turns, ROUNDS times (one run each per test and round, the
# order turned by one each round), and each figure is the median of its rounds: on a shared
# machine one run apiece lets the noise decide. pic2's ratios to each peer are the median of
# the rounds' own ratios (pic2's run over the peer's, same round), with their range; then the
# issue's targets, met or not, each judged on pic2's least favourable ratio. Then pic2 with
# 10 vs 10,000 routes (alternated, each first in turn, ROUTE_ROUNDS=5 times each, the median
# of the rounds' ratios), and errors during 100 reloads under load. Prints, never asserts.
#
#   bench/proxy/run.sh            (DURATION=5 CONNS=64 ROUNDS=3 to change the load)
#   CPUS=1 bench/proxy/run.sh     the production host's shape: everything (load generators and
#       backend included) on the first CPUS cores, each proxy with CPUS workers/threads
#   PINGORA_BIN=/tmp/pingora-spike/target/release/pingora-spike bench/proxy/run.sh
#       adds a Pingora prototype as a fifth peer: started as `$PINGORA_BIN CERT KEY`, it must
#       serve bench.test on 127.0.0.1:18085 (plain) and :18445 (TLS, h2); see README.md
#
# All traffic on 127.0.0.1, ports 18080-18099 and 18441-18449; every loop is bounded.
set -euo pipefail
NPROC=$(nproc)
CPUS=${CPUS:-$NPROC}
[[ $CPUS =~ ^[1-9][0-9]*$ && $CPUS -le $NPROC ]] || { echo "CPUS must be 1 to $NPROC, not '$CPUS'" >&2; exit 2; }
if [[ $CPUS -lt $NPROC && -z ${PIC2_BENCH_PINNED:-} ]]; then # every child inherits the CPU set
    command -v taskset >/dev/null || { echo "missing taskset (util-linux)" >&2; exit 1; }
    PIC2_BENCH_PINNED=1 exec taskset -c "0-$((CPUS - 1))" bash "$0" "$@"
fi
export WORKERS=$CPUS GOMAXPROCS=$CPUS # pic2's serving threads, Caddy's
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DUR=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
W=$(mktemp -d /tmp/pic2-bench-proxy.XXXXXX)
chmod 755 "$W" # nginx's workers (nobody) read the files and the temp folders
PIDS=()
cleanup() { [[ -z ${PINGORA_PID:-} ]] || kill -INT "$PINGORA_PID" 2>/dev/null || true # Pingora: INT = fast stop
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
for c in nginx haproxy caddy wrk h2load openssl curl python3; do
    command -v "$c" >/dev/null || { echo "missing $c: run dev/packages.sh" >&2; exit 1; }
done
PIC2="$ROOT/target/release/examples/serve"
cargo build -q --release -p pic2-proxy --example serve --manifest-path "$ROOT/Cargo.toml" ||
    { [[ -x $PIC2 ]] && echo "build failed: using the existing $PIC2" >&2; } || exit 1

python3 -c 'import sys; [open(sys.argv[1] + "/" + n, "w").write("x" * s) for n, s in (("1k", 1024), ("100k", 102400))]' "$W"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=bench.test \
    -addext subjectAltName=DNS:bench.test -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
chmod 644 "$W/key.pem" # a throwaway key; Caddy reads it as root, nginx's master too
cat "$W/cert.pem" "$W/key.pem" >"$W/both.pem"

wait_port() { for _ in $(seq 100); do curl -s -m 2 -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; echo "port $1 not up" >&2; return 1; }
wait_tls() { for _ in $(seq 100); do curl -sk -m 2 -o /dev/null --resolve "bench.test:$1:127.0.0.1" "https://bench.test:$1/" && return 0; sleep 0.1; done; echo "port $1 not up" >&2; return 1; }

# the backend: nginx serving the two files, 1 worker; /status counts its accepted connections
mkdir -p "$W/tmp"
NGINX_TEMPS="client_body_temp_path $W/tmp/body; proxy_temp_path $W/tmp/proxy; fastcgi_temp_path $W/tmp/fcgi; uwsgi_temp_path $W/tmp/uwsgi; scgi_temp_path $W/tmp/scgi;"
cat >"$W/backend.conf" <<EOC
worker_processes 1; pid $W/backend.pid; error_log $W/backend.err; daemon off;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 120s; $NGINX_TEMPS
  server { listen 127.0.0.1:18080; root $W; location / { } location = /status { stub_status; } } }
EOC
nginx -c "$W/backend.conf" -p "$W" & PIDS+=($!)
wait_port 18080
be_accepts() { curl -s -m 5 http://127.0.0.1:18080/status | awk '/^ *[0-9]+ +[0-9]+ +[0-9]+/ {print $1; exit}'; }

# Every proxy: CPUS cores, all by default (nginx CPUS workers, HAProxy CPUS threads, Caddy/Go and
# pic2/tokio one thread per core), upstream keep-alive, X-Forwarded-For, no access log, HTTP/1.1 on the plain
# port, TLS (same certificate, ALPN h2) on the TLS port.
cat >"$W/nginx.conf" <<EOC
worker_processes $CPUS; pid $W/nginx.pid; error_log $W/nginx.err; daemon off;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; $NGINX_TEMPS
  upstream be { server 127.0.0.1:18080; keepalive 512; keepalive_requests 1000000; }
  server { listen 127.0.0.1:18082; listen 127.0.0.1:18442 ssl http2; server_name bench.test;
    ssl_certificate $W/cert.pem; ssl_certificate_key $W/key.pem;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme; } } }
EOC
nginx -c "$W/nginx.conf" -p "$W" & NGINX_PID=$!
PIDS+=($NGINX_PID)

cat >"$W/haproxy.cfg" <<EOC
global
  maxconn 8192
  nbthread $CPUS
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 30s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend f
  bind 127.0.0.1:18083
  bind 127.0.0.1:18443 ssl crt $W/both.pem alpn h2,http/1.1
  default_backend b
backend b
  server s1 127.0.0.1:18080
EOC
haproxy -f "$W/haproxy.cfg" -db >"$W/haproxy.log" 2>&1 & HAPROXY_PID=$!
PIDS+=($HAPROXY_PID)

# Caddy 2.6 (Debian): no admin endpoint, no automatic HTTPS, the certificate from files.
cat >"$W/Caddyfile" <<EOC
{
	admin off
	auto_https off
	storage file_system $W/caddy
	servers {
		protocols h1 h2
	}
}
http://:18084 {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:18080 {
		transport http {
			keepalive 120s
			keepalive_idle_conns 512
			keepalive_idle_conns_per_host 512
		}
	}
}
https://bench.test:18444 {
	bind 127.0.0.1
	tls $W/cert.pem $W/key.pem
	reverse_proxy 127.0.0.1:18080 {
		transport http {
			keepalive 120s
			keepalive_idle_conns 512
			keepalive_idle_conns_per_host 512
		}
	}
}
EOC
caddy validate --config "$W/Caddyfile" --adapter caddyfile >"$W/caddy-validate.log" 2>&1 ||
    { echo "caddy validate failed:" >&2; tail -5 "$W/caddy-validate.log" >&2; }
HOME=$W XDG_DATA_HOME=$W XDG_CONFIG_HOME=$W caddy run --config "$W/Caddyfile" --adapter caddyfile >"$W/caddy.log" 2>&1 & CADDY_PID=$!
PIDS+=($CADDY_PID)

PEERS=(pic2 nginx haproxy caddy)
if [[ -n ${PINGORA_BIN:-} ]]; then
    "$PINGORA_BIN" "$W/cert.pem" "$W/key.pem" >"$W/pingora.log" 2>&1 & PINGORA_PID=$!
    PIDS+=($PINGORA_PID)
    PEERS+=(pingora)
fi

routes() { # routes N TLS FILE: N sites, bench.test among them; TLS=files: bench.test over TLS only
    python3 - "$1" "$2" "$3" "$W" <<'EOP'
import json, sys
n, tls, out, w = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
t = {"mode": "files", "cert": w + "/cert.pem", "key": w + "/key.pem"} if tls == "files" else {"mode": "none"}
sites = [{"name": "bench.test", "hosts": ["bench.test"], "backend": "127.0.0.1:18080", "tls": t}]
sites += [{"name": f"s{i}.test", "hosts": [f"s{i}.test", f"www.s{i}.test"], "backend": "127.0.0.1:18080",
           "tls": {"mode": "none"}} for i in range(n - 1)]
http, https = ("127.0.0.1:18081", None) if tls == "none" else (None, "127.0.0.1:18441")
json.dump({"version": 1, "settings": {"listen_http": http, "listen_https": https,
           "state_dir": w + "/state", "metrics_listen": None}, "sites": sites}, open(out, "w"))
EOP
}
# pic2 sends plain HTTP to https for a site with a certificate (as it must in production), so
# the plain-HTTP rows run an instance whose bench.test has no TLS, the h2 row one with TLS only.
PIC2_PID=
start_pic2() { # start_pic2 N none|files: PIC2_PID serves it (plain on 18081, TLS on 18441)
    routes "$1" "$2" "$W/routes-$2.json"
    "$PIC2" "$W/routes-$2.json" 2>>"$W/pic2.log" & PIC2_PID=$!
    PIDS+=($PIC2_PID)
    if [[ $2 == none ]]; then wait_port 18081; else wait_tls 18441; fi
}
stop_pic2() { [[ -n $PIC2_PID ]] && { kill "$PIC2_PID" 2>/dev/null; wait "$PIC2_PID" 2>/dev/null || true; PIC2_PID=; }; }

wait_port 18082; wait_port 18083; wait_port 18084 || { echo "caddy log:" >&2; tail -5 "$W/caddy.log" >&2; }
[[ -z ${PINGORA_PID:-} ]] || wait_port 18085 || true

rss_of() { # total RSS (MB) of a process and its children
    local pids; pids=$(pgrep -P "$1" 2>/dev/null || true)
    local kb=0 p
    for p in "$1" $pids; do kb=$((kb + $(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done
    awk -v k="$kb" 'BEGIN {printf "%.1f", k/1024}'
}

cpu_ticks() { # "USER SYSTEM" CPU time (clock ticks) of a process, its threads and children
    local pids; pids=$(pgrep -P "$1" 2>/dev/null || true)
    local u=0 s=0 p a b
    for p in "$1" $pids; do
        read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat" 2>/dev/null || echo 0 0)
        u=$((u + a)); s=$((s + b))
    done
    echo "$u $s"
}
per_req() { awk -v t="$1" -v hz="$TICK" -v n="$2" 'BEGIN { if (n > 0) printf "%.2f", t / hz * 1e6 / n; else printf "-" }'; } # per_req TICKS N -> µs, or -
TICK=$(getconf CLK_TCK)

# wrk's own summary, exact: requests, bytes, every error class, latency percentiles (µs)
cat >"$W/count.lua" <<'EOL'
done = function(s, lat, req)
  local e = s.errors
  io.write(string.format("RESULT %d %d %d %d %.0f %.0f\n", s.requests, s.bytes,
    e.connect + e.read + e.write + e.timeout, e.status, lat:percentile(50), lat:percentile(99)))
  io.write(string.format("DURATION %d\n", s.duration))
end
EOL
wrk_run() { # wrk_run PORT PATH BODYBYTES [SECONDS] -> "req/s p50ms p99ms errors requests"
    wrk -t2 -c"$CONNS" -d"${4:-$DUR}s" --latency -s "$W/count.lua" -H 'Host: bench.test' \
        "http://127.0.0.1:$1$2" >"$W/wrk.out" 2>&1 || true
    awk -v body="$3" '/^RESULT/ {n=$2; b=$3; sock=$4; st=$5; p50=$6; p99=$7} /^DURATION/ {d=$2}
        END { short = (n > 0 && b / n < body) ? n : 0   # answers smaller than the file: not it
              if (d > 0) printf "%.0f %.2f %.2f %d %d\n", n * 1e6 / d, p50 / 1000, p99 / 1000, sock + st + short, n
              else print "0 - - 1 0" }' "$W/wrk.out"
}
h2_run() { # h2_run PORT -> "req/s p50ms p99ms errors requests"
    rm -f "$W/h2.log"
    local n=$((20000 * DUR)) # a count, not -D: h2load 1.52's duration mode under-loads and cuts streams
    timeout $((DUR * 10 + 30)) h2load -n "$n" -c 32 -m 10 -t 1 --connect-to=127.0.0.1:"$1" --log-file="$W/h2.log" \
        "https://bench.test:$1/1k" >"$W/h2.out" 2>&1 || true
    grep -qi 'application protocol: h2' "$W/h2.out" || { echo "0 - - $n 0"; return; }
    local rps ok
    rps=$(awk '/^finished in/ {print $4}' "$W/h2.out")
    ok=$(awk '/^status codes:/ {print $3}' "$W/h2.out")
    sort -n -k3,3 "$W/h2.log" | awk -v n="${n:-1}" -v ok="${ok:-0}" -v rps="${rps:-0}" \
        '{ t[NR] = $3 } END { if (NR == 0) { print "0 - - " n " 0"; exit }
          printf "%.0f %.2f %.2f %d %d\n", rps, t[int(NR * 0.50) + 1] / 1000, t[int(NR * 0.99)] / 1000, n - ok, NR }'
}

declare -A PORT=([pic2]=18081 [nginx]=18082 [haproxy]=18083 [caddy]=18084 [pingora]=18085)
declare -A TLSPORT=([pic2]=18441 [nginx]=18442 [haproxy]=18443 [caddy]=18444 [pingora]=18445)
# pic2's two instances run side by side (the idle one costs nothing): PIC2_PLAIN, PIC2_TLS
start_pic2 10 files; PIC2_TLS=$PIC2_PID
start_pic2 10 none; PIC2_PLAIN=$PIC2_PID
PIC2_PID=
pid_of() { # pid_of PEER TEST
    case $1 in pic2) if [[ $2 == h2 ]]; then echo "$PIC2_TLS"; else echo "$PIC2_PLAIN"; fi ;;
    nginx) echo "$NGINX_PID" ;; haproxy) echo "$HAPROXY_PID" ;; caddy) echo "$CADDY_PID" ;; pingora) echo "$PINGORA_PID" ;; esac
}

check() { # check PEER: 200 + the whole file over HTTP/1.1 (plain) and HTTP/2 (TLS)
    local a b
    a=$(curl -s -m 10 -o /dev/null -w '%{http_code} %{size_download} %{http_version}' -H 'Host: bench.test' \
        "http://127.0.0.1:${PORT[$1]}/100k" || true)
    b=$(curl -s -m 10 -o /dev/null -w '%{http_code} %{size_download} %{http_version}' --http2 --cacert "$W/cert.pem" \
        --resolve "bench.test:${TLSPORT[$1]}:127.0.0.1" "https://bench.test:${TLSPORT[$1]}/1k" || true)
    printf '  check %-8s plain: %-16s tls: %s\n' "$1" "$a" "$b" >&2
    [[ $a == "200 102400 1.1" && $b == "200 1024 2" ]]
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf '\nbench/proxy: %s s per run, %s rounds (medians), %s connections, wrk 2 threads; h2load 32 connections x 10 streams; backend nginx on 127.0.0.1:18080; %s cores, each proxy %s workers\n' "$DUR" "$ROUNDS" "$CONNS" "$CPUS" "$CPUS"
printf 'caddy %s, nginx %s, %s\n\n' "$(caddy version | cut -d' ' -f1)" "$(nginx -v 2>&1 | cut -d/ -f2)" "$(haproxy -v | head -1 | cut -d' ' -f1-3)"
ROW='%-8s %-18s %10s %8s %8s %10s %8s %7s %8s %7s %s\n'
declare -A OK RPS P50 P99 CPU USR ERR CONNS RSS VALID # each a list of rounds, but ERR and CONNS (sums)
for p in "${PEERS[@]}"; do OK[$p]=$(check "$p" && echo 1 || echo 0); done
for round in $(seq "$ROUNDS"); do
    # the order turns each round: no peer always runs first, or right after the same one
    k=$(((round - 1) % ${#PEERS[@]}))
    ORDER=("${PEERS[@]:k}" "${PEERS[@]:0:k}")
    for t in 1k 100k h2; do
        for p in "${ORDER[@]}"; do
            [[ ${OK[$p]} == 1 ]] || continue
            before=$(be_accepts)
            read -r u0 s0 < <(cpu_ticks "$(pid_of "$p" "$t")")
            case $t in
            1k) read -r r p50 p99 e n < <(wrk_run "${PORT[$p]}" /1k 1024) ;;
            100k) read -r r p50 p99 e n < <(wrk_run "${PORT[$p]}" /100k 102400) ;;
            h2) read -r r p50 p99 e n < <(h2_run "${TLSPORT[$p]}") ;;
            esac
            read -r u1 s1 < <(cpu_ticks "$(pid_of "$p" "$t")")
            k=$p.$t
            RPS[$k]+="$r "; P50[$k]+="$p50 "; P99[$k]+="$p99 "
            CPU[$k]+="$(per_req $((u1 - u0 + s1 - s0)) "$n") "; USR[$k]+="$(per_req $((u1 - u0)) "$n") "
            ERR[$k]=$((${ERR[$k]:-0} + e)); CONNS[$k]=$((${CONNS[$k]:-0} + $(be_accepts) - before - 1))
            RSS[$k]+="$(rss_of "$(pid_of "$p" "$t")") "
        done
    done
    printf '  round %s of %s done\n' "$round" "$ROUNDS" >&2
done
printf "$ROW" proxy test req/s p50_ms p99_ms cpu_us/req user_us errors be_conns rss_MB ""
declare -A NAME=([1k]="wrk h1 1k" [100k]="wrk h1 100k" [h2]="h2load h2/TLS 1k")
for t in 1k 100k h2; do
    for p in "${PEERS[@]}"; do
        k=$p.$t
        if [[ ${OK[$p]} != 1 ]]; then printf "$ROW" "$p" "${NAME[$t]}" - - - - - - - - "INVALID: failed the curl check"; VALID[$k]=0; continue; fi
        VALID[$k]=$([[ ${ERR[$k]} == 0 ]] && echo 1 || echo 0)
        printf "$ROW" "$p" "${NAME[$t]}" "$(printf %.0f "$(median <<<"${RPS[$k]}")")" "$(median <<<"${P50[$k]}")" \
            "$(median <<<"${P99[$k]}")" "$(median <<<"${CPU[$k]}")" \
            "$(median <<<"${USR[$k]}")" "${ERR[$k]}" \
            "${CONNS[$k]}" "$(median <<<"${RSS[$k]}")" "$([[ ${ERR[$k]} == 0 ]] || echo INVALID)"
    done
done
# Each round's pic2 / peer ratio, from runs of the same round (at most a few runs apart): the
# machine's speed drifts between rounds (10-20 %), so a ratio within a round is steadier than
# the ratio of medians. Printed as the median of the rounds' ratios and their range.
paired() { # paired "A1 A2 ..." "B1 B2 ..." [DIGITS]: "MEDIAN MIN MAX" of A_i / B_i, or "n/a"
    awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { n = split(a, x, " "); split(b, y, " "); m = 0
        for (i = 1; i <= n; i++) if (y[i] + 0 > 0 && x[i] != "-") r[++m] = x[i] / y[i]
        if (m == 0) { print "n/a"; exit }
        for (i = 2; i <= m; i++) { v = r[i]; for (j = i - 1; j >= 1 && r[j] > v; j--) r[j + 1] = r[j]; r[j + 1] = v }
        med = (m % 2) ? r[(m + 1) / 2] : (r[m / 2] + r[m / 2 + 1]) / 2
        f = "%." d "f"; printf f " " f " " f "\n", med, r[1], r[m] }'
}
shown() { [[ $1 == n/a ]] && echo n/a || awk -v m="$1" -v lo="$2" -v hi="$3" 'BEGIN { printf "%.2f (%.2f-%.2f)", m, lo, hi }'; }
is_number() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
further() { awk -v a="$1" -v b="$2" -v dir="$3" 'BEGIN { exit !(dir == "lt" ? a < b : a > b) }'; } # further A B lt|gt
printf '\npic2 / peer, the median of the rounds'"'"' ratios (their range): req/s (>1: pic2 faster), p99 and CPU per request (<1: pic2 lower)\n'
# For the targets below: per test, pic2's least favourable ratio (unrounded), its peer.
declare -A RATIO_RPS RATIO_P99 WORST_R WORST_P
for t in 1k 100k h2; do
    for p in "${PEERS[@]:1}"; do
        if [[ ${VALID[pic2.$t]} != 1 || ${VALID[$p.$t]} != 1 ]]; then
            printf '  %-5s vs %-8s n/a (a row is invalid)\n' "$t" "$p"
            continue
        fi
        RATIO_RPS[$p.$t]=$(paired "${RPS[pic2.$t]}" "${RPS[$p.$t]}" 6)
        RATIO_P99[$p.$t]=$(paired "${P99[pic2.$t]}" "${P99[$p.$t]}" 6)
        printf '  %-5s vs %-8s req/s %-18s p99 %-18s cpu/req %s\n' "$t" "$p" \
            "$(shown ${RATIO_RPS[$p.$t]})" "$(shown ${RATIO_P99[$p.$t]})" \
            "$(shown $(paired "${CPU[pic2.$t]}" "${CPU[$p.$t]}"))"
        r=${RATIO_RPS[$p.$t]%% *} q=${RATIO_P99[$p.$t]%% *}
        is_number "$r" && is_number "$q" || continue
        [[ -n ${WORST_R[$t]:-} ]] && ! further "$r" "${RATIO_RPS[${WORST_R[$t]}.$t]%% *}" lt || WORST_R[$t]=$p
        [[ -n ${WORST_P[$t]:-} ]] && ! further "$q" "${RATIO_P99[${WORST_P[$t]}.$t]%% *}" gt || WORST_P[$t]=$p
    done
done
# issue 4's targets. Against the best peer means against every peer: the verdict takes the
# least favourable of pic2's ratios (the lowest req/s ratio, the highest p99 ratio), unrounded.
verdict() { # verdict MEDIAN EDGE ge|le: met when MEDIAN >= 1 (ge) or <= 1 (le); EDGE the range's other end
    is_number "$1" || { echo "n/a"; return; }
    awk -v r="$1" -v edge="$2" -v want="$3" 'BEGIN { ok = (want == "ge") ? r >= 1 : r <= 1
        some = (want == "ge") ? edge >= 1 : edge <= 1
        print ok ? "met" : (some ? "not met (met in some rounds)" : "not met") }'
}
printf '\ntargets: pic2 at or above every peer in req/s and at or below it in p99 (the least favourable median of the rounds'"'"' ratios)\n'
for t in 1k 100k h2; do
    worst_r=${WORST_R[$t]:-} worst_p=${WORST_P[$t]:-}
    if [[ -z $worst_r ]]; then printf '  %-5s n/a (no valid pair)\n' "$t"; continue; fi
    read -r rm _ rhi <<<"${RATIO_RPS[$worst_r.$t]}"
    read -r pm plo _ <<<"${RATIO_P99[$worst_p.$t]}"
    printf '  %-5s req/s %.3f vs %s: %s;  p99 %.3f vs %s: %s\n' "$t" "$rm" "$worst_r" "$(verdict "$rm" "$rhi" ge)" \
        "$pm" "$worst_p" "$(verdict "$pm" "$plo" le)"
done
for t in 1k 100k h2; do # RSS at or below nginx's
    [[ ${VALID[pic2.$t]} == 1 && ${VALID[nginx.$t]} == 1 ]] || { printf '  %-5s RSS n/a (a row is invalid)\n' "$t"; continue; }
    a=$(median <<<"${RSS[pic2.$t]}"); b=$(median <<<"${RSS[nginx.$t]}")
    printf '  %-5s RSS %s MB vs nginx %s MB: %s\n' "$t" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN { print (a <= b) ? "met" : "not met" }')"
done
PIC2_PID=$PIC2_PLAIN; stop_pic2
PIC2_PID=$PIC2_TLS; stop_pic2

# 10 vs 10,000 routes: alternated, ROUTE_ROUNDS times each (default 5), each first in turn;
# the median of the rounds' 10,000 / 10 ratios (each pair a few seconds apart) and their range
ROUTE_ROUNDS=${ROUTE_ROUNDS:-5}
R10= R10K= RERR=0
for round in $(seq "$ROUTE_ROUNDS"); do
    pair="10 10000"; ((round % 2)) || pair="10000 10" # each first in turn
    for n in $pair; do
        start_pic2 "$n" none
        read -r r _ _ e _ < <(wrk_run 18081 /1k 1024)
        stop_pic2
        RERR=$((RERR + e))
        if [[ $n == 10 ]]; then R10+="$r "; else R10K+="$r "; fi
        printf '  routes %5s, round %s: %s req/s, %s errors\n' "$n" "$round" "$r" "$e"
    done
done
read -r rm rlo rhi <<<"$(paired "$R10K" "$R10" 3)"
if ! is_number "$rm"; then
    route_verdict="n/a (no run answered)"
elif ((RERR > 0)); then
    route_verdict="not met ($RERR errors)"
else
    route_verdict=$(awk -v r="$rm" 'BEGIN { print (r >= 0.95) ? "met (>= 0.95)" : "not met (< 0.95)" }')
fi
printf 'pic2 with 10,000 routes: %s req/s, with 10: %s req/s (medians); ratio %s (rounds %s-%s): %s\n' \
    "$(median <<<"$R10K")" "$(median <<<"$R10")" "$rm" "${rlo:--}" "${rhi:--}" "$route_verdict"

# 100 reloads (SIGHUP) under load, 10,000 routes
start_pic2 10000 none
: >"$W/pic2.log"
RELOAD_START=$(date +%s.%N)
wrk -t2 -c"$CONNS" -d"$((DUR + 12))s" --latency -s "$W/count.lua" -H 'Host: bench.test' \
    http://127.0.0.1:18081/1k >"$W/wrk.out" 2>&1 &
WRK=$!
sleep 1
for i in $(seq 100); do # one SIGHUP at a time, the next once pic2 has logged this reload
    kill -HUP "$PIC2_PID"
    for _ in $(seq 100); do (($(grep -c reloaded "$W/pic2.log" || true) >= i)) && break; sleep 0.01; done
done
RELOAD_END=$(date +%s.%N)
wait "$WRK" || true
RELOADS=$(grep -c reloaded "$W/pic2.log" || true)
awk -v reloads="$RELOADS" '/^RESULT/ {n=$2; b=$3; e=$4+$5; short=(n > 0 && b / n < 1024) ? n : 0} /^DURATION/ {d=$2}
     END {printf "100 SIGHUP reloads under load (10,000 routes): %d requests, %.0f req/s, %d errors: %s\n", n, (d > 0) ? n*1e6/d : 0, e+short,
          (n > 0 && e+short == 0 && reloads == 100) ? "met" : "not met"}' "$W/wrk.out"
printf '  reloads done by pic2: %s, in %.1f s (wrk ran %s s)\n' "$RELOADS" \
    "$(awk -v a="$RELOAD_START" -v b="$RELOAD_END" 'BEGIN {print b - a - 1}')" "$((DUR + 12))"
stop_pic2
