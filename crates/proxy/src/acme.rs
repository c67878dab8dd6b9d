//! Certificates over ACME (RFC 8555) with `instant-acme`: HTTP-01 (tokens answered by the
//! plain listener) or TLS-ALPN-01 (a challenge certificate picked by the resolver).
//!
//! A site is due when it has no certificate that can be served, when its certificate does
//! not name every host of the site (an alias added), or when less than `renew_before` is left
//! — at most half the certificate's lifetime, so that a short-lived certificate is renewed at
//! half-life rather than on every pass. A new certificate is written (0600) and served at
//! once. Failures back off exponentially per site (base × 2ⁿ, capped at a day), which also
//! keeps the proxy under the CA's rate limits; a `rateLimited` answer waits an hour at least.
//! The account key is kept in the state folder.
//!
//! One name that fails its validation does not cost the site its certificate: an alias whose
//! DNS points elsewhere (common on a migration night) is left out, the certificate is ordered
//! at once for the names that remain, and the refused name waits out a back-off of its own
//! before the next order tries it again (Let's Encrypt allows 5 failed validations an hour
//! per name). Caddy avoids the question with one certificate per name; pic2 keeps one per
//! site, which the CA's limit on certificates per week (50 per registered domain) favours.

use crate::tls::{acme_paths, now_secs, Certs, Leaf};
use crate::Error;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use pic2_render::proxy::{RouteTls, Routes};
use rustls_pki_types::PrivateKeyDer;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest one issuance may take, from the order to the certificate on disk.
const ISSUE_TIME: Duration = Duration::from_secs(300);

#[derive(Clone, Debug)]
pub struct AcmeOptions {
    pub renew_before: Duration,
    pub backoff_base: Duration,
    pub check_interval: Duration,
    /// The longest wait for the account (read or created): a CA that takes connections and
    /// never answers would otherwise cost each site of a pass its whole issuance time.
    pub account_timeout: Duration,
}

impl Default for AcmeOptions {
    fn default() -> Self {
        AcmeOptions {
            renew_before: Duration::from_secs(30 * 86400),
            backoff_base: Duration::from_secs(60),
            check_interval: Duration::from_secs(3600),
            account_timeout: Duration::from_secs(60),
        }
    }
}

/// A site's failed issuances, and when to try again.
#[derive(Default)]
struct Backoff {
    failures: u32,
    next_try: Option<Instant>,
    /// The names they were for: another set (an alias that never pointed here dropped
    /// from the inventory, then a reload) is tried at once, not after up to a day.
    hosts: Vec<String>,
    /// The last failure was the CA's rate limit, which an admin's retry does not lift.
    rate_limited: bool,
}

impl Backoff {
    /// Whether an issuance for `hosts` must wait still.
    fn holds(&self, hosts: &[String], now: Instant) -> bool {
        // the CA's rate limit counts per account and domain, whatever the names asked
        (self.rate_limited || self.hosts == hosts) && self.next_try.is_some_and(|t| now < t)
    }

    /// Counts a failure for `hosts` (the first of a new set of names starts the count
    /// again), waiting as [`backoff_wait`] says.
    fn failed(&mut self, hosts: &[String], base: Duration, rate_limited: bool) {
        if self.hosts != hosts {
            *self = Backoff {
                hosts: hosts.to_vec(),
                ..Backoff::default()
            };
        }
        self.failures = self.failures.saturating_add(1);
        self.rate_limited = rate_limited;
        self.next_try = Some(Instant::now() + backoff_wait(self.failures, base, rate_limited));
    }
}

/// The least wait before a refused name is tried again: Let's Encrypt allows 5 failed
/// validations an hour for a name, one back every 12 minutes.
const REFUSED_NAME_WAIT: Duration = Duration::from_secs(12 * 60);

/// The least a certificate must still have to live for a name it covers to be left out of
/// its renewal when the CA refuses it now (a passing DNS or network fault): until then the
/// renewal waits for the name, as it would without refusals, rather than drop it.
const KEEP_COVERED: Duration = Duration::from_secs(7 * 86400);

/// The names of one site the CA refused to validate, each with its own back-off.
#[derive(Default)]
struct Refusals(HashMap<String, (u32, Instant)>);

impl Refusals {
    /// Whether `name` must still be left out of the site's orders.
    fn holds(&self, name: &str, now: Instant) -> bool {
        self.0.get(name).is_some_and(|(_, until)| now < *until)
    }

    fn refused(&mut self, name: &str, base: Duration) {
        let (failures, until) = self.0.entry(name.to_owned()).or_insert((0, Instant::now()));
        *failures = failures.saturating_add(1);
        *until = Instant::now() + backoff_wait(*failures, base, false).max(REFUSED_NAME_WAIT);
    }

    /// Lets every name be tried at the next pass, keeping its count of failures.
    fn retry_now(&mut self) {
        let now = Instant::now();
        for (_, until) in self.0.values_mut() {
            *until = now;
        }
    }

    /// Names a certificate now covers start their count again.
    fn validated(&mut self, names: &[String]) {
        self.0.retain(|n, _| !names.contains(n));
    }
}

/// The sites with ACME certificates, in the routes' order, with their names normalised.
fn acme_sites(routes: &Routes) -> Vec<(&str, Vec<String>)> {
    routes
        .sites
        .iter()
        .filter(|r| r.tls == RouteTls::Acme)
        .map(|r| {
            let hosts = r.hosts.iter();
            let hosts = hosts.map(|h| crate::table::normalize_host(h).into_owned());
            (r.name.as_str(), hosts.collect())
        })
        .collect()
}

