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
/// Signed-in sessions at once for one account (a phone, a laptop, …).
const MAX_SESSIONS_PER_ACCOUNT: usize = 5;

/// 256 random bits, URL-safe.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Drops the oldest of one account's entries (those `mine` gives a time) until there is
/// room for one more under `max`.
fn make_room<V>(map: &mut HashMap<[u8; 32], V>, max: usize, mine: impl Fn(&V) -> Option<Instant>) {
    let mut theirs: Vec<([u8; 32], Instant)> = map
        .iter()
        .filter_map(|(k, v)| Some((*k, mine(v)?)))
        .collect();
    theirs.sort_by_key(|(_, t)| *t);
    let excess = (theirs.len() + 1).saturating_sub(max);
    for (k, _) in theirs.into_iter().take(excess) {
        map.remove(&k);
    }
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
        make_room(&mut map, MAX_TOKENS_PER_ACCOUNT, |r| {
            (r.link.account == account).then_some(r.issued)
        });
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

    /// Takes a live token out, so that no other request can use it meanwhile: once the
    /// password is set, [`void`](Self::void) the account's other links; if it could not be,
    /// [`put_back`](Self::put_back) this one (the link must not be spent by a directory that
    /// was down).
    pub fn take(&self, token: &str) -> Option<Taken> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let key = digest(token);
        let r = map.remove(&key)?;
        (r.issued.elapsed() < self.ttl).then_some(Taken { key, reset: r })
    }

    /// Puts back a token [`take`](Self::take)n for a password that could not be set, with
    /// the time it was issued (it expires as it would have).
    pub fn put_back(&self, taken: Taken) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(taken.key, taken.reset);
    }

    /// Voids every link of `account`: its password has just been set or changed.
    pub fn void(&self, account: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, o| o.link.account != account);
    }
}

/// A reset token taken out of the table (see [`ResetTokens::take`]).
pub struct Taken {
    key: [u8; 32],
    reset: Reset,
}

impl Taken {
    pub fn link(&self) -> &ResetLink {
        &self.reset.link
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

    /// A new session, or `None` when the table is full of live ones. The expired ones go
    /// first (each holds a password, which must not outlive its session by long), and an
    /// account keeps its [`MAX_SESSIONS_PER_ACCOUNT`] newest: one member signing in again
    /// and again cannot fill the table and lock the others out.
    pub fn create(&self, account: &str, password: &str) -> Option<String> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| now.duration_since(s.last) < self.ttl);
        make_room(&mut map, MAX_SESSIONS_PER_ACCOUNT, |s| {
            (s.account == account).then_some(s.last)
        });
        if map.len() >= MAX_ENTRIES {
            return None;
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
        let taken = t.take(&a).unwrap();
        assert_eq!(taken.link().account, "velobs");
        assert!(t.take(&a).is_none(), "taken twice");
        t.put_back(taken);
        assert!(t.peek(&a).is_some(), "not put back");
        t.take(&a).unwrap();
        t.void("velobs");
        assert_eq!(
            t.peek(&b),
            None,
            "setting the password voids the other links"
        );
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
        let first = s.create("a", "pw").unwrap();
        let others: Vec<String> = (0..MAX_SESSIONS_PER_ACCOUNT)
            .map(|_| s.create("a", "pw").unwrap())
            .collect();
        assert!(
            s.get(&first).is_none(),
            "an account's oldest session was kept"
        );
        assert!(others.iter().all(|id| s.get(id).is_some()));
        let b = s.create("b", "pw").unwrap();
        assert!(s.get(&b).is_some(), "another account's session went");
    }
}
