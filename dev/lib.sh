# shellcheck shell=bash
# dev/lib.sh: helpers shared by the dev/ set-up scripts. Source it, do not run it.
#
# Conventions:
#   * all state lives under $PIC2_DEV_DIR (default /var/lib/pic2-dev);
#   * daemons run in the background, their pid files in $PIC2_DEV_DIR/run,
#     their logs in $PIC2_DEV_DIR/log;
#   * secrets are random, generated once, kept in $PIC2_DEV_DIR/secrets (0600,
#     no trailing newline) and never passed on a command line.

set -euo pipefail

PIC2_DEV_DIR=${PIC2_DEV_DIR:-/var/lib/pic2-dev}
PIC2_DEV_DIR=${PIC2_DEV_DIR%/}
export PIC2_DEV_DIR
DEV_SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034 # used by the scripts that source this file
REPO_ROOT=$(dirname "$DEV_SCRIPTS")
RUN_DIR=$PIC2_DEV_DIR/run
LOG_DIR=$PIC2_DEV_DIR/log
SECRETS_DIR=$PIC2_DEV_DIR/secrets

# ---------------------------------------------------------------- logging

_prog=$(basename "${0:-dev}" .sh)
log()  { printf '[%s] %s\n' "$_prog" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "$_prog" "$*" >&2; }
die()  { printf '[%s] ERROR: %s\n' "$_prog" "$*" >&2; exit 1; }

# dispatch start|stop|status: the service scripts' command line, to their do_start, do_stop,
# do_status (and their usage for anything else).
dispatch() {
    case ${1:-} in
        start) do_start ;;
        stop) do_stop ;;
        status) do_status ;;
        *) usage ;;
    esac
}

# matches GREP-ARGS...: whether the input has a matching line. Use it at the end of a pipe
# instead of `grep -q`: under pipefail, `grep -q` leaves at the first match, the command
# before it may then die of SIGPIPE on its next write, and the pipe reports a failure for a
# match — a race that made CI add an address that was already there.
matches() { grep "$@" >/dev/null; }

# die_with_log MESSAGE LOGFILE [LINES]: fail, naming the log and showing its tail.
die_with_log() {
    local msg=$1 logfile=$2 lines=${3:-25}
    printf '[%s] ERROR: %s\n' "$_prog" "$msg" >&2
    if [[ -s $logfile ]]; then
        printf '[%s] log file: %s (last %s lines):\n' "$_prog" "$logfile" "$lines" >&2
        tail -n "$lines" "$logfile" | sed 's/^/    | /' >&2
    else
        printf '[%s] log file: %s (empty or missing)\n' "$_prog" "$logfile" >&2
    fi
    exit 1
}

# run_logged LOGFILE DESCRIPTION CMD...: run CMD with its output appended to
# LOGFILE; on failure die showing the log.
run_logged() {
    local logfile=$1 desc=$2
    shift 2
    printf '\n=== %s: %s\n' "$(date '+%F %T')" "$desc" >>"$logfile"
    if ! "$@" >>"$logfile" 2>&1; then
        die_with_log "$desc failed" "$logfile"
    fi
}

need_cmd() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || [[ -x /usr/sbin/$c ]] ||
            die "command '$c' not found: run dev/packages.sh first"
    done
}

# PATH may lack the sbin directories when run through sudo or a minimal shell.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin ;; esac

require_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (installs packages, starts daemons under system users)"
}

# ---------------------------------------------------------------- waiting