/// The ACME side of the proxy: HTTP-01 tokens, per-site back-off, the account.
pub struct Acme {
    pub tokens: Mutex<HashMap<String, String>>,
    certs: Arc<Certs>,
    options: AcmeOptions,
    backoff: Mutex<HashMap<String, Backoff>>,
    /// Per site: the names left out of its orders for now.
    refusals: Mutex<HashMap<String, Refusals>>,
    account: tokio::sync::Mutex<Option<(String, Account)>>,
    /// The account's failure in this pass, given to every other site of the pass rather
    /// than asked of the CA again for each (a CA that is down, or that refuses the account).
    account_failure: Mutex<Option<AccountFailure>>,
}

/// Why the account could not be had, for the directory it was asked of.
#[derive(Debug)]
struct AccountFailure {
    directory: String,
    rate_limited: bool,
    reason: String,
}

impl AccountFailure {
    fn of(directory: &str, e: &Error) -> Self {
        let (rate_limited, reason) = match e {
            Error::AcmeRateLimited { reason, .. } | Error::Acme { reason, .. } => {
                (matches!(e, Error::AcmeRateLimited { .. }), reason.clone())
            }
            other => (false, other.to_string()),
        };
        AccountFailure {
            directory: directory.to_owned(),
            rate_limited,
            reason,
        }
    }

    fn error(&self) -> Error {
        let site = "(account)".to_owned();
        let reason = self.reason.clone();
        match self.rate_limited {
            true => Error::AcmeRateLimited { site, reason },
            false => Error::Acme { site, reason },
        }
    }
}

fn acme_err(site: &str, e: impl std::fmt::Display) -> Error {
    Error::Acme {
        site: site.to_owned(),
        reason: e.to_string(),
    }
}

/// An error of the CA's API; its `rateLimited` problem (RFC 8555 §6.7) is told apart: asking
/// again soon only extends the limit.
fn api_err(site: &str, e: instant_acme::Error) -> Error {
    let limited = matches!(&e, instant_acme::Error::Api(p)
        if p.r#type.as_deref().is_some_and(|t| t.ends_with(":rateLimited")));
    if limited {
        Error::AcmeRateLimited {
            site: site.to_owned(),
            reason: e.to_string(),
        }
    } else {
        acme_err(site, e)
    }
}

/// The least wait after the CA said its rate limit was reached (Let's Encrypt's limits
/// count over hours to a week; its message says when, in words only).
const RATE_LIMITED_WAIT: Duration = Duration::from_secs(3600);

/// The wait before trying a site again after `failures` failures in a row: `base` doubled
/// each time, at most a day; an hour at least after a rate-limit answer.
fn backoff_wait(failures: u32, base: Duration, rate_limited: bool) -> Duration {
    let factor = 1u32.checked_shl(failures.clamp(1, 16) - 1).unwrap_or(1);
    let wait = base.saturating_mul(factor).min(Duration::from_secs(86400));
    if rate_limited {
        wait.max(RATE_LIMITED_WAIT)
    } else {
        wait
    }
}

/// Writes a file readable by its owner only, atomically (temporary file + rename).
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), Error> {
    let w = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(w)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(w)?;
    f.write_all(data).map_err(w)?;
    f.sync_all().map_err(w)?;
    std::fs::rename(&tmp, path).map_err(w)
}

