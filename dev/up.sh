#!/usr/bin/env bash
# dev/up.sh: install what is missing, then start (or check) the dev slapd,
# MariaDB and NSS client. Idempotent; about a second from nothing once the
# packages are installed, well under a second when everything already runs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root

"$DEV_SCRIPTS/packages.sh"
"$DEV_SCRIPTS/ldap.sh" start
"$DEV_SCRIPTS/mariadb.sh" start
"$DEV_SCRIPTS/nss.sh" start
"$DEV_SCRIPTS/smtp.sh" start
"$DEV_SCRIPTS/browser.sh" start
"$DEV_SCRIPTS/pebble.sh" start
"$DEV_SCRIPTS/docker.sh" start     # the engine and the debootstrapped base images (cached)

S=$SECRETS_DIR
cat <<EOF
pic2 dev services are up (state in $PIC2_DEV_DIR, logs in $LOG_DIR):
  DB host  network namespace pic2db at [fd00:5049:4332::2] (this machine is fd00:5049:4332::1)
  LDAP     ldap://127.0.0.1:${PIC2_LDAP_PORT:-3389}/ (forwarded) and ldap://[fd00:5049:4332::2]:${PIC2_LDAP_PORT:-3389}/, ldapi socket $RUN_DIR/ldapi, suffix dc=pic2,dc=test
           admin   cn=admin,dc=pic2,dc=test  secret $S/ldap-admin.secret
           service cn=nss,dc=pic2,dc=test    secret $S/ldap-nss.secret (read-only, no userPassword)
           ldapsearch -x -H ldap://127.0.0.1:${PIC2_LDAP_PORT:-3389} -D cn=admin,dc=pic2,dc=test -y $S/ldap-admin.secret -b dc=pic2,dc=test -o ldif-wrap=no
  MariaDB  127.0.0.1:${PIC2_MARIADB_PORT:-3307}  (socket $RUN_DIR/mariadb.sock; root: socket auth only)
           admin   pic2@fd00:5049:4332::1 (through the forwarder) / pic2@localhost  secret $S/mariadb-admin.secret
           mariadb --defaults-extra-file=$S/mariadb-admin.cnf
  NSS      nslcd -> LDAP as cn=nss; try: getent passwd <uid>
  SMTP     127.0.0.1:${PIC2_SMTP_PORT:-2525} captures every message into $PIC2_DEV_DIR/mail/ (nothing relayed)
  Browser  chromedriver on 127.0.0.1:${PIC2_WEBDRIVER_PORT:-9515} (headless Chromium for the passwd browser tests)
  Pebble   https://127.0.0.1:14000/dir (CA $PIC2_DEV_DIR/pebble/ca.pem; validates on 127.0.0.1:5002 and :5001)
Stop with dev/down.sh.
EOF
