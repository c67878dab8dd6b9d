#!/usr/bin/env bash
# dev/smtp.sh {start|stop|status}: a capturing SMTP server for the tests of pic2 passwd.
#
#   listens    127.0.0.1:2525 (PIC2_SMTP_PORT)
#   mail       every message lands in $PIC2_DEV_DIR/mail/<epoch-ns>.eml (tests read them)
#   log        $PIC2_DEV_DIR/log/smtp.log
#
# python3-aiosmtpd (dev/packages.sh); nothing is relayed anywhere.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SMTP_PORT=${PIC2_SMTP_PORT:-2525}
MAIL_DIR=$PIC2_DEV_DIR/mail
PIDFILE=$RUN_DIR/smtp.pid
LOGFILE=$LOG_DIR/smtp.log
SCRIPT=$DEV_SCRIPTS/smtp-capture.py
PYTHON=/usr/bin/python3 # Debian's, which has python3-aiosmtpd (not a pyenv shim)

smtp_pid() {
    pidfile_pid "$PIDFILE" python3 smtp-capture.py && return 0
    local p
    p=$(find_proc python3 "smtp-capture.py $MAIL_DIR" | head -n1)
    [[ -n $p ]] && echo "$p"
}

answers() { # an SMTP greeting on the port
    timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$SMTP_PORT && head -c 4 <&3 | grep -q '^220'" 2>/dev/null
}

do_start() {
    [[ -x $PYTHON ]] || die "$PYTHON missing (run dev/packages.sh)"
    "$PYTHON" -c 'import aiosmtpd' 2>/dev/null || die "python3-aiosmtpd is missing (run dev/packages.sh)"
    ensure_base_dirs
    ensure_dir "$MAIL_DIR" 0700
    local pid
    pid=$(smtp_pid || true)
    if [[ -n $pid ]] && answers; then
        return 0
    fi
    if [[ -n $pid ]]; then
        log "smtp capture pid $pid does not answer: restarting it"
        stop_pid "$pid" "smtp capture" 5
    fi
    rm -f "$PIDFILE"
    log "starting the capturing SMTP server on 127.0.0.1:$SMTP_PORT (mail in $MAIL_DIR)"
    daemonize "$LOGFILE" "$PYTHON" "$SCRIPT" "$MAIL_DIR" 127.0.0.1 "$SMTP_PORT"
    echo "$DAEMON_PID" >"$PIDFILE"
    local i
    for ((i = 0; i < 100; i++)); do
        alive "$DAEMON_PID" || die_with_log "the SMTP capture exited during start-up" "$LOGFILE"
        answers && return 0
        sleep 0.1
    done
    die_with_log "the SMTP capture (pid $DAEMON_PID) did not answer on 127.0.0.1:$SMTP_PORT within 10 s" "$LOGFILE"
}

do_stop() {
    local pid
    pid=$(smtp_pid || true)
    if [[ -n $pid ]]; then
        log "stopping the SMTP capture (pid $pid)"
        stop_pid "$pid" "smtp capture" 5
    fi
    rm -f "$PIDFILE"
}

do_status() {
    local pid
    pid=$(smtp_pid || true)
    if answers; then
        echo "smtp: running${pid:+ (pid $pid)}, capturing on 127.0.0.1:$SMTP_PORT into $MAIL_DIR"
        return 0
    fi
    echo "smtp: not running"
    return 1
}

dispatch "$@"
