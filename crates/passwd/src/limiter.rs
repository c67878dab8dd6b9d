//! Rate limiting with back-off, per client address and per account name.
//!
//! Each key (an address, or an account name whether or not it exists) has a count of recent
//! failures. The first `free` ones cost nothing; after that each failure doubles the wait
//! before the next attempt (from 2 s up to 1 h). A success clears an account's key, and only
//! gives back its own attempt to an address's; keys forget after an hour of quiet. The table is bounded: past `MAX_KEYS` the quiet entries are dropped first,
//! then the oldest.
//!
//! A sign-in is counted as a failure when it starts ([`Limiter::attempt`]), under the same
//! lock as the check, and given back if it succeeds: counted only once it had failed, 300
//! guesses sent at once all passed the check before the first was counted.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The key a client address is limited under: an IPv6 client's /64 (what one host is
/// usually given, and can walk through to start each try afresh), an IPv4 one as it is
/// (an IPv4-mapped IPv6 address as the IPv4 one).
pub fn address_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4.to_string(),
    }
}

const FORGET_AFTER: Duration = Duration::from_secs(3600);
const MAX_WAIT: Duration = Duration::from_secs(3600);
const MAX_KEYS: usize = 50_000;

#[derive(Debug)]
struct Entry {
    failures: u32,
    blocked_until: Instant,
    last: Instant,
}

#[derive(Debug)]
pub struct Limiter {
    free: u32,
    base: Duration,
    table: Mutex<HashMap<String, Entry>>,
}

impl Limiter {
    pub fn new(free: u32, base: Duration) -> Self {
        Limiter {
            free,
            base,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while the key is blocked.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        match self.lock().get(key) {
            Some(e) if e.blocked_until > now => Err(e.blocked_until - now),
            _ => Ok(()),
        }
    }

    /// Counts one failure (or one use, for limits on how often something may be done).
    pub fn fail(&self, key: &str) {
        let mut table = self.lock();
        self.count(&mut table, key, Instant::now());
    }

    /// `Err(wait)` while the key is blocked; otherwise counts an attempt as a failure at once,
    /// to be given back by [`refund`](Self::refund) or cleared by
    /// [`succeed`](Self::succeed) if it was not one.
    pub fn attempt(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut table = self.lock();
        if let Some(e) = table.get(key).filter(|e| e.blocked_until > now) {
            return Err(e.blocked_until - now);
        }
        self.count(&mut table, key, now);
        Ok(())
    }

    /// Gives back one attempt counted by [`attempt`](Self::attempt) that was not a failure
    /// (a sign-in that succeeded, or that the directory could not answer), and the block it
    /// may have set.
    pub fn refund(&self, key: &str) {
        let now = Instant::now();
        let mut table = self.lock();
        if let Some(e) = table.get_mut(key) {
            e.failures = e.failures.saturating_sub(1);
            if e.failures <= self.free {
                e.blocked_until = e.blocked_until.min(now);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, table: &mut HashMap<String, Entry>, key: &str, now: Instant) {
        if table.len() >= MAX_KEYS && !table.contains_key(key) {
            table.retain(|_, e| now.duration_since(e.last) < FORGET_AFTER && e.blocked_until > now);
            if table.len() >= MAX_KEYS {
                if let Some(oldest) = table
                    .iter()
                    .min_by_key(|(_, e)| e.last)
                    .map(|(k, _)| k.clone())
                {
                    table.remove(&oldest);
                }
            }
        }
        let e = table.entry(key.to_string()).or_insert(Entry {
            failures: 0,
            blocked_until: now,
            last: now,
        });
        if now.duration_since(e.last) >= FORGET_AFTER {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last = now;
        if e.failures > self.free {
            let doublings = (e.failures - self.free - 1).min(20);
            let wait = self.base.saturating_mul(1 << doublings).min(MAX_WAIT);
            e.blocked_until = now + wait;
        }
    }

    /// Clears the key after a success.
    pub fn succeed(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_limited_per_64_and_a_mapped_ipv4_one_as_ipv4() {
        let key = |a: &str| address_key(a.parse().unwrap());
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
        assert_eq!(key("192.0.2.1"), "192.0.2.1");
    }

    #[test]
    fn backs_off_after_the_free_failures_and_clears_on_success() {
        let l = Limiter::new(2, Duration::from_secs(2));
        l.fail("a");
        l.fail("a");
        assert!(l.check("a").is_ok());
        l.fail("a");
        let w1 = l.check("a").unwrap_err();
        assert!(w1 <= Duration::from_secs(2) && w1 > Duration::from_secs(1));
        l.fail("a");
        assert!(l.check("a").unwrap_err() > Duration::from_secs(3));
        assert!(l.check("b").is_ok());
        l.succeed("a");
        assert!(l.check("a").is_ok());
    }

    /// Attempts are counted as they start: of many at once, only the free ones pass; one
    /// given back (it succeeded) lifts the block it set, and no more.
    #[test]
    fn attempts_are_counted_as_they_start_and_given_back_when_not_failures() {
        let l = Limiter::new(2, Duration::from_secs(2));
        let passed = (0..300).filter(|_| l.attempt("a").is_ok()).count();
        assert_eq!(passed, 3, "the free ones, and the one that sets the block");
        let l = Limiter::new(2, Duration::from_secs(2));
        for _ in 0..3 {
            l.attempt("a").unwrap();
        }
        assert!(l.check("a").is_err());
        l.refund("a");
        assert!(l.check("a").is_ok(), "a success's count kept the block");
        l.attempt("a").unwrap();
        assert!(l.check("a").is_err(), "the refund gave back more than one");
    }
}