# wait_for DESCRIPTION TIMEOUT_SECONDS CMD...: retry CMD (silenced) every
# 0.1 s until it succeeds; return 1 after TIMEOUT_SECONDS. Bounded: at most
# TIMEOUT*10 tries.
wait_for() {
    local desc=$1 timeout=$2
    shift 2
    local tries=$((timeout * 10)) i
    for ((i = 0; i < tries; i++)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    warn "timed out after ${timeout}s waiting for $desc"
    return 1
}

# ---------------------------------------------------------------- processes

# proc_matches PID COMM [PATTERN]: PID is alive, its command name is COMM and,
# if given, its command line contains PATTERN (guards against pid reuse).
proc_matches() {
    local pid=$1 comm=$2 pattern=${3:-}
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/comm ]] || return 1
    local c
    c=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $c == "$comm" ]] || return 1
    # a zombie is not alive
    local state
    state=$(awk '/^State:/ {print $2; exit}' "/proc/$pid/status" 2>/dev/null) || return 1
    [[ $state != Z ]] || return 1
    if [[ -n $pattern ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | matches -F -- "$pattern" || return 1
    fi
    return 0
}

# alive PID: the process exists and is not a zombie (kill -0 succeeds on a
# zombie child we have not reaped yet).
alive() {
    [[ -r /proc/$1/status ]] || return 1
    [[ $(awk '/^State:/ {print $2; exit}' "/proc/$1/status" 2>/dev/null) != Z ]]
}

# pidfile_pid PIDFILE COMM [PATTERN]: print the pid recorded in PIDFILE if that
# process is alive and matches; otherwise remove the stale file, return 1.
pidfile_pid() {
    local pidfile=$1 comm=$2 pattern=${3:-} pid
    [[ -f $pidfile ]] || return 1
    pid=$(tr -dc '0-9' <"$pidfile" 2>/dev/null || true)
    if [[ -n $pid ]] && proc_matches "$pid" "$comm" "$pattern"; then
        echo "$pid"
        return 0
    fi
    log "removing stale pid file $pidfile${pid:+ (pid $pid is not running or is not ours)}"
    rm -f "$pidfile"
    return 1
}

# find_proc COMM PATTERN: print the pids of processes named COMM whose
# command line contains PATTERN (for a daemon whose pid file was lost).
find_proc() {
    local comm=$1 pattern=$2 d pid
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        proc_matches "$pid" "$comm" "$pattern" && echo "$pid"
    done
    return 0
}

# stop_pid PID DESCRIPTION [TIMEOUT]: SIGTERM, wait, then SIGKILL.
stop_pid() {
    local pid=$1 desc=$2 timeout=${3:-15} i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < timeout * 10; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    warn "$desc (pid $pid) still alive after ${timeout}s: sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    die "could not stop $desc (pid $pid)"
}

# ---------------------------------------------------------------- files

# ensure_dir DIR MODE [OWNER]
ensure_dir() {
    local dir=$1 mode=$2 owner=${3:-}
    mkdir -p "$dir"
    chmod "$mode" "$dir"
    [[ -z $owner ]] || chown "$owner" "$dir"
}

ensure_base_dirs() {
    ensure_dir "$PIC2_DEV_DIR" 0755
    ensure_dir "$LOG_DIR" 0755
    ensure_dir "$SECRETS_DIR" 0700
    # Both slapd (user openldap) and mariadbd (user mysql) create their
    # sockets and pid files here after dropping root: world-writable with the
    # sticky bit, like /tmp, so neither can remove the other's files.
    ensure_dir "$RUN_DIR" 1777
}

# ensure_secret FILE: create FILE with a random secret (48 hex digits,
# 192 bits, no trailing newline) unless it exists; mode 0600.
ensure_secret() {
    local file=$1
    if [[ ! -s $file ]]; then
        local tmp
        tmp=$(mktemp "$file.XXXXXX")
        od -An -vtx1 -N24 /dev/urandom | tr -d ' \n' >"$tmp"
        chmod 0600 "$tmp"
        mv -f "$tmp" "$file"
        log "generated secret $file"
    fi
    chmod 0600 "$file"
    chown root:root "$file"
}

# write_if_changed FILE MODE OWNER: write stdin to FILE only if the content
# differs; return 0 if written, 1 if unchanged. Mode/owner are always enforced.
write_if_changed() {
    local file=$1 mode=$2 owner=$3 tmp
    tmp=$(mktemp "$file.XXXXXX")
    cat >"$tmp"
    chmod "$mode" "$tmp"
    chown "$owner" "$tmp"
    if [[ -f $file ]] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
        chmod "$mode" "$file"
        chown "$owner" "$file"
        return 1
    fi
    mv -f "$tmp" "$file"
    return 0
}

# ---------------------------------------------------------------- packages

# apt_install PKG...: install the packages missing; fast no-op when all are
# present. `apt-get update` runs at most once per invocation.
apt_install() {
    local missing=() p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | matches '^install ok installed$'; then
            missing+=("$p")
        fi
    done
    [[ ${#missing[@]} -gt 0 ]] || return 0
    require_root
    local logfile=${LOG_DIR:-/tmp}/apt.log
    mkdir -p "$(dirname "$logfile")"
    log "installing: ${missing[*]} (log: $logfile)"
    if [[ -z ${_APT_UPDATED:-} ]]; then
        run_logged "$logfile" "apt-get update" apt-get update
        _APT_UPDATED=1
    fi
    run_logged "$logfile" "apt-get install ${missing[*]}" \
        env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
}

# usage_start_stop_status SCRIPT: common argument check.
usage() {
    echo "usage: $0 {start|stop|status}" >&2
    exit 2
}

# daemonize LOGFILE CMD...: start CMD in the background in its own session,
# stdin from /dev/null, output appended to LOGFILE, no other inherited file
# descriptors (so a caller capturing our output does not wait for the daemon).
# Sets DAEMON_PID (CMD is exec'd by setsid, so this is the daemon's own pid
# unless CMD forks itself).
daemonize() {
    local logfile=$1
    shift
    printf '\n=== %s: starting %s\n' "$(date '+%F %T')" "$*" >>"$logfile"
    setsid "$@" </dev/null >>"$logfile" 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &
    # shellcheck disable=SC2034 # read by the caller
    DAEMON_PID=$!
}

# urlencode STRING: percent-encode everything but unreserved characters
# (for ldapi:// socket paths).
urlencode() {
    local s=$1 out='' c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
            [A-Za-z0-9._~-]) out+=$c ;;
            *) out+=$(printf '%%%02X' "'$c") ;;
        esac
    done
    printf '%s' "$out"
}

# ---------------------------------------------------------------- the database host

# pic2 — the host of slapd and MariaDB in the source document — is a network namespace of its
# own, reached over IPv6 through a veth pair, as in production: this machine is
# fd00:5049:4332::1, the database host fd00:5049:4332::2. Containers reach it through their
# bridge and this machine's routing, so MariaDB sees each container's own address. For the
# tools and tests that talk to 127.0.0.1:3389 and :3307, a forwarder (socat) on this machine's
# loopback passes their connections on; the servers see them coming from fd00:5049:4332::1.
DB_HOST6=${PIC2_DB_HOST6:-fd00:5049:4332::2}
DB_HOST_SIDE6=${PIC2_DB_HOST_SIDE6:-fd00:5049:4332::1}
DB_NETNS=pic2db

in_db_host() { ip netns exec "$DB_NETNS" "$@"; }

ensure_db_host_address() {
    # An older version of these scripts put the address on the loopback: take it back.
    ip -6 addr del "$DB_HOST6/128" dev lo 2>/dev/null || true
    # A namespace file left from before a reboot (/run is on disk on some machines) is
    # listed but enters nothing: remade.
    if ! in_db_host true 2>/dev/null; then
        ip netns del "$DB_NETNS" 2>/dev/null || rm -f "/run/netns/$DB_NETNS"
        ip netns add "$DB_NETNS" || die "cannot create the network namespace $DB_NETNS"
    fi
    if ! in_db_host ip link show pic2n >/dev/null 2>&1; then
        ip link del pic2h 2>/dev/null || true
        ip link add pic2h type veth peer name pic2n netns "$DB_NETNS" ||
            die "cannot create the veth pair pic2h/pic2n"
    fi
    ip link set pic2h up
    # `replace` adds the address or leaves it as it is: no check, no race.
    ip -6 addr replace "$DB_HOST_SIDE6/64" dev pic2h nodad
    in_db_host ip link set lo up
    in_db_host ip link set pic2n up
    in_db_host ip -6 addr replace "$DB_HOST6/64" dev pic2n nodad
    # Back to the containers' networks (fd00:5049:4332:N::/64) through this machine.
    in_db_host ip -6 route replace default via "$DB_HOST_SIDE6" dev pic2n
    sysctl -qw net.ipv6.conf.all.forwarding=1
}

# db_host_listens PORT: whether something in the namespace listens on [DB_HOST6]:PORT.
db_host_listens() {
    in_db_host ss -H -ltn "src [$DB_HOST6]:$1" 2>/dev/null | matches .
}

# in_db_host_pid PID: whether the process runs in the database host's namespace.
in_db_host_pid() {
    [[ $(ip netns identify "$1" 2>/dev/null) == "$DB_NETNS" ]]
}

# ensure_forward NAME PORT: 127.0.0.1:PORT on this machine → [DB_HOST6]:PORT.
# A pid file may outlive its process (a reboot, a fresh machine with the same files): its pid
# is then checked against socat and its listen address before anything is killed, never with
# a bare `kill -0` (the pid may be slapd's now).
ensure_forward() {
    local name=$1 port=$2 pidfile=$RUN_DIR/forward-$1.pid pid
    pid=$(pidfile_pid "$pidfile" socat "TCP4-LISTEN:$port,") || pid=
    if [[ -n $pid ]] && ss -H -ltn "src 127.0.0.1:$port" | matches .; then
        return 0
    fi
    [[ -n $pid ]] && stop_pid "$pid" "the forwarder on port $port" 5
    need_cmd socat
    daemonize "$LOG_DIR/forward-$name.log" socat "TCP4-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork" "TCP6:[$DB_HOST6]:$port"
    echo "$DAEMON_PID" >"$pidfile"
    local i
    for ((i = 0; i < 50; i++)); do
        ss -H -ltn "src 127.0.0.1:$port" | matches . && return 0
        sleep 0.1
    done
    die_with_log "the forwarder 127.0.0.1:$port → [$DB_HOST6]:$port did not start" "$LOG_DIR/forward-$name.log"
}

stop_forward() {
    local pidfile=$RUN_DIR/forward-$1.pid pid
    if pid=$(pidfile_pid "$pidfile" socat "TCP4-LISTEN:"); then
        stop_pid "$pid" "the $1 forwarder" 5
    fi
    rm -f "$pidfile"
}
