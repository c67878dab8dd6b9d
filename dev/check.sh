#!/usr/bin/env bash
# dev/check.sh: verify the running dev services behave as pic2 expects
# (run after dev/up.sh; exits non-zero on the first failed check).
#
# Creates a throw-away account uid=pic2-devcheck,dc=pic2,dc=test (directly
# under the suffix, so ou=people stays pic2's to create) and deletes it again.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root

H=ldap://127.0.0.1:${PIC2_LDAP_PORT:-3389}
SUFFIX=dc=pic2,dc=test
ADMIN=(-x -H "$H" -D "cn=admin,$SUFFIX" -y "$SECRETS_DIR/ldap-admin.secret")
NSS=(-x -H "$H" -D "cn=nss,$SUFFIX" -y "$SECRETS_DIR/ldap-nss.secret")
NAME=pic2-devcheck
USER_DN=uid=$NAME,$SUFFIX
umask 077
TMP=$(mktemp -d)
cleanup() {
    ldapdelete "${ADMIN[@]}" "$USER_DN" >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT

n=0
ok() { n=$((n + 1)); printf '  ok %2d  %s\n' "$n" "$*"; }
fail() { printf '  FAIL    %s\n' "$*" >&2; exit 1; }

ldapwhoami "${ADMIN[@]}" >/dev/null || fail "ldapwhoami as cn=admin,$SUFFIX"
ok "admin binds (ldapwhoami)"
ldapwhoami "${NSS[@]}" >/dev/null || fail "ldapwhoami as cn=nss,$SUFFIX"
ok "service DN binds"

ldapdelete "${ADMIN[@]}" "$USER_DN" >/dev/null 2>&1 || true
ldapadd "${ADMIN[@]}" >/dev/null <<EOF || fail "adding $USER_DN"
dn: $USER_DN
objectClass: inetOrgPerson
objectClass: posixAccount
objectClass: shadowAccount
objectClass: ldapPublicKey
objectClass: pic2Managed
pic2Platform: dev-check
uid: $NAME
cn: pic2 dev check
sn: check
uidNumber: 64999
gidNumber: 64999
homeDirectory: /nonexistent
loginShell: /usr/sbin/nologin
sshPublicKey: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDevCheckDevCheckDevCheckDevCheckDevCheck check
EOF
ok "admin adds a posixAccount with ldapPublicKey + pic2Managed"

# passwords go through files, never argv
printf '%s' "first-$RANDOM$RANDOM" >"$TMP/pw1"
printf '%s' "second-$RANDOM$RANDOM" >"$TMP/pw2"
ldappasswd "${ADMIN[@]}" -T "$TMP/pw1" "$USER_DN" >/dev/null || fail "admin sets the password (Password Modify)"
ok "admin sets the user's password with Password Modify"

out=$(ldapsearch -x -H "$H" -LLL -b "$SUFFIX" '(objectClass=*)' 2>&1) || true
! grep -q '^dn:' <<<"$out" || fail "anonymous search returned entries: $out"
ok "anonymous search on $SUFFIX returns nothing"

out=$(ldapsearch "${NSS[@]}" -LLL -o ldif-wrap=no -b "$SUFFIX" "(uid=$NAME)" '*' userPassword) ||
    fail "service DN search"
grep -q '^uidNumber: 64999$' <<<"$out" || fail "service DN cannot read the account: $out"
grep -q '^sshPublicKey' <<<"$out" || fail "service DN cannot read sshPublicKey"
! grep -qi '^userPassword' <<<"$out" || fail "service DN can read userPassword"
ok "service DN reads the account and its key, not its userPassword"

ldapwhoami -x -H "$H" -D "$USER_DN" -y "$TMP/pw1" >/dev/null || fail "user bind with own password"
ok "user binds with its own password"
ldappasswd -x -H "$H" -D "$USER_DN" -y "$TMP/pw1" -t "$TMP/pw1" -T "$TMP/pw2" >/dev/null ||
    fail "user changes own password (ldappasswd)"
ldapwhoami -x -H "$H" -D "$USER_DN" -y "$TMP/pw2" >/dev/null || fail "bind with the new password"
! ldapwhoami -x -H "$H" -D "$USER_DN" -y "$TMP/pw1" >/dev/null 2>&1 || fail "old password still works"
ok "user changes its own password with Password Modify; old one rejected"

# (slapd 2.5.13's argon2 module stores the Password Modify result with
# trailing NUL bytes; binds work regardless, so strip them before looking)
hash=$(ldapsearch "${ADMIN[@]}" -LLL -o ldif-wrap=no -s base -b "$USER_DN" userPassword |
    sed -n 's/^userPassword:: //p' | base64 -d | tr -d '\0')
[[ $hash == '{ARGON2}'* ]] || fail "stored hash is not {ARGON2}: ${hash:0:20}..."
ok "stored hash is {ARGON2} (${hash:0:30}...)"

out=$(ldapsearch -x -H "$H" -D "$USER_DN" -y "$TMP/pw2" -LLL -s base -b "$USER_DN" '*' userPassword) ||
    fail "user reads own entry"
grep -q '^uid: ' <<<"$out" || fail "user cannot read its own entry"
! grep -qi '^userPassword' <<<"$out" || fail "user can read its own userPassword"
out=$(ldapsearch -x -H "$H" -D "$USER_DN" -y "$TMP/pw2" -LLL -s base -b "cn=nss,$SUFFIX" 2>&1) || true
! grep -q '^dn:' <<<"$out" || fail "user can read another entry"
ok "user reads its own entry (not its userPassword), not others"

out=$(mariadb --defaults-extra-file="$SECRETS_DIR/mariadb-admin.cnf" --batch --skip-column-names \
    -e 'select current_user()') || fail "mariadb with mariadb-admin.cnf"
[[ $out == pic2@fd00:5049:4332::1 ]] || fail "mariadb current_user() is '$out'"
ok "mariadb --defaults-extra-file=mariadb-admin.cnf: current_user() = $out"
grants=$(mariadb --defaults-extra-file="$SECRETS_DIR/mariadb-admin.cnf" --batch --skip-column-names \
    -e 'show grants')
grep -q 'ALL PRIVILEGES ON \*\.\* .*WITH GRANT OPTION' <<<"$grants" || fail "pic2 lacks ALL ... WITH GRANT OPTION"
ok "pic2 has ALL PRIVILEGES ON *.* WITH GRANT OPTION"
! mariadb --no-defaults -h 127.0.0.1 -P "${PIC2_MARIADB_PORT:-3307}" -u root -e 'select 1' >/dev/null 2>&1 ||
    fail "root logs in over TCP without a password"
ok "root has no TCP login (socket auth only)"

out=$(getent passwd "$NAME") || fail "getent passwd $NAME (nslcd log: $LOG_DIR/nslcd.log)"
[[ $out == "$NAME:x:64999:64999:"* ]] || fail "getent passwd gave '$out'"
ok "getent passwd resolves the LDAP account through nslcd: $out"

echo "all $n checks passed"
