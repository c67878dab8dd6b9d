#!/usr/bin/env bash
# dev/test.sh: the whole test suite, from a fresh Debian machine of this kind (as root).
#
# Installs and starts every real service the tests need (dev/up.sh: slapd, MariaDB, the NSS
# client, and what later parts add), then checks formatting and lints, then runs every test of
# the workspace: unit tests, golden files, and the end-to-end tests against those services.
# Idempotent: run it again at will. .ci/run runs exactly this.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_root
cd "$REPO_ROOT"

# rustup's cargo, also for a runner whose shell read no profile (it adds ~/.cargo/bin)
[[ -x $HOME/.cargo/bin/cargo ]] && PATH=$HOME/.cargo/bin:$PATH
command -v cargo >/dev/null || die "cargo is not installed: this machine kind ships the Rust toolchain (rustup); install it first"
# a C compiler for the crates that build C (ring, mimalloc)
command -v cc >/dev/null || apt_install gcc libc6-dev

step() { printf '\n==> %s\n' "$*" >&2; }

step "services (dev/up.sh)"
"$DEV_SCRIPTS/up.sh" >/dev/null

step "formatting (cargo fmt --check)"
cargo fmt --all -- --check

step "lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "tests (cargo test --workspace)"
# INSTA_UPDATE=no: a golden file that differs fails the run instead of being rewritten.
LOG=$(mktemp /tmp/pic2-test.XXXXXX)
trap 'rm -f "$LOG"' EXIT
set +e
INSTA_UPDATE=no cargo test --workspace --no-fail-fast 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite (cargo prints one per test binary, the last of which is
# usually an empty doc-test run).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\ntests: %d passed, %d failed\n", p, f }' "$LOG"
exit "$status"
