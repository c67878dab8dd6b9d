#!/usr/bin/env bash
# dev/pebble.sh {start|stop|status}: a local ACME CA (Pebble 2.4, Debian's) for the
# proxy's tests, with pebble-challtestsrv as its DNS server.
#
#   ACME directory  https://127.0.0.1:14000/dir   (management/roots: https://127.0.0.1:15000)
#   TLS trust       $PIC2_DEV_DIR/pebble/ca.pem   (the CA of Pebble's own HTTPS certificate)
#   DNS             127.0.0.1:8053 (challtestsrv): every name resolves to 127.0.0.1, no AAAA
#   validation      Pebble validates HTTP-01 on 127.0.0.1:5002 and TLS-ALPN-01 on
#                   127.0.0.1:5001: a proxy under test listens there.
#   logs            $PIC2_DEV_DIR/log/pebble.log, $PIC2_DEV_DIR/log/challtestsrv.log
#
# Debian's pebble ships no config and no certificates: this script makes a CA and a
# certificate for 127.0.0.1/localhost with openssl, once. PEBBLE_VA_NOSLEEP=1 so that
# validations happen at once. Pebble's issuing roots change at every start.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PEBBLE_DIR=$PIC2_DEV_DIR/pebble
CONFIG=$PEBBLE_DIR/pebble-config.json
PIDFILE=$RUN_DIR/pebble.pid
DNS_PIDFILE=$RUN_DIR/challtestsrv.pid
LOGFILE=$LOG_DIR/pebble.log
DNS_LOGFILE=$LOG_DIR/challtestsrv.log
DNS_ADDR=127.0.0.1:8053
DNS_MGMT=127.0.0.1:8055

pebble_pid() {
    pidfile_pid "$PIDFILE" pebble "$CONFIG" && return 0
    local p
    p=$(find_proc pebble "$CONFIG" | head -n1)
    [[ -n $p ]] && echo "$p"
}

dns_pid() {
    pidfile_pid "$DNS_PIDFILE" pebble-challtes "$DNS_ADDR" && return 0
    local p
    p=$(find_proc pebble-challtes "$DNS_ADDR" | head -n1)
    [[ -n $p ]] && echo "$p"
}

responds() {
    curl -fsS --max-time 3 --cacert "$PEBBLE_DIR/ca.pem" https://127.0.0.1:14000/dir >/dev/null
}

ensure_certs() {
    ensure_dir "$PEBBLE_DIR" 0755
    if [[ -s $PEBBLE_DIR/ca.pem && -s $PEBBLE_DIR/cert.pem && -s $PEBBLE_DIR/key.pem ]] &&
        openssl verify -CAfile "$PEBBLE_DIR/ca.pem" "$PEBBLE_DIR/cert.pem" >/dev/null 2>&1; then
        return 0
    fi
    log "making a CA and a certificate for 127.0.0.1/localhost in $PEBBLE_DIR"
    local tmp
    tmp=$(mktemp -d "$PEBBLE_DIR/mk.XXXXXX")
    run_logged "$LOGFILE" "openssl CA" openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -nodes -days 3650 -subj "/CN=pic2 dev Pebble CA" -keyout "$tmp/ca.key" -out "$tmp/ca.pem" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    run_logged "$LOGFILE" "openssl key" openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=localhost" -keyout "$tmp/key.pem" -out "$tmp/req.csr"
    printf 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$tmp/ext"
    run_logged "$LOGFILE" "openssl sign" openssl x509 -req -in "$tmp/req.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
        -CAcreateserial -days 3650 -extfile "$tmp/ext" -out "$tmp/cert.pem"
    chmod 0644 "$tmp/ca.pem" "$tmp/cert.pem"
    chmod 0600 "$tmp/ca.key" "$tmp/key.pem"
    mv -f "$tmp/ca.key" "$tmp/ca.pem" "$tmp/key.pem" "$tmp/cert.pem" "$PEBBLE_DIR/"
    rm -rf "$tmp"
}

write_config() {
    write_if_changed "$CONFIG" 0644 root:root <<EOF_CONFIG || true
{
  "pebble": {
    "listenAddress": "127.0.0.1:14000",
    "managementListenAddress": "127.0.0.1:15000",
    "certificate": "$PEBBLE_DIR/cert.pem",
    "privateKey": "$PEBBLE_DIR/key.pem",
    "httpPort": 5002,
    "tlsPort": 5001,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
EOF_CONFIG
}

start() {
    ensure_base_dirs
    need_cmd pebble pebble-challtestsrv openssl curl
    ensure_certs
    write_config
    if [[ -z $(dns_pid || true) ]]; then
        log "starting pebble-challtestsrv (DNS on $DNS_ADDR)"
        daemonize "$DNS_LOGFILE" pebble-challtestsrv -dns01 "$DNS_ADDR" -management "$DNS_MGMT" \
            -http01 "" -https01 "" -tlsalpn01 "" -defaultIPv4 127.0.0.1 -defaultIPv6 ""
        echo "$DAEMON_PID" >"$DNS_PIDFILE"
        wait_for "challtestsrv management on $DNS_MGMT" 10 \
            curl -sS --max-time 1 -o /dev/null "http://$DNS_MGMT/" ||
            die_with_log "pebble-challtestsrv did not start" "$DNS_LOGFILE"
    fi
    if [[ -z $(pebble_pid || true) ]]; then
        log "starting pebble on 127.0.0.1:14000"
        daemonize "$LOGFILE" env PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 \
            pebble -config "$CONFIG" -dnsserver "$DNS_ADDR" -strict=false
        echo "$DAEMON_PID" >"$PIDFILE"
    fi
    wait_for "pebble on 127.0.0.1:14000" 20 responds || die_with_log "pebble did not answer on https://127.0.0.1:14000/dir" "$LOGFILE"
}

stop() {
    local p
    p=$(pebble_pid || true)
    [[ -z $p ]] || stop_pid "$p" pebble
    p=$(dns_pid || true)
    [[ -z $p ]] || stop_pid "$p" pebble-challtestsrv
    rm -f "$PIDFILE" "$DNS_PIDFILE"
}

status() {
    local p d
    p=$(pebble_pid || true)
    d=$(dns_pid || true)
    if [[ -n $p && -n $d ]] && responds; then
        echo "pebble running (pid $p, https://127.0.0.1:14000/dir, CA $PEBBLE_DIR/ca.pem), DNS pid $d on $DNS_ADDR"
        return 0
    fi
    echo "pebble not running (start it with dev/pebble.sh start)"
    return 1
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) usage ;;
esac
