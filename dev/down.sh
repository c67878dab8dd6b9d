#!/usr/bin/env bash
# dev/down.sh: stop the dev NSS client, MariaDB and slapd (state is kept;
# rm -rf $PIC2_DEV_DIR afterwards for a clean slate). /etc/nsswitch.conf keeps
# its "ldap" entries: with nslcd stopped they fail fast and files still answer.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root
rc=0
"$DEV_SCRIPTS/pebble.sh" stop || rc=1
"$DEV_SCRIPTS/browser.sh" stop || rc=1
"$DEV_SCRIPTS/smtp.sh" stop || rc=1
"$DEV_SCRIPTS/nss.sh" stop || rc=1
"$DEV_SCRIPTS/mariadb.sh" stop || rc=1
"$DEV_SCRIPTS/ldap.sh" stop || rc=1
exit $rc
