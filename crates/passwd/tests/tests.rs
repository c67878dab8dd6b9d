//! pic2-passwd's integration tests, one binary with a module per area (STYLE.md §13): HTTP
//! through `oneshot`, the flows against the real dev slapd and SMTP capture, and the browser.
//! Services come from `dev/up.sh`; a test whose service is missing fails and says what to start.

mod browser;
mod flows;
mod http;
mod support;
