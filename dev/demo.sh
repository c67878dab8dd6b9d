#!/usr/bin/env bash
# dev/demo.sh: bring up the platform's main job on the demo inventory, on this machine.
#
# Starts the dev services (slapd, MariaDB, NSS client), builds pic2, shows the plan for
# examples/demo.toml, applies it, shows that a second apply changes nothing, then prints
# how to look at what was created. Idempotent.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root
cd "$REPO_ROOT"

command -v cargo >/dev/null || die "cargo is not installed: this machine kind ships the Rust toolchain (rustup); install it first"
"$DEV_SCRIPTS/up.sh" >/dev/null
log "building pic2 (release)"
cargo build --release --quiet -p pic2
PIC2="$REPO_ROOT/target/release/pic2"
export PIC2_CONFIG="$REPO_ROOT/examples/demo.toml"

printf '\n==> pic2 check\n'
"$PIC2" check
printf '\n==> pic2 apply --yes\n'
"$PIC2" apply --yes
printf '\n==> pic2 apply --yes, again: nothing to do\n'
"$PIC2" apply --yes

S=$SECRETS_DIR
cat <<EOF

The demo platform is applied. Look at it:
  LDAP accounts and groups:
    ldapsearch -x -H ldap://127.0.0.1:3389 -D cn=admin,dc=pic2,dc=test -y $S/ldap-admin.secret \\
      -b dc=pic2,dc=test -o ldif-wrap=no '(objectClass=pic2Managed)'
    getent passwd velobs arto amap          # real POSIX accounts, through nslcd
  Databases, users and grants:
    mariadb --defaults-extra-file=$S/mariadb-admin.cnf -e "SHOW DATABASES; SELECT User, Host FROM mysql.user"
    su -s /bin/sh velobs -c 'mariadb --defaults-extra-file=$PIC2_DEV_DIR/data/home/velobs/private/mariadb-velobs.cnf'
  Homes and sites:
    ls -lR $PIC2_DEV_DIR/data/home
  More:
    $PIC2 plan --detail        # what would change (exit 0 nothing, 2 changes)
    $PIC2 cost                 # the monthly cost of the hosts
    $PIC2 hosts                # the testers' /etc/hosts block
    echo 'a long passphrase 42' | $PIC2 account set-password velobs --stdin
EOF
