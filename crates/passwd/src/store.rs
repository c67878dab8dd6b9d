//! In-memory state: reset tokens (stored hashed) and the short sessions of the SSH key pages.
//! Nothing is written to disk: a restart invalidates links and sessions, which only costs a
//! new request.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// At most this many live entries of each kind; past it the expired ones go, then new ones
/// are refused (an attacker cannot make the process grow without bound).
const MAX_ENTRIES: usize = 20_000;
/// Reset links alive at once for one account.
const MAX_TOKENS_PER_ACCOUNT: usize = 3;

/// 256 random bits, URL-safe.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Who a reset link is for, read from the directory when it was sent (so setting the password
/// later needs no second look-up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetLink {
    pub account: String,
    pub full_name: String,
    pub mail: Option<String>,
}

struct Reset {
    link: ResetLink,
    issued: Instant,
}

/// Single-use reset tokens; only their SHA-256 is kept.
pub struct ResetTokens {
    ttl: Duration,
    map: Mutex<HashMap<[u8; 32], Reset>>,
}

impl ResetTokens {
    pub fn new(ttl: Duration) -> Self {
        ResetTokens {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// A new token for the account, or `None` when the table is full.
    pub fn issue(&self, link: ResetLink) -> Option<String> {
        let account = link.account.as_str();
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, r| now.duration_since(r.issued) < self.ttl);
        let mut mine: Vec<([u8; 32], Instant)> = map
            .iter()
            .filter(|(_, r)| r.link.account == account)
            .map(|(k, r)| (*k, r.issued))
            .collect();
        mine.sort_by_key(|(_, t)| *t);
        while mine.len() >= MAX_TOKENS_PER_ACCOUNT {
            let (k, _) = mine.remove(0);
            map.remove(&k);
        }
        if map.len() >= MAX_ENTRIES {
            return None;
        }
        let token = random_token();
        map.insert(digest(&token), Reset { link, issued: now });
        Some(token)
    }

    /// What a live token is for, without using it up.
    pub fn peek(&self, token: &str) -> Option<ResetLink> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&digest(token))
            .filter(|r| r.issued.elapsed() < self.ttl)
            .map(|r| r.link.clone())
    }

    /// Uses the token up, with every other link of the same account.
    pub fn consume(&self, token: &str) -> Option<ResetLink> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let r = map.remove(&digest(token))?;
        map.retain(|_, o| o.link.account != r.link.account);
        (r.issued.elapsed() < self.ttl).then_some(r.link)
    }
}

struct Session {
    account: String,
    password: Zeroizing<String>,
    last: Instant,
}

/// Signed-in sessions of the SSH key pages. The password is kept (zeroized on drop) because
/// every change binds as the user: the application has no standing right to anyone's keys.
pub struct Sessions {
    ttl: Duration,
    map: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    pub fn new(ttl: Duration) -> Self {
        Sessions {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn create(&self, account: &str, password: &str) -> Option<String> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, s| now.duration_since(s.last) < self.ttl);
            if map.len() >= MAX_ENTRIES {
                return None;
            }
        }
        let id = random_token();
        map.insert(
            digest(&id),
            Session {
                account: account.to_string(),
                password: Zeroizing::new(password.to_string()),
                last: now,
            },
        );
        Some(id)
    }

    /// The account and password of a live session, whose idle timer restarts.
    pub fn get(&self, id: &str) -> Option<(String, Zeroizing<String>)> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let key = digest(id);
        let live = map.get(&key).is_some_and(|s| s.last.elapsed() < self.ttl);
        if !live {
            map.remove(&key);
            return None;
        }
        let s = map.get_mut(&key)?;
        s.last = Instant::now();
        Some((s.account.clone(), s.password.clone()))
    }

    pub fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&digest(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(account: &str) -> ResetLink {
        ResetLink {
            account: account.into(),
            full_name: String::new(),
            mail: None,
        }
    }

    #[test]
    fn tokens_are_single_use_and_expire() {
        let t = ResetTokens::new(Duration::from_secs(60));
        let a = t.issue(link("velobs")).unwrap();
        let b = t.issue(link("velobs")).unwrap();
        assert_eq!(t.peek(&a).map(|l| l.account).as_deref(), Some("velobs"));
        assert_eq!(t.consume(&a).map(|l| l.account).as_deref(), Some("velobs"));
        assert_eq!(t.consume(&a), None);
        assert_eq!(t.peek(&b), None, "using one link voids the others");
        let expired = ResetTokens::new(Duration::ZERO);
        let c = expired.issue(link("x")).unwrap();
        assert_eq!(expired.peek(&c), None);
    }

    #[test]
    fn at_most_three_links_per_account() {
        let t = ResetTokens::new(Duration::from_secs(60));
        let first = t.issue(link("a")).unwrap();
        for _ in 0..3 {
            t.issue(link("a")).unwrap();
        }
        assert_eq!(t.peek(&first), None);
    }

    #[test]
    fn sessions() {
        let s = Sessions::new(Duration::from_secs(60));
        let id = s.create("a", "pw").unwrap();
        assert_eq!(s.get(&id).unwrap().0, "a");
        s.remove(&id);
        assert!(s.get(&id).is_none());
        assert!(s.get("forged").is_none());
    }
}
