#!/usr/bin/env bash
# Plan and apply at scale: pic2's first apply and no-op plan against the raw client tools
# doing the same reads and writes (the "floor"), for N accounts + N sites + N databases.
#
#   bench/plan/run.sh                 # N = 100 1000 10000
#   bench/plan/run.sh 100 1000        # chosen sizes
#   PIC2=path/to/pic2 bench/plan/run.sh   # an already built binary (default: build release)
#   KEEP=1 bench/plan/run.sh 1000     # leave bench-N in place after the run, for inspection
#
# Needs the dev services (dev/up.sh) and root (pic2 and the floor chown folders). Talks only
# to 127.0.0.1; secrets are read from files (-y for the LDAP tools, --defaults-extra-file for
# mariadb), never put on a command line. Timings are informational: the script exits non-zero
# only when something fails (a command errors, a no-op plan is not empty, a service restarts).
#
# See bench/plan/README.md for what is measured and why.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DEV=${PIC2_DEV_DIR:-/var/lib/pic2-dev}
SUFFIX="dc=pic2,dc=test"
LDAP_URL="ldap://127.0.0.1:3389"
LDAP_ADMIN="cn=admin,$SUFFIX"
LDAP_SECRET="$DEV/secrets/ldap-admin.secret"
MARIADB_CNF="$DEV/secrets/mariadb-admin.cnf"
# The same filter pic2's directory observer uses, so the floor reads what pic2 reads.
LDAP_FILTER='(|(objectClass=posixAccount)(objectClass=posixGroup)(objectClass=pic2Managed)(objectClass=organizationalUnit))'
PLAN_RUNS=3   # no-op plans and floor reads are repeated; the median is reported
# The interpreter itself, not a pyenv shim: a shim costs ~0.2 s per start, which would land in
# the folders floor and blur phases.py's stamps. Isolated mode (-I): no user site, no env.
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x /usr/bin/python3 ]]; then
        PYTHON=/usr/bin/python3
    else
        PYTHON=$(python3 -c 'import sys; print(sys.executable)')
    fi
fi
py() { "$PYTHON" -I "$@"; }