/// Fails unless a file can be written where `path` will be (its folder made if need be):
/// checked before a certificate is ordered, for one issued and then lost for want of a
/// place to keep it is ordered again at every try, and the CA allows five a week for the
/// same names.
fn can_write_beside(path: &Path) -> Result<(), Error> {
    let probe = path.with_extension("probe");
    write_private(&probe, b"")?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

impl Leaf {
    /// Due for a new certificate at `now`: a host it does not name, or less left than
    /// `renew_before`, capped at half its lifetime (else a certificate shorter than twice
    /// `renew_before` would be due again as soon as issued, and the CA asked every pass).
    fn due(&self, hosts: &[String], now: i64, renew_before: Duration) -> bool {
        if hosts.iter().any(|h| !self.names.contains(h)) {
            return true;
        }
        let before = i64::try_from(renew_before.as_secs()).unwrap_or(i64::MAX);
        let half_life = (self.not_after - self.not_before) / 2;
        self.not_after - now < before.min(half_life)
    }
}

impl Acme {
    pub fn new(certs: Arc<Certs>, options: AcmeOptions) -> Self {
        Acme {
            tokens: Mutex::new(HashMap::new()),
            certs,
            options,
            backoff: Mutex::new(HashMap::new()),
            refusals: Mutex::new(HashMap::new()),
            account: tokio::sync::Mutex::new(None),
            account_failure: Mutex::new(None),
        }
    }

    pub fn options(&self) -> &AcmeOptions {
        &self.options
    }

    /// Lifts every back-off but the CA's rate limits, sites' and refused names' alike, for
    /// the next pass (their counts of failures kept): the admin's SIGUSR1 right after the DNS
    /// switch of a migration, when every site that failed while its name still led to the
    /// old server may be waiting up to a day. Not SIGHUP's: logrotate sends that one daily.
    pub fn retry_waiting(&self) {
        if let Ok(mut b) = self.backoff.lock() {
            for b in b.values_mut().filter(|b| !b.rate_limited) {
                b.next_try = None; // its count stays: the next failure waits as long as it would
            }
        }
        if let Ok(mut r) = self.refusals.lock() {
            r.values_mut().for_each(Refusals::retry_now);
        }
    }

    /// The key authorization of an HTTP-01 token being validated.
    pub fn http01(&self, token: &str) -> Option<String> {
        self.tokens.lock().ok()?.get(token).cloned()
    }

    /// Is the certificate of `site` (serving `hosts`, normalised) missing, short of a name,
    /// or due for renewal?
    pub fn due(&self, state_dir: &Path, site: &str, hosts: &[String]) -> bool {
        // a pair that cannot be served (missing, or a crash between writing the key and the
        // certificate) is replaced at once rather than at the end of the certificate's life
        self.stored(state_dir, site)
            .is_none_or(|c| c.due(hosts, now_secs(), self.options.renew_before))
    }

    /// One pass: issues or renews every due ACME site not in back-off.
    pub async fn run_once(&self, routes: &Routes) -> Vec<Result<String, Error>> {
        let state = PathBuf::from(&routes.settings.state_dir);
        let sites = acme_sites(routes);
        self.forget_gone(&sites);
        // a failure to get the account is asked again once a pass, not once a site
        if let Ok(mut f) = self.account_failure.lock() {
            *f = None;
        }
        let mut out = Vec::new();
        for &(site, ref hosts) in &sites {
            // each refusal takes a name out, so this ends after one order per host at most
            for _ in 0..hosts.len() {
                let wanted = self.wanted(site, hosts);
                if wanted.is_empty() || !self.due(&state, site, &wanted) {
                    break;
                }
                let waiting = self
                    .backoff
                    .lock()
                    .ok()
                    .and_then(|b| b.get(site).map(|b| b.holds(&wanted, Instant::now())))
                    .unwrap_or(false);
                if waiting {
                    break;
                }
                let res = self.issue_in_time(routes, &state, site, &wanted).await;
                let res = self.keep_covered(&state, site, res);
                let res = self.checked(&state, site, &wanted, res);
                let again = self.count(site, &wanted, &res);
                out.push(res.map(|()| site.to_owned()));
                if !again {
                    break;
                }
            }
        }
        out
    }

    /// A refusal of names the site's certificate still covers for more than [`KEEP_COVERED`]
    /// becomes the site's failure: the renewal waits for them (the certificate is served
    /// meanwhile) instead of replacing it with one that drops them.
    fn keep_covered(&self, state: &Path, site: &str, res: Result<(), Error>) -> Result<(), Error> {
        if !matches!(res, Err(Error::AcmeRefused { .. })) {
            return res;
        }
        kept_if_covered(res, self.stored(state, site).as_ref(), now_secs())
    }

    /// An outcome that would have the site ordered again and again becomes a failure of the
    /// site, which waits out its back-off (the certificate issued is served meanwhile): a
    /// certificate that leaves the site due (the CA left a name out, which RFC 8555 forbids,
    /// or it has less than half its life left: a clock far off) was ordered again at every
    /// pass until the CA's limit of 5 a week; names refused that were not
    /// asked (another spelling of them) were asked again at once, as many times as the site
    /// has names, at every pass.
    fn checked(
        &self,
        state: &Path,
        site: &str,
        wanted: &[String],
        res: Result<(), Error>,
    ) -> Result<(), Error> {
        match &res {
            Ok(()) if self.due(state, site, wanted) => Err(acme_err(
                site,
                "the certificate issued (and served) does not name every host asked, or has less than half its life left (is the clock right?): not ordered again before the back-off",
            )),
            Err(Error::AcmeRefused { names, refused, .. })
                if !names.iter().any(|n| wanted.contains(n)) =>
            {
                Err(acme_err(
                    site,
                    format!("the CA refused names not asked: {}", refused.join("; ")),
                ))
            }
            _ => res,
        }
    }

    /// The certificate stored for `site`, if it can be served.
    fn stored(&self, state: &Path, site: &str) -> Option<Leaf> {
        let (cert, key) = acme_paths(state, site);
        let pair = crate::tls::load_pair(&cert, &key, site).ok()?;
        pair.end_entity_cert().ok().and_then(Leaf::of)
    }

    /// Forgets the back-offs of sites the routes no longer have, and the refusals of names
    /// their sites no longer have: a site or an alias removed, then added again once its
    /// DNS is right, is tried at once, not after what was left of a wait of up to a day.
    /// (A rate limit's wait is kept whatever the routes say: it is the CA's, per account.)
    fn forget_gone(&self, sites: &[(&str, Vec<String>)]) {
        let sites: HashMap<&str, &Vec<String>> = sites.iter().map(|(n, h)| (*n, h)).collect();
        if let Ok(mut b) = self.backoff.lock() {
            b.retain(|site, b| b.rate_limited || sites.contains_key(site.as_str()));
        }
        if let Ok(mut r) = self.refusals.lock() {
            r.retain(|site, refusals| match sites.get(site.as_str()) {
                Some(hosts) => {
                    refusals.0.retain(|name, _| hosts.contains(name));
                    true
                }
                None => false,
            });
        }
    }

    /// The site's names, less those refused not long ago.
    fn wanted(&self, site: &str, hosts: &[String]) -> Vec<String> {
        let now = Instant::now();
        let Ok(refusals) = self.refusals.lock() else {
            return hosts.to_vec();
        };
        let Some(r) = refusals.get(site) else {
            return hosts.to_vec();
        };
        hosts.iter().filter(|h| !r.holds(h, now)).cloned().collect()
    }

    /// Counts an issuance's outcome in the back-offs; true when the site is to be ordered
    /// again at once, without the names the CA refused.
    fn count(&self, site: &str, wanted: &[String], res: &Result<(), Error>) -> bool {
        self.count_names(site, wanted, res);
        self.count_site(site, wanted, res);
        matches!(res, Err(Error::AcmeRefused { .. }))
    }

    /// The refused names wait, those validated start their count again.
    fn count_names(&self, site: &str, wanted: &[String], res: &Result<(), Error>) {
        let Ok(mut refusals) = self.refusals.lock() else {
            return;
        };
        let r = refusals.entry(site.to_owned()).or_default();
        match res {
            Ok(()) => r.validated(wanted),
            Err(Error::AcmeRefused { names, .. }) => {
                for n in names {
                    r.refused(n, self.options.backoff_base);
                }
            }
            Err(_) => {}
        }
    }

    /// The site waits after any other failure, and starts its count again on success.
    fn count_site(&self, site: &str, wanted: &[String], res: &Result<(), Error>) {
        let base = self.options.backoff_base;
        if let Ok(mut b) = self.backoff.lock() {
            let e = b.entry(site.to_owned()).or_default();
            match res {
                Ok(()) => *e = Backoff::default(),
                Err(Error::AcmeRefused { .. }) => {}
                Err(err) => {
                    let limited = matches!(err, Error::AcmeRateLimited { .. });
                    e.failed(wanted, base, limited);
                    if matches!(err, Error::AcmeKept { .. }) {
                        // the names the CA refused are asked again with the rest: no sooner
                        // than a refused name would be
                        let least = Instant::now() + REFUSED_NAME_WAIT;
                        e.next_try = e.next_try.map(|t| t.max(least));
                    }
                }
            }
        }
    }

    /// [`Acme::issue`], bounded in time: instant-acme's client has no timeout of its own,
    /// and a CA that stalls would hold every other site's renewal.
    async fn issue_in_time(
        &self,
        routes: &Routes,
        state: &Path,
        site: &str,
        hosts: &[String],
    ) -> Result<(), Error> {
        tokio::time::timeout(ISSUE_TIME, self.issue(routes, state, site, hosts))
            .await
            .unwrap_or_else(|_| {
                let secs = ISSUE_TIME.as_secs();
                Err(acme_err(
                    site,
                    format!("no certificate after {secs} s (the CA did not answer in time)"),
                ))
            })
    }

    /// The CA account: kept once had, or read from its file, or created. A failure is
    /// remembered for the rest of the pass.
    async fn account(&self, routes: &Routes) -> Result<Account, Error> {
        let dir = &routes.settings.acme_directory;
        let mut guard = self.account.lock().await;
        if let Some((d, acc)) = guard.as_ref() {
            if d == dir {
                return Ok(acc.clone());
            }
        }
        if let Some(failed) = self.account_failure.lock().ok().and_then(|f| {
            f.as_ref()
                .filter(|f| f.directory == *dir)
                .map(AccountFailure::error)
        }) {
            return Err(failed);
        }
        let wait = self.options.account_timeout;
        let opened = tokio::time::timeout(wait, self.open_account(routes))
            .await
            .unwrap_or_else(|_| {
                let secs = wait.as_secs();
                Err(acme_err(
                    "(account)",
                    format!("the CA did not answer in {secs} s"),
                ))
            });
        match opened {
            Ok(account) => {
                *guard = Some((dir.clone(), account.clone()));
                Ok(account)
            }
            Err(err) => {
                if let Ok(mut f) = self.account_failure.lock() {
                    *f = Some(AccountFailure::of(dir, &err));
                }
                Err(err)
            }
        }
    }

    /// The account of the routes' directory, from its file or created (and its file
    /// written).
    async fn open_account(&self, routes: &Routes) -> Result<Account, Error> {
        let s = &routes.settings;
        let e = |x: instant_acme::Error| api_err("(account)", x);
        let builder = || match &s.acme_ca_file {
            Some(ca) => Account::builder_with_root(ca).map_err(e),
            None => Account::builder().map_err(e),
        };
        let digest = Sha256::digest(s.acme_directory.as_bytes());
        let tag: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let path = Path::new(&s.state_dir)
            .join("acme")
            .join(format!("account-{tag}.json"));
        match std::fs::read(&path) {
            Ok(bytes) => {
                let creds: AccountCredentials = serde_json::from_slice(&bytes)
                    .map_err(|x| acme_err("(account)", format!("{}: {x}", path.display())))?;
                builder()?.from_credentials(creds).await.map_err(e)
            }
            // any other error (a file the proxy's user cannot read, left by a run as root):
            // said, never answered with a new account whose file would replace this one
            Err(x) if x.kind() != std::io::ErrorKind::NotFound => {
                Err(acme_err("(account)", format!("{}: {x}", path.display())))
            }
            Err(_) => {
                let contact = s.acme_email.as_ref().map(|m| format!("mailto:{m}"));
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let (acc, creds) = builder()?
                    .create(
                        &NewAccount {
                            contact: &contacts,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        s.acme_directory.clone(),
                        None,
                    )
                    .await
                    .map_err(e)?;
                let json = serde_json::to_vec(&creds).map_err(|x| acme_err("(account)", x))?;
                // kept in memory even when it cannot be stored: creating one again for every
                // site at every try would soon meet the CA's limit on new accounts
                if let Err(err) = write_private(&path, &json) {
                    tracing::error!("{err}: the ACME account is kept until the proxy stops");
                }
                Ok(acc)
            }
        }
    }

    async fn issue(
        &self,
        routes: &Routes,
        state: &Path,
        site: &str,
        hosts: &[String],
    ) -> Result<(), Error> {
        let e = |x: instant_acme::Error| api_err(site, x);
        let alpn = routes.settings.acme_challenge == "tls-alpn-01";
        let kind = if alpn {
            ChallengeType::TlsAlpn01
        } else {
            ChallengeType::Http01
        };
        let (cert_path, key_path) = acme_paths(state, site);
        can_write_beside(&key_path)?;
        let account = self.account(routes).await?;
        let ids: Vec<Identifier> = hosts.iter().cloned().map(Identifier::Dns).collect();
        let mut order = account.new_order(&NewOrder::new(&ids)).await.map_err(e)?;
        let mut published = Published {
            acme: self,
            tokens: Vec::new(),
            names: Vec::new(),
        };
        {
            let mut auths = order.authorizations();
            while let Some(a) = auths.next().await {
                let mut a = a.map_err(e)?;
                match a.status {
                    AuthorizationStatus::Pending => {}
                    AuthorizationStatus::Valid => continue,
                    other => return Err(acme_err(site, format!("authorization is {other:?}"))),
                }
                let mut ch = a.challenge(kind.clone()).ok_or_else(|| {
                    acme_err(site, format!("the CA offers no {kind:?} challenge"))
                })?;
                let ka = ch.key_authorization();
                if alpn {
                    let name = ch.identifier().to_string();
                    let cert =
                        alpn_cert(&name, ka.digest().as_ref()).map_err(|x| acme_err(site, x))?;
                    self.certs.set_challenge(&name, Some(Arc::new(cert)));
                    published.names.push(name);
                } else {
                    if let Ok(mut t) = self.tokens.lock() {
                        t.insert(ch.token.clone(), ka.as_str().to_owned());
                    }
                    published.tokens.push(ch.token.clone());
                }
                ch.set_ready().await.map_err(e)?;
            }
        }
        let retry = RetryPolicy::new().timeout(Duration::from_secs(60));
        let status = order.poll_ready(&retry).await;
        drop(published); // validated or not, the challenges are done with
        if !matches!(status, Ok(OrderStatus::Ready)) {
            let refused = refused_names(&mut order).await;
            // each refused name waits on its own, all of them refused included
            if !refused.is_empty() {
                return Err(Error::AcmeRefused {
                    site: site.to_owned(),
                    names: refused.iter().map(|(n, _)| n.clone()).collect(),
                    refused: refused
                        .iter()
                        .map(|(n, why)| format!("{n}: {why}"))
                        .collect(),
                });
            }
            let status = status.map_err(e)?;
            let why: Vec<String> = refused.iter().map(|(n, w)| format!("{n}: {w}")).collect();
            let reason = match why.is_empty() {
                true => format!("order is {status:?}"),
                false => format!("order is {status:?}: {}", why.join("; ")),
            };
            return Err(acme_err(site, reason));
        }
        let key_pem = order.finalize().await.map_err(e)?;
        let chain_pem = order.poll_certificate(&retry).await.map_err(e)?;
        write_private(&key_path, key_pem.as_bytes())?;
        write_private(&cert_path, chain_pem.as_bytes())?;
        let pair = crate::tls::load_pair(&cert_path, &key_path, site)?;
        self.certs.insert(hosts, Arc::new(pair));
        tracing::info!(site, "certificate issued");
        Ok(())
    }
}

/// [`Acme::keep_covered`] for the certificate `current` at `now`.
fn kept_if_covered(res: Result<(), Error>, current: Option<&Leaf>, now: i64) -> Result<(), Error> {
    let (
        Err(Error::AcmeRefused {
            site,
            refused,
            names,
        }),
        Some(current),
    ) = (&res, current)
    else {
        return res;
    };
    let keep = i64::try_from(KEEP_COVERED.as_secs()).unwrap_or(i64::MAX);
    let lasting = current.not_after - now > keep;
    if !(lasting && names.iter().any(|n| current.names_host(n))) {
        return res;
    }
    Err(Error::AcmeKept {
        site: site.clone(),
        refused: refused.clone(),
    })
}

/// The names of a failed order whose authorization the CA refused, each with the reason it
/// gave (its challenge's problem). The order's state was refreshed by the failed poll, so
/// each authorization is fetched anew; one that cannot be fetched counts as not refused.
async fn refused_names(order: &mut instant_acme::Order) -> Vec<(String, String)> {
    let mut refused = Vec::new();
    let mut auths = order.authorizations();
    while let Some(a) = auths.next().await {
        let Ok(a) = a else { continue };
        if a.status != AuthorizationStatus::Invalid {
            continue;
        }
        let why = a
            .challenges
            .iter()
            .find_map(|c| c.error.as_ref().and_then(|p| p.detail.clone()))
            .unwrap_or_else(|| "refused".to_owned());
        refused.push((a.identifier().to_string().to_ascii_lowercase(), why));
    }
    refused
}

/// The challenges one issuance has published (HTTP-01 tokens, TLS-ALPN-01 certificates),
/// withdrawn when it is done with them, whichever way it ends: validated, refused, an error
/// half-way through the authorizations, or its timeout dropping it.
struct Published<'a> {
    acme: &'a Acme,
    tokens: Vec<String>,
    names: Vec<String>,
}

impl Drop for Published<'_> {
    fn drop(&mut self) {
        if let Ok(mut t) = self.acme.tokens.lock() {
            for k in &self.tokens {
                t.remove(k);
            }
        }
        for n in &self.names {
            self.acme.certs.set_challenge(n, None);
        }
    }
}

