#!/usr/bin/env bash
# dev/packages.sh: install the Debian packages the dev foundation needs.
#
# Fast no-op (dpkg-query only) when everything is present. Installing slapd or
# mariadb-server may make their postinst try to start the distro's own daemons
# (through invoke-rc.d; denied where /usr/sbin/policy-rc.d says so). We never
# use those: dev/ldap.sh and dev/mariadb.sh run their own instances with their
# own config and data under $PIC2_DEV_DIR on private ports (3389, 3307), so a
# distro daemon on the default ports (389, 3306) is left alone.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PACKAGES=(
    slapd ldap-utils                # OpenLDAP server (+ argon2 module) and clients
    mariadb-server mariadb-client   # MariaDB 10.11
    nslcd libnss-ldapd              # NSS client: getent passwd resolves LDAP accounts
    chromium chromium-driver        # browser tests of pic2 passwd (dev/browser.sh)
    python3-aiosmtpd                # capturing SMTP server on loopback (dev/smtp.sh)
    curl                            # readiness checks of the dev scripts
    openssh-client sshpass procps libc-bin  # ssh, sftp, ssh-keygen, pgrep and getent for the tests
    iproute2 socat                  # the database host's namespace, and its forwarders on 127.0.0.1
    wordpress wordpress-theme-twentytwentyone   # installed on a runtime by an end-to-end test
    pebble openssl curl             # local ACME CA for the proxy tests (dev/pebble.sh)
    nginx haproxy caddy wrk nghttp2-client  # bench/proxy peers and load tools (h2load)
    valgrind                        # bench/proxy/instructions.sh (callgrind)
    cmake                           # the Pingora prototype (libz-ng-sys)
    coreutils diffutils grep sed mawk   # used by the scripts (normally already there)
)

apt_install "${PACKAGES[@]}"

# Fail loudly now rather than half-way through a start.
[[ -f /usr/lib/ldap/argon2.la ]] || die "slapd is installed but /usr/lib/ldap/argon2.la is missing (needed for {ARGON2} password hashes)"
need_cmd slapd slapadd slappasswd ldapwhoami ldapadd mariadbd mariadb-install-db mariadb-admin mariadb nslcd chromium chromedriver python3
