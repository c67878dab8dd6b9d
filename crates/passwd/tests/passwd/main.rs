//! pic2-passwd's integration tests, one binary with a module per area (STYLE.md §13): HTTP
//! through `oneshot`, the flows against the real dev slapd and SMTP capture, and the browser.
//! Services come from `dev/up.sh`; a test whose service is missing fails and says what to start.

// Tests may unwrap and index (the workspace lints deny it in library code only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod browser;
mod flows;
mod http;
mod support;