/// The self-signed TLS-ALPN-01 certificate carrying the key authorization's digest.
fn alpn_cert(name: &str, digest: &[u8]) -> Result<rustls::sign::CertifiedKey, String> {
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let der = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    // its key is the one just made for it: no consistency check, which would also refuse it
    // (webpki does not parse the critical acmeIdentifier extension)
    let signer = rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| e.to_string())?;
    Ok(rustls::sign::CertifiedKey::new(
        vec![cert.der().clone()],
        signer,
    ))
}

#[cfg(test)]
mod renewal {
    use super::*;

    const DAY: i64 = 86400;

    fn stored(lifetime_days: i64, names: &[&str]) -> Leaf {
        Leaf {
            not_before: 0,
            not_after: lifetime_days * DAY,
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    fn hosts(h: &[&str]) -> Vec<String> {
        h.iter().map(|n| (*n).to_owned()).collect()
    }

    const THIRTY_DAYS: Duration = Duration::from_secs(30 * 86400);

    /// The CA refused a.test's www alias.
    fn www_refused() -> Result<(), Error> {
        Err(Error::AcmeRefused {
            site: "a.test".into(),
            refused: vec!["www.a.test: DNS problem".into()],
            names: vec!["www.a.test".into()],
        })
    }

    /// A self-signed certificate for `names`, stored as `site`'s ACME one under `state`.
    fn store(state: &Path, site: &str, names: &[&str]) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_path, key_path) = acme_paths(state, site);
        write_private(&key_path, key.serialize_pem().as_bytes()).unwrap();
        write_private(&cert_path, cert.pem().as_bytes()).unwrap();
    }

