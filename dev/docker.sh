#!/usr/bin/env bash
# dev/docker.sh {start|stop|status}: the Docker engine and the local base images.
#
# start: install docker.io and debootstrap if missing; start dockerd in the background when
# no socket answers (removing a stale pid file left by an earlier boot); then make sure the
# base images the inventories name exist: local/debian:bookworm and local/debian:trixie, made
# with debootstrap from the Debian mirror apt uses (no registry is reachable) and cached by
# tag, so a second run costs nothing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root

DOCKER_LOG=$LOG_DIR/dockerd.log
SUITES=(${PIC2_BASE_SUITES:-bookworm trixie})

docker_answers() { timeout 5 docker info >/dev/null 2>&1; }

mirror() {
    # The first Debian archive URI apt is configured with (deb822 or one-line format).
    # Only a URI ending in /debian: another repository's would not carry the suites.
    local uri
    uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | sed 's:/*$::' | grep -E '/debian$' | head -n1)
    [[ -n $uri ]] || uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | sed 's:/*$::' | grep -E '/debian$' | head -n1)
    [[ -n $uri ]] || die "cannot find the Debian mirror (a URI ending in /debian) in /etc/apt/sources.list*"
    printf '%s\n' "$uri"
}

start_engine() {
    if docker_answers; then return 0; fi
    # A pid file left by an earlier boot is stale unless its pid is a dockerd now (a bare
    # `kill -0` would take slapd's or socat's pid for one, and dockerd would refuse to start).
    pidfile_pid /var/run/docker.pid dockerd >/dev/null || true
    mkdir -p "$LOG_DIR"
    log "starting dockerd (log: $DOCKER_LOG)"
    nohup dockerd >"$DOCKER_LOG" 2>&1 </dev/null &
    local pid=$! deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)); do
        docker_answers && return 0
        alive "$pid" || die_with_log "dockerd exited during start-up" "$DOCKER_LOG"
        sleep 0.5
    done
    die_with_log "dockerd did not answer within 60 s" "$DOCKER_LOG"
}

# base_image SUITE: local/debian:SUITE, by debootstrap + docker import, once.
base_image() {
    local suite=$1 tag=local/debian:$1
    if docker image inspect "$tag" >/dev/null 2>&1; then return 0; fi
    local root; root=$(mktemp -d "/var/tmp/pic2-debootstrap-$suite.XXXXXX")
    # a failed debootstrap or import must not leave its 300 MB behind at each retry
    trap "rm -rf '$root'" EXIT
    local url; url=$(mirror)
    log "building $tag with debootstrap from $url (about a minute)"
    debootstrap --variant=minbase "$suite" "$root" "$url" >"$LOG_DIR/debootstrap-$suite.log" 2>&1 \
        || die_with_log "debootstrap $suite failed" "$LOG_DIR/debootstrap-$suite.log"
    # An image is no place for apt's caches; keep a sources.list with updates and security.
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    local security=${url%/debian}/debian-security
    printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
        "$url" "$suite" "$url" "$suite" "$security" "$suite" >"$root/etc/apt/sources.list"
    tar -C "$root" -c . | docker import -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' - "$tag" >/dev/null
    rm -rf "$root"
    trap - EXIT
    log "built $tag"
}

case "${1:-start}" in
    start)
        apt_install docker.io debootstrap
        start_engine
        for suite in "${SUITES[@]}"; do base_image "$suite"; done
        ;;
    stop)
        if pid=$(pidfile_pid /var/run/docker.pid dockerd); then
            stop_pid "$pid" dockerd 30
        fi
        ;;
    status)
        docker_answers
        ;;
    *) die "usage: $0 {start|stop|status}" ;;
esac
