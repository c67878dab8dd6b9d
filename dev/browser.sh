#!/usr/bin/env bash
# dev/browser.sh {start|stop|status}: chromedriver for the browser tests of pic2 passwd.
#
#   listens    127.0.0.1:9515 (PIC2_WEBDRIVER_PORT; chromedriver binds loopback only unless
#              --allowed-ips is given, which we never do)
#   log        $PIC2_DEV_DIR/log/chromedriver.log
#
# The tests ask chromedriver for a headless Chromium with the flags that work as root
# (--headless=new --no-sandbox --disable-dev-shm-usage ... and a fresh --user-data-dir).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WD_PORT=${PIC2_WEBDRIVER_PORT:-9515}
PIDFILE=$RUN_DIR/chromedriver.pid
LOGFILE=$LOG_DIR/chromedriver.log

driver_pid() {
    pidfile_pid "$PIDFILE" chromedriver "--port=$WD_PORT" && return 0
    local p
    p=$(find_proc chromedriver "--port=$WD_PORT" | head -n1)
    [[ -n $p ]] && echo "$p"
}

answers() {
    curl -fsS -m 2 "http://127.0.0.1:$WD_PORT/status" 2>/dev/null | matches '"ready":true'
}

do_start() {
    need_cmd chromedriver chromium curl
    ensure_base_dirs
    local pid
    pid=$(driver_pid || true)
    if [[ -n $pid ]] && answers; then
        return 0
    fi
    if [[ -n $pid ]]; then
        log "chromedriver pid $pid does not answer: restarting it"
        stop_pid "$pid" chromedriver 5
    fi
    rm -f "$PIDFILE"
    log "starting chromedriver on 127.0.0.1:$WD_PORT"
    daemonize "$LOGFILE" chromedriver "--port=$WD_PORT"
    echo "$DAEMON_PID" >"$PIDFILE"
    local i
    for ((i = 0; i < 100; i++)); do
        alive "$DAEMON_PID" || die_with_log "chromedriver exited during start-up" "$LOGFILE"
        answers && return 0
        sleep 0.1
    done
    die_with_log "chromedriver (pid $DAEMON_PID) did not answer on 127.0.0.1:$WD_PORT within 10 s" "$LOGFILE"
}

do_stop() {
    local pid
    pid=$(driver_pid || true)
    if [[ -n $pid ]]; then
        log "stopping chromedriver (pid $pid)"
        stop_pid "$pid" chromedriver 5
    fi
    rm -f "$PIDFILE"
}

do_status() {
    local pid
    pid=$(driver_pid || true)
    if answers; then
        echo "chromedriver: running${pid:+ (pid $pid)} on 127.0.0.1:$WD_PORT"
        return 0
    fi
    echo "chromedriver: not running"
    return 1
}

dispatch "$@"