    #[test]
    fn an_outcome_that_would_order_again_at_once_is_a_failure_of_the_site() {
        let state = tempfile::tempdir().unwrap();
        let acme = Acme::new(Arc::new(Certs::default()), AcmeOptions::default());
        let wanted = hosts(&["a.test", "www.a.test"]);
        // issued, but without www: still due
        store(state.path(), "a.test", &["a.test"]);
        let res = acme.checked(state.path(), "a.test", &wanted, Ok(()));
        assert!(matches!(res, Err(Error::Acme { .. })), "{res:?}");
        assert!(
            !acme.count("a.test", &wanted, &res),
            "ordered again at once"
        );
        let waits =
            |acme: &Acme| acme.backoff.lock().unwrap()["a.test"].holds(&wanted, Instant::now());
        assert!(waits(&acme), "no back-off");
        // issued whole: a success
        store(state.path(), "a.test", &["a.test", "www.a.test"]);
        assert!(acme
            .checked(state.path(), "a.test", &wanted, Ok(()))
            .is_ok());

        // refused names the order did not ask: the site waits, nothing is left out
        let acme = Acme::new(Arc::new(Certs::default()), AcmeOptions::default());
        let other = Err(Error::AcmeRefused {
            site: "a.test".into(),
            refused: vec!["WWW.A.TEST.: DNS problem".into()],
            names: vec!["www.a.test.".into()],
        });
        let res = acme.checked(state.path(), "a.test", &wanted, other);
        assert!(matches!(res, Err(Error::Acme { .. })), "{res:?}");
        assert!(
            !acme.count("a.test", &wanted, &res),
            "ordered again at once"
        );
        assert!(waits(&acme), "no back-off");
        // refused names it asked: left out, and the order placed again at once
        let res = acme.checked(state.path(), "a.test", &wanted, www_refused());
        assert!(matches!(res, Err(Error::AcmeRefused { .. })), "{res:?}");
    }

