//! End-to-end tests: the real `pic2` binary against the real slapd and MariaDB that
//! `dev/up.sh` starts. Each test owns a platform of its own (base DN, database names, data
//! folder, lock folder), so they run in parallel without meeting.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod fixture;

mod apply;
mod faults;
mod nss;
mod runtimes;
mod sftp;
