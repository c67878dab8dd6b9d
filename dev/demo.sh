#!/usr/bin/env bash
# dev/demo.sh: bring up the platform's main job on the demo inventory, on this machine.
#
# Starts the dev services (slapd, MariaDB, the NSS client, the Docker engine with its base
# images), builds pic2, applies examples/demo.toml — accounts, databases, homes, both web
# runtimes, SFTP/SSH and phpMyAdmin —, shows that a second apply changes nothing, then prints
# how to reach each. Idempotent.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root
cd "$REPO_ROOT"

# rustup's cargo, also for a shell that read no profile (it adds ~/.cargo/bin)
[[ -x $HOME/.cargo/bin/cargo ]] && PATH=$HOME/.cargo/bin:$PATH
command -v cargo >/dev/null || die "cargo is not installed: this machine kind ships the Rust toolchain (rustup); install it first"
command -v cc >/dev/null || apt_install gcc libc6-dev
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

# Something to look at: a page per site (left alone once its owner has uploaded one), and a
# password for the SFTP-only account amap, kept in a root-only file (never printed).
DATA=$PIC2_DEV_DIR/data/home
for site in velobs/velobs.test arto/arto.test amap/amap.test; do
    owner=${site%%/*}
    page=$DATA/$owner/sites/${site#*/}/htdocs/index.php
    if [[ ! -e $page ]]; then
        printf '<?php printf("%%s: PHP %%s, running as uid %%d\\n", $_SERVER["HTTP_HOST"], PHP_VERSION, posix_geteuid());\n' >"$page"
        chown "$(stat -c %u "$(dirname "$page")"):$(stat -c %g "$(dirname "$page")")" "$page"
    fi
done
AMAP_PASSWORD=$SECRETS_DIR/demo-amap.password
if [[ ! -s $AMAP_PASSWORD ]]; then
    (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$AMAP_PASSWORD")
fi
"$PIC2" account set-password amap --stdin <"$AMAP_PASSWORD" >/dev/null

S=$SECRETS_DIR
cat <<EOF

The demo platform is applied. Look at it:
  LDAP accounts and groups:
    ldapsearch -x -H ldap://127.0.0.1:3389 -D cn=admin,dc=pic2,dc=test -y $S/ldap-admin.secret \\
      -b dc=pic2,dc=test -o ldif-wrap=no '(objectClass=pic2Managed)'
    getent passwd velobs arto amap          # real POSIX accounts, through nslcd
  Databases, users and grants:
    mariadb --defaults-extra-file=$S/mariadb-admin.cnf -e "SHOW DATABASES; SELECT User, Host FROM mysql.user"
    # the sites' users are granted from the runtimes' network only: use phpMyAdmin, below
  Homes and sites:
    ls -lR $PIC2_DEV_DIR/data/home
  The web runtimes (Apache mpm-itk; PHP 8.2 on 127.0.0.1:8100, PHP 8.4 on 127.0.0.1:8101):
    curl -H 'Host: velobs.test' http://127.0.0.1:8100/
    curl -H 'Host: arto.test' http://127.0.0.1:8101/
    curl -H 'Host: amap.test' http://127.0.0.1:8101/
  SFTP/SSH (127.0.0.1:2222; amap is SFTP-only, its password is in $AMAP_PASSWORD):
    sshpass -f $AMAP_PASSWORD sftp -P 2222 -o StrictHostKeyChecking=no amap@127.0.0.1
  phpMyAdmin (a site's database user, credentials in its home's private/mariadb-*.cnf):
    http://127.0.0.1:8180/
  Containers:
    docker ps --filter label=org.pic2.platform=demo
  More:
    $PIC2 plan --detail        # what would change (exit 0 nothing, 2 changes)
    $PIC2 cost                 # the monthly cost of the hosts
    $PIC2 hosts                # the testers' /etc/hosts block
    echo 'a long passphrase 42' | $PIC2 account set-password velobs --stdin
EOF