    #[test]
    fn a_90_day_certificate_is_renewed_30_days_before_it_ends() {
        let c = stored(90, &["a.test"]);
        let h = hosts(&["a.test"]);
        assert!(!c.due(&h, 59 * DAY, THIRTY_DAYS));
        assert!(c.due(&h, 61 * DAY, THIRTY_DAYS));
    }

    #[test]
    fn a_short_certificate_is_renewed_at_half_life_not_at_once() {
        // six days (Let's Encrypt's short-lived profile) against renew_before = 30 days
        let c = stored(6, &["a.test"]);
        let h = hosts(&["a.test"]);
        assert!(!c.due(&h, 0, THIRTY_DAYS), "due as soon as issued");
        assert!(!c.due(&h, 2 * DAY, THIRTY_DAYS));
        assert!(c.due(&h, 3 * DAY + 1, THIRTY_DAYS));
    }

    #[test]
    fn a_host_the_certificate_does_not_name_makes_it_due_at_once() {
        let c = stored(90, &["a.test", "www.a.test"]);
        assert!(!c.due(&hosts(&["a.test", "www.a.test"]), 0, THIRTY_DAYS));
        assert!(c.due(&hosts(&["a.test", "new.a.test"]), 0, THIRTY_DAYS));
    }

    #[test]
    fn published_challenges_are_withdrawn_when_an_issuance_ends_early() {
        let acme = Acme::new(Arc::new(Certs::default()), AcmeOptions::default());
        if let Ok(mut t) = acme.tokens.lock() {
            t.insert("tok".into(), "tok.thumb".into());
        }
        let published = Published {
            acme: &acme,
            tokens: vec!["tok".into()],
            names: vec!["a.test".into()],
        };
        assert!(acme.http01("tok").is_some());
        drop(published); // as an error or a timeout does, half-way through
        assert!(acme.http01("tok").is_none());
    }

    #[test]
    fn failures_back_off_doubling_to_a_day_and_an_hour_at_least_when_rate_limited() {
        let base = Duration::from_secs(60);
        let mins = |f, limited| backoff_wait(f, base, limited).as_secs() / 60;
        assert_eq!([mins(1, false), mins(2, false), mins(3, false)], [1, 2, 4]);
        assert_eq!(mins(40, false), 24 * 60);
        assert_eq!(mins(1, true), 60);
        assert_eq!(mins(12, true), 24 * 60);
    }

    #[test]
    fn a_back_off_holds_its_names_only() {
        let names = |n: &[&str]| n.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let (both, main) = (names(&["a.test", "www.a.test"]), names(&["a.test"]));
        let mut b = Backoff::default();
        let now = Instant::now();
        assert!(!b.holds(&both, now));
        b.failed(&both, Duration::from_secs(60), false);
        b.failed(&both, Duration::from_secs(60), false);
        assert_eq!(b.failures, 2);
        assert!(b.holds(&both, now));
        assert!(
            !b.holds(&main, now),
            "another set of names waits for nothing"
        );
        b.failed(&main, Duration::from_secs(60), false);
        assert_eq!(b.failures, 1, "and starts its own count");
    }