SIZES=("$@")
SERVICES=""   # the services' pids when the current size started
[[ ${#SIZES[@]} -gt 0 ]] || SIZES=(100 1000 10000)

WORK=$(mktemp -d /tmp/pic2-bench-plan.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
FAILED=0
RESULTS="$WORK/results.tsv"   # one line per N, turned into the table at the end
: >"$RESULTS"

log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    # A failure right after a service restart is the restart's, not pic2's: say so.
    if [[ -n ${SERVICES:-} && $(services_id) != "$SERVICES" ]]; then
        log "note: slapd or MariaDB was restarted during this size (dev/up.sh or a test?): run again"
    fi
    exit 1
}
now() { date +%s.%N; }
# Seconds between two `now` stamps, 3 decimals.
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
# The median of its arguments (numbers).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "-" }'; }

# ---------------------------------------------------------------------------------------------
# Setup

check_prerequisites() {
    [[ $(id -u) -eq 0 ]] || die "run as root (pic2 and the floor create folders owned by other uids)"
    local tool
    for tool in "$PYTHON" ldapsearch ldapadd ldapdelete mariadb find awk; do
        command -v "$tool" >/dev/null || die "missing $tool"
    done
    [[ -r $LDAP_SECRET && -r $MARIADB_CNF ]] || die "no dev secrets in $DEV/secrets: run dev/up.sh"
    local n
    for n in "${SIZES[@]}"; do
        [[ $n =~ ^[1-9][0-9]*$ && $n -le 20000 ]] || die "N must be an integer in 1..20000, got '$n'"
    done
    # Both services answer (a cheap query each), else every later step would fail confusingly.
    ldapsearch -x -H "$LDAP_URL" -D "$LDAP_ADMIN" -y "$LDAP_SECRET" -b "$SUFFIX" -s base \
        -LLL dn >/dev/null || die "slapd does not answer on $LDAP_URL: run dev/up.sh"
    mariadb --defaults-extra-file="$MARIADB_CNF" -e 'SELECT 1' >/dev/null \
        || die "MariaDB does not answer on 127.0.0.1:3307: run dev/up.sh"
}

build_pic2() {
    if [[ -n ${PIC2:-} ]]; then
        [[ -x $PIC2 ]] || die "PIC2=$PIC2 is not an executable"
        return
    fi
    log "building pic2 (cargo build --release -p pic2)"
    (cd "$ROOT" && cargo build --release -p pic2 --quiet) || die "cargo build failed"
    PIC2="$ROOT/target/release/pic2"
}

# The dev services are shared (dev/up.sh, the e2e tests): a restart in the middle of a run
# (dev/ldap.sh wipes the LDAP data when the schema changes) would show as a broken apply or a
# non-empty plan. The pids before and after each size tell it apart from a pic2 bug.
services_id() { cat "$DEV/run/slapd.pid" "$DEV/run/mariadb.pid" 2>/dev/null | tr '\n' ' '; }
# Timings on 2 cores mean little while a cargo build runs beside them: say so in the report.
same_services() {
    [[ $(services_id) == "$SERVICES" ]] \
        || die "slapd or MariaDB was restarted during the N=$1 run: its figures are void"
}
load_average() { cut -d' ' -f1 /proc/loadavg; }

# ---------------------------------------------------------------------------------------------
# Names. Everything of one run is named from (PREFIX, N); PREFIX is "bench" for what pic2
# applies and "benchfloor" for what the raw tools write. gen.py uses the same rules.

platform_of() { echo "$1-$2"; }                              # bench-1000
base_dn_of() { echo "ou=$1-$2,$SUFFIX"; }                    # ou=bench-1000,dc=pic2,dc=test
data_dir_of() { echo "$DEV/$1-$2"; }                         # /var/lib/pic2-dev/bench-1000
# Database and user names: bench_1000_00042. An anchored regexp, so N=100 never matches
# bench_1000_… and nothing that is not ours matches at all.
db_regexp_of() { echo "^$1_$2_[0-9]{5}\$"; }

# Removes every object of (PREFIX, N) from the three systems, and nothing else.
clean() {
    local prefix=$1 n=$2 base data re rc=0 t t_ldap t_sql
    t=$(now)
    base=$(base_dn_of "$prefix" "$n")
    data=$(data_dir_of "$prefix" "$n")
    re=$(db_regexp_of "$prefix" "$n")

    # LDAP: the whole subtree; "no such object" (32) means it is already gone.
    ldapdelete -x -H "$LDAP_URL" -D "$LDAP_ADMIN" -y "$LDAP_SECRET" -r "$base" 2>/dev/null || rc=$?
    [[ $rc -eq 0 || $rc -eq 32 ]] || die "ldapdelete -r $base failed (exit $rc)"
    t_ldap=$(since "$t")
    t=$(now)

    # MariaDB: list the matching databases and users, then drop them in one session. The
    # users go in one DROP USER per 500 names (one statement per user is much slower).
    local sql="$WORK/clean-$prefix-$n.sql"
    mariadb --defaults-extra-file="$MARIADB_CNF" -N -B -e "
        SELECT CONCAT('DROP DATABASE \`', SCHEMA_NAME, '\`;')
          FROM information_schema.SCHEMATA WHERE SCHEMA_NAME REGEXP '$re';
        SELECT CONCAT('''', User, '''@''', Host, '''')
          FROM mysql.user WHERE User REGEXP '$re';" >"$WORK/clean.lst"
    {
        grep '^DROP DATABASE' "$WORK/clean.lst" || true
        { grep -v '^DROP DATABASE' "$WORK/clean.lst" || true; } \
            | awk '{ u = u (u == "" ? "" : ", ") $0 }
                   NR % 500 == 0 { print "DROP USER " u ";"; u = "" }
                   END { if (u != "") print "DROP USER " u ";" }'
    } >"$sql"
    if [[ -s $sql ]]; then
        mariadb --defaults-extra-file="$MARIADB_CNF" <"$sql" || die "dropping $prefix $n databases/users failed"
    fi
    t_sql=$(since "$t")
    t=$(now)

    # Files: only the data dir named after (PREFIX, N), never a parent.
    [[ $data == "$DEV/$prefix-$n" && -n $prefix ]] || die "refusing to remove '$data'"
    rm -rf --one-file-system "$data"
    log "  cleaned $prefix-$n: ldap ${t_ldap}s, sql ${t_sql}s, files $(since "$t")s"
}

# ---------------------------------------------------------------------------------------------
# The floor: what the raw client tools need for the same work.

# Writes the floor objects from a rendered inventory: LDIF over one ldapadd connection, the SQL
# through one mariadb session, the folders and small files of the layout from one python loop.
# Prints the three times, space-separated.
floor_write() {
    local render=$1 t ldap sql files
    t=$(now)
    ldapadd -c -x -H "$LDAP_URL" -D "$LDAP_ADMIN" -y "$LDAP_SECRET" \
        -f "$render/directory/entries.ldif" >/dev/null || die "floor ldapadd failed"
    ldap=$(since "$t")

    # The rendered SQL goes database by database (CREATE DATABASE, CREATE USER, GRANT); run
    # as it is, MariaDB takes about twice as long as with each kind of statement together,
    # which is also the order pic2 applies. The floor is the faster of the two.
    local sql_file="$render/databases/grouped.sql"
    { grep '^CREATE DATABASE' "$render/databases/databases.sql"
      grep '^CREATE USER' "$render/databases/databases.sql"
      grep '^GRANT' "$render/databases/databases.sql"; } >"$sql_file"
    t=$(now)
    mariadb --defaults-extra-file="$MARIADB_CNF" <"$sql_file" || die "floor SQL failed"
    sql=$(since "$t")

    t=$(now)
    py "$HERE/gen.py" --make-layout "$render/files/layout.txt" || die "floor folders failed"
    files=$(since "$t")
    echo "$ldap $sql $files"
}

# The raw reads of the same N: the subtree with pic2's filter, the three SQL queries in one
# session, a walk of the data dir with numeric owners. Prints the total seconds.
floor_read() {
    local prefix=$1 n=$2 expect=$3 t got
    t=$(now)
    ldapsearch -x -H "$LDAP_URL" -D "$LDAP_ADMIN" -y "$LDAP_SECRET" -b "$(base_dn_of "$prefix" "$n")" \
        -LLL -o ldif-wrap=no "$LDAP_FILTER" >"$WORK/floor.ldif" || die "floor ldapsearch failed"
    mariadb --defaults-extra-file="$MARIADB_CNF" -N -B -e "
        SELECT SCHEMA_NAME, SCHEMA_COMMENT FROM information_schema.SCHEMATA;
        SELECT User, Host FROM mysql.user;
        SELECT * FROM mysql.db" >/dev/null || die "floor SQL read failed"
    find "$(data_dir_of "$prefix" "$n")" -printf '%U %G %m %p\n' >/dev/null
    since "$t"
    # A short read (size limit) would make the floor look cheap: count what came back.
    got=$(grep -c '^dn:' "$WORK/floor.ldif" || true)
    [[ $got -eq $expect ]] || die "floor ldapsearch returned $got entries, expected $expect"
}

# ---------------------------------------------------------------------------------------------
# pic2

# From `plan --json`: "round_trips changes per-system-stats".
json_plan() {
    py -c '
import json, sys
d = json.load(sys.stdin)
per = ",".join("%s:%d/%.3fs" % (s["system"], s["round_trips"],
               s["elapsed_ms"] / 1e3) for s in d["observed"])
print(d["round_trips"], len(d["changes"]), per)'
}

# Prints the first changes of a plan that should have been empty, for the report.
show_changes() {
    py -c '
import json, sys
d = json.load(sys.stdin)
for c in d["changes"][:10]: print("    ", c.get("summary", c))
print("     (%d changes, %d conflicts)" % (len(d["changes"]), len(d["conflicts"])))' >&2
}

# ---------------------------------------------------------------------------------------------
# One size

bench_one() {
    local n=$1 dir="$WORK/$1" t rc
    mkdir -p "$dir"
    SERVICES=$(services_id)   # checked by same_services and die
    log "N=$n: generating the inventories"
    py "$HERE/gen.py" "$n" bench "$dir/bench.toml"
    py "$HERE/gen.py" "$n" benchfloor "$dir/floor.toml"
    "$PIC2" -c "$dir/bench.toml" render --out "$dir/render-bench" >/dev/null
    "$PIC2" -c "$dir/floor.toml" render --out "$dir/render-floor" >/dev/null
    local entries
    entries=$(grep -c '^dn:' "$dir/render-bench/directory/entries.ldif")

    log "N=$n: clean slate (ou=bench-$n, ou=benchfloor-$n, their databases, users, folders)"
    clean bench "$n"
    clean benchfloor "$n"

    # The floor's writes go first, on the same server state the first apply will find, then
    # are removed: writing them beside bench-N would make MariaDB's CREATE USER (which slows
    # down with the number of users) costlier for one side only.
    log "N=$n: floor write (ldapadd, SQL, folders)"
    local fw_parts fw
    fw_parts=$(floor_write "$dir/render-floor")
    fw=$(awk '{ printf "%.3f", $1 + $2 + $3 }' <<<"$fw_parts")
    clean benchfloor "$n"

    # Text output, not --json: its progress lines, stamped by phases.py, split the time by
    # system. The pipe costs nothing measurable (one line per percent of the changes).
    log "N=$n: pic2 apply --yes"
    t=$(now)
    rc=0
    "$PIC2" -c "$dir/bench.toml" --color never apply --yes 2>&1 \
        | py "$HERE/phases.py" "$t" "$dir/phases.txt" 2>"$dir/apply.log" || rc=$?
    local apply_s changes phases
    apply_s=$(since "$t")
    if [[ $rc -ne 0 ]]; then
        tail -20 "$dir/apply.log" >&2
        die "pic2 apply failed (exit $rc)"
    fi
    read -r changes phases <"$dir/phases.txt"
    same_services "$n"

    log "N=$n: no-op plan x$PLAN_RUNS"
    local plan_times=() plan_info="" i
    for ((i = 1; i <= PLAN_RUNS; i++)); do
        t=$(now)
        rc=0
        "$PIC2" -c "$dir/bench.toml" plan --json >"$dir/plan.json" 2>"$dir/plan.err" || rc=$?
        plan_times+=("$(since "$t")")
        if [[ $rc -eq 1 ]]; then
            cat "$dir/plan.err" >&2
            die "pic2 plan failed"
        fi
        plan_info=$(json_plan <"$dir/plan.json")
        if [[ $rc -ne 0 ]]; then
            same_services "$n"
            log "N=$n: the plan after apply is NOT empty (exit $rc):"
            show_changes <"$dir/plan.json"
            FAILED=1
        fi
    done
    local plan_s trips stats
    plan_s=$(median "${plan_times[@]}")
    read -r trips _ stats <<<"$plan_info"

    log "N=$n: floor read x$PLAN_RUNS"
    local read_times=()
    for ((i = 1; i <= PLAN_RUNS; i++)); do
        read_times+=("$(floor_read bench "$n" "$entries")")
    done
    local fr
    fr=$(median "${read_times[@]}")

    same_services "$n"

    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$apply_s" "$changes" "$fw" "$fw_parts" \
        "$plan_s" "$trips" "$fr" "$stats" "$phases" >>"$RESULTS"
    log "N=$n: apply ${apply_s}s ($changes changes; $phases), floor write ${fw}s (ldap sql files: $fw_parts);" \
        "no-op plan ${plan_s}s [${plan_times[*]}], $trips round trips ($stats), floor read ${fr}s [${read_times[*]}]"

    if [[ -z ${KEEP:-} ]]; then
        # Leave nothing behind, so the next N (and the next run) start from the same server.
        clean bench "$n"
    fi
}

# ---------------------------------------------------------------------------------------------
# Report

report() {
    echo
    printf '%7s | %13s | %8s | %13s | %5s | %12s | %11s | %13s | %5s\n' \
        N "first apply s" changes "floor write s" ratio "no-op plan s" "round trips" "floor read s" ratio
    printf -- '--------+---------------+----------+---------------+-------+--------------+-------------+---------------+------\n'
    local n apply changes fw fwp plan trips fr stats
    while IFS=$'\t' read -r n apply changes fw fwp plan trips fr stats phases; do
        printf '%7s | %13s | %8s | %13s | %5s | %12s | %11s | %13s | %5s\n' \
            "$n" "$apply" "$changes" "$fw" "$(ratio "$apply" "$fw")" \
            "$plan" "$trips" "$fr" "$(ratio "$plan" "$fr")"
    done <"$RESULTS"
    echo
    echo "where the time goes (s):"
    while IFS=$'\t' read -r n apply changes fw fwp plan trips fr stats phases; do
        printf '  N=%-6s first apply: %s\n' "$n" "$phases"
        printf '  %-8s floor write: %s\n' "" "$(awk '{ printf "directory=%s databases=%s files=%s", $1, $2, $3 }' <<<"$fwp")"
        printf '  %-8s no-op plan reads (system:round trips/time): %s\n' "" "$stats"
    done <"$RESULTS"

    # The targets of the issue; informational, the benchmark never fails on timing.
    echo
    echo "targets:"
    local row
    row=$(awk -F'\t' '$1 == 10000' "$RESULTS")
    if [[ -n $row ]]; then
        IFS=$'\t' read -r n apply changes fw fwp plan trips fr stats phases <<<"$row"
        verdict "no-op plan at 10,000 < 1 s" "$(awk -v p="$plan" 'BEGIN { print (p < 1) }')" "${plan}s"
        verdict "no-op plan at 10,000 <= 10 round trips" "$((trips <= 10))" "$trips"
    else
        echo "  no-op plan at 10,000 < 1 s with <= 10 round trips: not measured (N=10000 not run)"
    fi
    row=$(awk -F'\t' '$1 == 1000' "$RESULTS")
    if [[ -n $row ]]; then
        IFS=$'\t' read -r n apply changes fw fwp plan trips fr stats phases <<<"$row"
        verdict "first apply at 1,000 < 5 s" "$(awk -v a="$apply" 'BEGIN { print (a < 5) }')" "${apply}s"
    else
        echo "  first apply at 1,000 < 5 s: not measured (N=1000 not run)"
    fi
}

verdict() { printf '  %-42s %-4s (%s)\n' "$1" "$([[ $2 -eq 1 ]] && echo PASS || echo MISS)" "$3"; }

main() {
    local started
    started=$(now)
    check_prerequisites
    build_pic2
    log "pic2: $PIC2; sizes: ${SIZES[*]}; load average $(load_average) on $(nproc) cores"
    local n
    for n in "${SIZES[@]}"; do
        bench_one "$n"
    done
    report
    echo
    echo "total $(since "$started") s; 1-minute load average now $(load_average) on $(nproc) cores" \
        "(above ~0.5 before the run, other work skews the figures)"
    if [[ $FAILED -ne 0 ]]; then
        log "a no-op plan was not empty (see above)"
        exit 1
    fi
}

main