    #[test]
    fn a_refused_alias_is_left_out_and_the_rest_ordered_again_at_once() {
        let acme = Acme::new(Arc::new(Certs::default()), AcmeOptions::default());
        let (both, main) = (hosts(&["a.test", "www.a.test"]), hosts(&["a.test"]));
        let refused = www_refused();
        assert!(
            acme.count("a.test", &both, &refused),
            "ordered again at once"
        );
        assert_eq!(acme.wanted("a.test", &both), main);
        assert_eq!(acme.wanted("b.test", &both), both, "another site's names");
        let site_waits = |acme: &Acme, names: &[String]| {
            acme.backoff.lock().unwrap()["a.test"].holds(names, Instant::now())
        };
        assert!(
            !site_waits(&acme, &main),
            "a refusal is not the site's failure"
        );
        // the rest failing (the CA down) backs the site off, with no order again at once
        assert!(!acme.count("a.test", &main, &Err(acme_err("a.test", "CA down"))));
        assert!(site_waits(&acme, &main));
        // issued for the rest: the alias still waits; its own success clears its count
        assert!(!acme.count("a.test", &main, &Ok(())));
        assert_eq!(acme.wanted("a.test", &both), main);
        assert!(!acme.count("a.test", &both, &Ok(())));
        assert!(acme.refusals.lock().unwrap()["a.test"].0.is_empty());
    }

    #[test]
    fn an_admins_retry_lifts_every_back_off_but_the_cas_rate_limits() {
        let acme = Acme::new(Arc::new(Certs::default()), AcmeOptions::default());
        let (both, main) = (hosts(&["a.test", "www.a.test"]), hosts(&["a.test"]));
        let refused = www_refused();
        acme.count("a.test", &both, &refused);
        acme.count(
            "a.test",
            &main,
            &Err(acme_err("a.test", "connection refused")),
        );
        let limited = Err(Error::AcmeRateLimited {
            site: "b.test".into(),
            reason: "too many".into(),
        });
        acme.count("b.test", &hosts(&["b.test"]), &limited);
        acme.retry_waiting();
        assert_eq!(acme.wanted("a.test", &both), both);
        let backoff = acme.backoff.lock().unwrap();
        assert!(!backoff["a.test"].holds(&main, Instant::now()));
        assert_eq!(backoff["a.test"].failures, 1, "its count is kept");
        assert!(backoff["b.test"].holds(&hosts(&["b.test"]), Instant::now()));
        // a rate limit holds whatever names are asked next
        assert!(backoff["b.test"].holds(&hosts(&["b.test", "www.b.test"]), Instant::now()));
    }

    #[test]
    fn a_wildcard_names_one_label_below_it_only() {
        let c = stored(90, &["a.test", "*.b.test"]);
        assert!(c.names_host("a.test"));
        assert!(c.names_host("www.b.test"));
        assert!(!c.names_host("b.test"));
        assert!(!c.names_host("x.www.b.test"));
        assert!(!c.names_host("www.a.test"));
    }

    #[test]
    fn a_refused_name_waits_12_minutes_at_least() {
        let mut r = Refusals::default();
        let before = Instant::now();
        r.refused("www.a.test", Duration::from_secs(60));
        assert!(r.0["www.a.test"].1 >= before + REFUSED_NAME_WAIT);
        r.retry_now();
        assert!(!r.holds("www.a.test", Instant::now()));
        assert_eq!(r.0["www.a.test"].0, 1, "its count is kept");
    }

    #[test]
    fn a_renewal_keeps_waiting_for_a_name_its_certificate_still_covers() {
        let refused = www_refused;
        let current = stored(90, &["a.test", "www.a.test"]);
        // 60 days into 90: due for renewal, 30 days left: the certificate is kept
        let kept = kept_if_covered(refused(), Some(&current), 60 * DAY);
        assert!(matches!(kept, Err(Error::AcmeKept { .. })), "{kept:?}");
        // and the renewal is asked again no sooner than a refused name would be
        let acme = Acme::new(Arc::new(Certs::default()), AcmeOptions::default());
        let both = hosts(&["a.test", "www.a.test"]);
        assert!(!acme.count("a.test", &both, &kept));
        let next = acme.backoff.lock().unwrap()["a.test"].next_try.unwrap();
        assert!(next >= Instant::now() + REFUSED_NAME_WAIT - Duration::from_secs(1));
        // 5 days left: the name is dropped rather than the site's whole certificate lost
        let dropped = kept_if_covered(refused(), Some(&current), 85 * DAY);
        assert!(matches!(dropped, Err(Error::AcmeRefused { .. })));
        // a name the certificate never named (an alias added): left out at once
        let new_alias = stored(90, &["a.test"]);
        let left = kept_if_covered(refused(), Some(&new_alias), 60 * DAY);
        assert!(matches!(left, Err(Error::AcmeRefused { .. })));
        assert!(matches!(
            kept_if_covered(refused(), None, 0),
            Err(Error::AcmeRefused { .. })
        ));
    }

    #[test]
    fn waits_of_sites_and_names_gone_from_the_routes_are_forgotten() {
        let acme = Acme::new(Arc::new(Certs::default()), AcmeOptions::default());
        let both = hosts(&["a.test", "www.a.test"]);
        acme.count("a.test", &both, &www_refused());
        acme.count(
            "b.test",
            &hosts(&["b.test"]),
            &Err(acme_err("b.test", "down")),
        );
        let limited = Err(Error::AcmeRateLimited {
            site: "c.test".into(),
            reason: "too many".into(),
        });
        acme.count("c.test", &hosts(&["c.test"]), &limited);
        // a.test without its alias; b.test and c.test gone
        let routes: Routes = serde_json::from_value(serde_json::json!({"version": 1,
            "settings": {}, "sites": [{"name": "a.test", "hosts": ["a.test"],
            "backend": "127.0.0.1:9", "tls": {"mode": "acme"}}]}))
        .unwrap();
        acme.forget_gone(&acme_sites(&routes));
        assert!(acme.refusals.lock().unwrap()["a.test"].0.is_empty());
        let backoff = acme.backoff.lock().unwrap();
        assert!(!backoff.contains_key("b.test"));
        assert!(
            backoff.contains_key("c.test"),
            "the CA's rate limit is kept"
        );
        drop(backoff);
        // added again: tried at once
        assert_eq!(acme.wanted("a.test", &both), both);
    }

    /// An account file that is there but cannot be read (here a folder in its place; as the
    /// proxy's user, a file left root's) is an error naming it, not a reason to create a new
    /// account whose file would replace it.
    #[tokio::test]
    async fn an_account_file_that_cannot_be_read_is_an_error_not_a_new_account() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let directory = "https://127.0.0.1:9/dir"; // nobody answers: no account is made here
        let routes: Routes = serde_json::from_value(serde_json::json!({"version": 1,
            "settings": {"state_dir": state, "acme_directory": directory}, "sites": []}))
        .unwrap();
        let digest = Sha256::digest(directory.as_bytes());
        let tag: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let file = state.join("acme").join(format!("account-{tag}.json"));
        std::fs::create_dir_all(&file).unwrap();
        let acme = Acme::new(Arc::new(Certs::default()), AcmeOptions::default());
        let e = acme.account(&routes).await.err().unwrap().to_string();
        assert!(e.contains(&file.display().to_string()), "{e}");
        assert!(file.is_dir(), "left as it is");
    }

    #[test]
    fn a_name_refused_again_waits_twice_as_long() {
        let mut r = Refusals::default();
        let base = Duration::from_secs(3600);
        r.refused("www.a.test", base);
        let first = r.0["www.a.test"].1;
        r.refused("www.a.test", base);
        let (failures, second) = r.0["www.a.test"];
        assert_eq!(failures, 2);
        assert!(
            second >= first + Duration::from_secs(3599),
            "{:?}",
            second - first
        );
        assert!(r.holds("www.a.test", Instant::now()));
        assert!(!r.holds("a.test", Instant::now()));
    }

    #[test]
    fn a_certificate_is_not_ordered_where_it_could_not_be_kept() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("certs/a.test/key.pem");
        assert!(can_write_beside(&ok).is_ok());
        assert!(!ok.with_extension("probe").exists(), "the probe is removed");
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, b"").unwrap();
        // a folder that cannot be made (a file is in the way): as a full or read-only disk
        let e = can_write_beside(&blocked.join("a.test/key.pem")).unwrap_err();
        assert!(e.to_string().contains("file"), "{e}");
    }

    #[test]
    fn a_rate_limit_problem_is_told_apart() {
        let problem = |t: &str| {
            instant_acme::Error::Api(instant_acme::Problem {
                r#type: Some(t.to_owned()),
                detail: Some("too many certificates".to_owned()),
                status: Some(429),
                subproblems: Vec::new(),
            })
        };
        assert!(matches!(
            api_err("a.test", problem("urn:ietf:params:acme:error:rateLimited")),
            Error::AcmeRateLimited { .. }
        ));
        assert!(matches!(
            api_err("a.test", problem("urn:ietf:params:acme:error:unauthorized")),
            Error::Acme { .. }
        ));
    }
}

#[cfg(test)]
mod account {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A "CA" that takes connections and closes them at once (or, `silent`, holds them
    /// without a word), counting them.
    async fn failing_ca(silent: bool) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                if silent {
                    held.push(conn);
                }
            }
        });
        (format!("https://{addr}/dir"), seen)
    }

    fn routes(directory: &str, state: &Path, sites: &[&str]) -> Routes {
        let sites: Vec<String> = sites
            .iter()
            .map(|s| format!(r#"{{"name":"{s}","hosts":["{s}"],"backend":"127.0.0.1:1","tls":{{"mode":"acme"}}}}"#))
            .collect();
        let text = format!(
            r#"{{"version":1,"settings":{{"acme_directory":"{directory}","state_dir":"{}"}},"sites":[{}]}}"#,
            state.display(),
            sites.join(",")
        );
        serde_json::from_str(&text).unwrap()
    }

    #[tokio::test]
    async fn an_account_the_ca_does_not_give_is_asked_once_a_pass_not_once_a_site() {
        let (directory, seen) = failing_ca(false).await;
        let state = tempfile::tempdir().unwrap();
        let routes = routes(&directory, state.path(), &["a.test", "b.test", "c.test"]);
        let acme = Acme::new(Arc::default(), AcmeOptions::default());

        let out = acme.run_once(&routes).await;
        assert_eq!(out.len(), 3, "every due site has its outcome: {out:?}");
        assert!(out.iter().all(Result::is_err), "{out:?}");
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "the CA asked once for three sites"
        );

        // the next pass asks again (the sites' own back-offs aside)
        acme.retry_waiting();
        let _ = acme.run_once(&routes).await;
        assert_eq!(seen.load(Ordering::SeqCst), 2, "once more in the next pass");
    }

    /// A CA that takes the connection and never answers: the account is waited for
    /// `account_timeout`, once a pass, not a whole issuance time for each site.
    #[tokio::test]
    async fn a_ca_that_never_answers_is_waited_for_once_a_pass() {
        let (directory, seen) = failing_ca(true).await;
        let state = tempfile::tempdir().unwrap();
        let routes = routes(&directory, state.path(), &["a.test", "b.test", "c.test"]);
        let options = AcmeOptions {
            account_timeout: Duration::from_millis(500),
            ..AcmeOptions::default()
        };
        let acme = Acme::new(Arc::default(), options);
        // without the account's own timeout, the first site alone waited 300 s
        let out = tokio::time::timeout(Duration::from_secs(30), acme.run_once(&routes))
            .await
            .expect("the pass ends");
        assert!(out.iter().all(Result::is_err), "{out:?}");
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "the CA asked once for three sites"
        );
    }
}
