//! The platform as the inventory describes it, and how each section is read from TOML.
//!
//! [`Inventory`] is what a well-formed file says; it may still be inconsistent (a site whose
//! owner does not exist). Only [`crate::validate`] turns it into a [`crate::ValidInventory`].

use crate::diagnostic::{Code, Diagnostic};
use crate::net::{parse_ip, parse_ipv4, parse_ipv6, ClientHost};
use crate::read::{parse_str, FromToml, Sink, Table};
use crate::source::{SourceFile, Span, Spanned};
use crate::types::{Access, AccountName, DbName, Dn, Domain, Email, Ident, PhpVersion, SshKey};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Arc;
use toml_span::Value;

#[derive(Clone, Debug)]
pub struct Inventory {
    pub source: Arc<SourceFile>,
    pub platform: Platform,
    pub hosts: BTreeMap<Ident, Host>,
    pub directory: Directory,
    pub database: DatabaseServer,
    pub runtimes: BTreeMap<Ident, Runtime>,
    pub accounts: BTreeMap<AccountName, Account>,
    pub sites: BTreeMap<Domain, Site>,
    pub databases: BTreeMap<DbName, Database>,
    pub lists: BTreeMap<Ident, MailingList>,
    pub services: Services,
    pub pricing: Option<Pricing>,
    pub passwd: Option<crate::passwd::PasswdConfig>,
    pub proxy: Option<crate::proxy::ProxyConfig>,
    pub containers: Option<crate::containers::ContainersConfig>,
}

#[derive(Clone, Debug)]
pub struct Platform {
    /// Marks every object pic2 manages, so two platforms can share a directory or a server.
    pub name: Ident,
    pub domain: Domain,
    /// The shared data volume: account homes and their sites.
    pub data_dir: Spanned<PathBuf>,
    pub admin_email: Option<Email>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Database,
    Directory,
    Web,
    Mail,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Database, Role::Directory, Role::Web, Role::Mail];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Database => "database",
            Role::Directory => "directory",
            Role::Web => "web",
            Role::Mail => "mail",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Host {
    pub span: Span,
    pub roles: Vec<Spanned<Role>>,
    /// Where the other host reaches it (private network).
    pub address: Spanned<IpAddr>,
    pub public_ipv4: Option<Ipv4Addr>,
    pub public_ipv6: Option<Ipv6Addr>,
    pub resources: Resources,
}

impl Host {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.iter().any(|r| r.value == role)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Resources {
    pub cpu: u32,
    pub ram_mb: u32,
    /// The system disk, included in the offer.
    pub disk_gb: u32,
    /// Extra data disk, priced per 100 GB.
    pub data_disk_gb: u32,
    /// Public IPv4 addresses, priced each.
    pub ipv4: u32,
}

#[derive(Clone, Debug)]
pub struct Directory {
    pub url: Spanned<ServerUrl>,
    pub base_dn: Spanned<Dn>,
    pub admin_dn: Spanned<Dn>,
    pub admin_password_file: Spanned<PathBuf>,
    pub uid_range: Spanned<(u32, u32)>,
    /// The group whose members get a shell over SSH; everyone else is chrooted to SFTP.
    pub ssh_group_gid: Spanned<u32>,
    /// A read-only DN for the NSS client and the SSH key lookup of the SFTP/SSH container: it
    /// reads accounts, groups and keys, never a password.
    pub service_dn: Option<Spanned<Dn>>,
    pub service_password_file: Option<Spanned<PathBuf>>,
    /// How the containers reach the directory, when not by `url` (pic2 may administer it over
    /// loopback or a tunnel). Default: `url`.
    pub container_url: Option<Spanned<ServerUrl>>,
}

impl Directory {
    pub fn people_dn(&self) -> String {
        format!("ou=people,{}", self.base_dn.value)
    }
    pub fn groups_dn(&self) -> String {
        format!("ou=groups,{}", self.base_dn.value)
    }
}

/// `ldap://host:port`, `ldaps://…` or `mysql://host:port`, host possibly a bracketed IPv6.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerUrl {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl ServerUrl {
    pub fn parse(s: &str, span: Span, schemes: &[(&str, u16)]) -> Result<Self, Diagnostic> {
        let names: Vec<String> = schemes.iter().map(|(s, _)| format!("{s}://")).collect();
        let err = |why: &str| {
            Diagnostic::new(
                Code::InvalidUrl,
                span,
                format!("`{s}` is not a valid server URL: {why}"),
            )
            .label("here")
            .hint(format!(
                "write it like `{}host:port`, with IPv6 addresses in brackets",
                names.first().map_or("", String::as_str)
            ))
        };
        let (scheme, rest) = s.split_once("://").ok_or_else(|| err("it has no scheme"))?;
        let default_port = schemes
            .iter()
            .find(|(name, _)| *name == scheme)
            .map(|(_, p)| *p)
            .ok_or_else(|| err(&format!("the scheme must be one of {}", names.join(", "))))?;
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') || rest.contains('@') || rest.contains('?') {
            return Err(err(
                "only a host and a port are expected (no user, path or query)",
            ));
        }
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (h, after) = inner
                .split_once(']')
                .ok_or_else(|| err("an IPv6 address lacks its closing `]`"))?;
            h.parse::<Ipv6Addr>()
                .map_err(|_| err("the address in brackets is not IPv6"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(err("unexpected text after `]`")),
            };
            (h.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err(err("put an IPv6 address in brackets"))
                }
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (rest.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(err("the host is empty"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| err("the port must be 1 to 65535"))?,
            None => default_port,
        };
        Ok(ServerUrl {
            scheme: scheme.to_string(),
            host,
            port,
        })
    }

    /// `host:port` with brackets around an IPv6 host, as socket APIs want it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority())
    }
}

#[derive(Clone, Debug)]
pub struct DatabaseServer {
    pub url: Spanned<ServerUrl>,
    pub admin_user: Spanned<String>,
    pub admin_password_file: Spanned<PathBuf>,
    /// Where the sites connect from; database users are granted from these only.
    /// Default: the address of every web host.
    pub clients: Vec<Spanned<ClientHost>>,
    /// The address the sites reach the server on, written in their credentials files, when it
    /// differs from the host in `url` (e.g. pic2 administers over a tunnel). Default: `url`'s.
    pub site_host: Option<Spanned<std::net::IpAddr>>,
}

#[derive(Clone, Debug)]
pub struct Runtime {
    pub span: Span,
    pub php: Spanned<PhpVersion>,
    pub base_image: Spanned<String>,
    pub description: Option<String>,
    /// The port on 127.0.0.1 where its container listens for the proxy; default: 8100 + the
    /// runtime's rank in name order (see `ValidInventory::runtime_port`).
    pub port: Option<Spanned<u16>>,
}

#[derive(Clone, Debug)]
pub struct Account {
    pub span: Span,
    pub uid: Spanned<u32>,
    pub full_name: String,
    pub email: Spanned<Email>,
    pub access: Access,
    pub ssh_keys: Vec<Spanned<SshKey>>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "mode")]
pub enum Tls {
    /// A certificate obtained and renewed automatically over ACME.
    Acme,
    /// Plain HTTP only.
    None,
    /// Certificate and key from files the admin maintains.
    Files { cert: PathBuf, key: PathBuf },
}

#[derive(Clone, Debug)]
pub struct Site {
    pub span: Span,
    pub owner: Spanned<AccountName>,
    pub runtime: Spanned<Ident>,
    pub aliases: Vec<Spanned<Domain>>,
    pub tls: Tls,
    pub databases: Vec<Spanned<DbName>>,
    /// Redirect one of `x` and `www.x` to the other (the target must be the site or an alias).
    pub redirect: Option<Spanned<Redirect>>,
    /// Send Strict-Transport-Security (only with TLS).
    pub hsts: bool,
    /// Largest request body accepted by the proxy, in MB (default: the proxy's).
    pub max_body_mb: Option<u32>,
    /// The proxy's longest wait on this site's backend (default: `[proxy]`'s), for a site
    /// whose scripts legitimately think long (an export, a report).
    pub backend_timeout: Option<crate::proxy::Timeout>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Redirect {
    /// `x` → `www.x`.
    Www,
    /// `www.x` → `x`.
    Apex,
}

#[derive(Clone, Debug)]
pub struct Database {
    pub span: Span,
    pub owner: Spanned<AccountName>,
}

/// A Sympa mailing list: declared now, applied by the mail provider.
#[derive(Clone, Debug)]
pub struct MailingList {
    pub span: Span,
    pub domain: Spanned<Domain>,
    pub subject: String,
    pub owners: Vec<Spanned<Email>>,
}

/// The platform's own web services and the domains they answer on.
#[derive(Clone, Debug, Default)]
pub struct Services {
    pub phpmyadmin: Option<Spanned<Domain>>,
    pub passwd: Option<Spanned<Domain>>,
    pub lists_web: Option<Spanned<Domain>>,
}

impl Services {
    pub fn domains(&self) -> impl Iterator<Item = (&'static str, &Spanned<Domain>)> {
        [
            ("phpmyadmin", &self.phpmyadmin),
            ("passwd", &self.passwd),
            ("lists_web", &self.lists_web),
        ]
        .into_iter()
        .filter_map(|(n, d)| d.as_ref().map(|d| (n, d)))
    }
}

/// Prices per month, in euro cents, per unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Pricing {
    pub cpu: u64,
    pub ram_gb: u64,
    pub data_disk_100gb: u64,
    pub ipv4: u64,
    pub system_disk_gb: u64,
}

// ---------------------------------------------------------------------------------------------
// Reading

/// What reading produced: the inventory when its required sections read, and the names of the
/// entries that did not (so the rules do not also report them as undeclared).
pub(crate) struct ReadOutcome {
    pub inventory: Option<Inventory>,
    pub broken: std::collections::BTreeSet<(String, String)>,
}

pub(crate) fn read(source: Arc<SourceFile>, sink: &mut Sink) -> ReadOutcome {
    let mut broken = std::collections::BTreeSet::new();
    let inventory = read_inventory(source, sink, &mut broken);
    ReadOutcome { inventory, broken }
}

fn read_inventory(
    source: Arc<SourceFile>,
    sink: &mut Sink,
    broken: &mut std::collections::BTreeSet<(String, String)>,
) -> Option<Inventory> {
    let root = match toml_span::parse(source.text()) {
        Ok(v) => v,
        Err(e) => {
            sink.push(syntax_error(&e));
            return None;
        }
    };
    let mut top = Table::new(root, "the inventory", sink)?;
    let platform = top.opt_value("platform");
    let hosts = top.opt_value("hosts");
    let directory = top.opt_value("directory");
    let database = top.opt_value("database");
    let runtimes = top.opt_value("runtimes");
    let accounts = top.opt_value("accounts");
    let sites = top.opt_value("sites");
    let databases = top.opt_value("databases");
    let lists = top.opt_value("lists");
    let services = top.opt_value("services");
    let pricing = top.opt_value("pricing");
    let passwd = top.opt_value("passwd");
    let proxy = top.opt_value("proxy");
    let containers = top.opt_value("containers");
    let top_span = top.span;
    top.finish(sink);

    fn required<'de>(
        v: Option<Value<'de>>,
        name: &str,
        top_span: Span,
        sink: &mut Sink,
    ) -> Option<Value<'de>> {
        if v.is_none() {
            sink.push(
                Diagnostic::new(
                    Code::MissingKey,
                    Span::new(top_span.start, top_span.start),
                    format!("the inventory has no [{name}] section"),
                )
                .label("expected here or below")
                .hint(format!("add a [{name}] table (see examples/pic2.toml)")),
            );
        }
        v
    }
    let platform =
        required(platform, "platform", top_span, sink).and_then(|v| read_platform(v, sink));
    let hosts = required(hosts, "hosts", top_span, sink)
        .map(|v| read_map(v, "hosts", sink, broken, Ident::parse, read_host))
        .unwrap_or_default();
    let directory =
        required(directory, "directory", top_span, sink).and_then(|v| read_directory(v, sink));
    let database =
        required(database, "database", top_span, sink).and_then(|v| read_database(v, sink));
    let runtimes = runtimes
        .map(|v| read_map(v, "runtimes", sink, broken, Ident::parse, read_runtime))
        .unwrap_or_default();
    let accounts = accounts
        .map(|v| {
            read_map(
                v,
                "accounts",
                sink,
                broken,
                AccountName::parse,
                read_account,
            )
        })
        .unwrap_or_default();
    let sites = sites
        .map(|v| read_map(v, "sites", sink, broken, Domain::parse, read_site))
        .unwrap_or_default();
    let databases = databases
        .map(|v| {
            read_map(
                v,
                "databases",
                sink,
                broken,
                DbName::parse,
                read_database_entry,
            )
        })
        .unwrap_or_default();
    let lists = lists
        .map(|v| read_map(v, "lists", sink, broken, Ident::parse, read_list))
        .unwrap_or_default();
    let services = services
        .and_then(|v| read_services(v, sink))
        .unwrap_or_default();
    let pricing = pricing.and_then(|v| read_pricing(v, sink));
    let passwd = passwd.and_then(|v| crate::passwd::read_passwd(v, sink));
    let proxy = proxy.and_then(|v| crate::proxy::read_proxy(v, sink));
    let containers = containers.and_then(|v| crate::containers::read_containers(v, sink));

    Some(Inventory {
        source,
        platform: platform?,
        hosts,
        directory: directory?,
        database: database?,
        runtimes,
        accounts,
        sites,
        databases,
        lists,
        services,
        pricing,
        passwd,
        proxy,
        containers,
    })
}

fn syntax_error(e: &toml_span::Error) -> Diagnostic {
    let span: Span = e.span.into();
    let mut d =
        Diagnostic::new(Code::Syntax, span, format!("invalid TOML: {}", e.kind)).label("here");
    if let toml_span::ErrorKind::DuplicateKey { first, .. }
    | toml_span::ErrorKind::DuplicateTable { first, .. } = &e.kind
    {
        d = d
            .related((*first).into(), "first defined here")
            .hint("each key and table may be written once; merge the two");
    } else {
        d = d.hint("check quotes, brackets and `=` around this place (https://toml.io)");
    }
    d
}

/// Reads a table of tables like `[accounts.X]`, each key checked by `parse_key`.
fn read_map<K: Ord, V>(
    value: Value<'_>,
    section: &str,
    sink: &mut Sink,
    broken: &mut std::collections::BTreeSet<(String, String)>,
    parse_key: fn(&str, Span) -> Result<K, Diagnostic>,
    read_one: fn(Value<'_>, Span, &str, &mut Sink) -> Option<V>,
) -> BTreeMap<K, V> {
    let mut out = BTreeMap::new();
    let Some(table) = Table::new(value, format!("[{section}]"), sink) else {
        return out;
    };
    for (key, value) in table.entries() {
        let name = format!("[{section}.{}]", quote_key(&key.value));
        let parsed = parse_key(&key.value, key.span)
            .map_err(|d| sink.push(d))
            .ok();
        match (parsed, read_one(value, key.span, &name, sink)) {
            (Some(k), Some(v)) => {
                out.insert(k, v);
            }
            _ => {
                broken.insert((section.to_string(), key.value));
            }
        }
    }
    out
}

fn quote_key(k: &str) -> String {
    if k.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        k.to_string()
    } else {
        format!("\"{k}\"")
    }
}

pub(crate) struct AbsPath(pub(crate) PathBuf);

impl AbsPath {
    /// An absolute, normalised path of plain characters: it is written unquoted into
    /// Apache's configuration (`DocumentRoot`, `ErrorLog`) and into Docker's `src:dst:rw`
    /// bind strings, where a space, a quote, a newline or a `:` would change their meaning.
    fn parse(s: &str, span: Span) -> Result<PathBuf, Diagnostic> {
        let p = PathBuf::from(s);
        let normal = p.components().all(|c| {
            matches!(
                c,
                std::path::Component::RootDir | std::path::Component::Normal(_)
            )
        });
        let plain = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+@".contains(&b));
        // `components()` passes over `//` and a `.` inside: the path rebuilt from them must
        // be the text itself, which is what Apache, Docker and the plan get
        let rebuilt: PathBuf = p.components().collect();
        let as_written = rebuilt.as_os_str() == p.as_os_str();
        if p.is_absolute() && normal && as_written && plain {
            Ok(p)
        } else {
            Err(Diagnostic::new(
                Code::InvalidPath,
                span,
                format!("`{s}` is not an absolute, normalised path of plain characters"),
            )
            .label("here")
            .hint("write a path from `/`, without `..`, `.`, `//` or a trailing `/`, in letters, digits and `/._-+@`"))
        }
    }
}

impl FromToml for AbsPath {
    fn from_toml(value: Value<'_>, sink: &mut Sink) -> Option<Self> {
        parse_str(value, sink, AbsPath::parse).map(AbsPath)
    }
}

pub(crate) fn abs_path(
    t: &mut Table<'_>,
    key: &'static str,
    sink: &mut Sink,
) -> Option<Spanned<PathBuf>> {
    t.req::<Spanned<AbsPath>>(key, sink)
        .map(|s| Spanned::new(s.value.0, s.span))
}

/// A string read through a checking constructor, keeping its span.
macro_rules! checked {
    ($ty:ty, $parse:expr) => {
        impl FromToml for Spanned<$ty> {
            fn from_toml(value: Value<'_>, sink: &mut Sink) -> Option<Self> {
                let span: Span = value.span.into();
                parse_str(value, sink, $parse).map(|v| Spanned::new(v, span))
            }
        }
    };
}
checked!(Domain, Domain::parse);
checked!(AccountName, AccountName::parse);
checked!(DbName, DbName::parse);
checked!(Ident, Ident::parse);
checked!(Email, Email::parse);
checked!(SshKey, SshKey::parse);
checked!(ClientHost, ClientHost::parse);
checked!(Dn, Dn::parse);
checked!(PhpVersion, PhpVersion::parse);
checked!(Redirect, |s: &str, span| match s {
    "www" => Ok(Redirect::Www),
    "apex" => Ok(Redirect::Apex),
    _ => Err(
        Diagnostic::new(Code::InvalidValue, span, format!("unknown redirect `{s}`"))
            .label("expected \"www\" or \"apex\"")
            .hint("\"www\" sends example.org to www.example.org; \"apex\" does the opposite")
    ),
});
checked!(Role, |s: &str, span| match s {
    "database" => Ok(Role::Database),
    "directory" => Ok(Role::Directory),
    "web" => Ok(Role::Web),
    "mail" => Ok(Role::Mail),
    _ => Err(
        Diagnostic::new(Code::InvalidValue, span, format!("unknown role `{s}`"))
            .label("not a role")
            .hint("roles are \"database\", \"directory\", \"web\" and \"mail\"")
    ),
});

fn read_platform(value: Value<'_>, sink: &mut Sink) -> Option<Platform> {
    let mut t = Table::new(value, "[platform]", sink)?;
    let name = t.req::<Spanned<Ident>>("name", sink);
    let domain = t.req::<Spanned<Domain>>("domain", sink);
    let data_dir = abs_path(&mut t, "data_dir", sink);
    let admin_email = t.opt::<Spanned<Email>>("admin_email", sink);
    t.finish(sink);
    Some(Platform {
        name: name?.value,
        domain: domain?.value,
        data_dir: data_dir?,
        admin_email: admin_email.map(|e| e.value),
    })
}

fn read_host(value: Value<'_>, span: Span, name: &str, sink: &mut Sink) -> Option<Host> {
    let mut t = Table::new(value, name, sink)?;
    let roles = t.req::<Vec<Spanned<Role>>>("roles", sink);
    let address = t.req::<Spanned<String>>("address", sink).and_then(|s| {
        parse_ip(&s.value, s.span)
            .map(|ip| Spanned::new(ip, s.span))
            .map_err(|d| sink.push(d))
            .ok()
    });
    let public_ipv4 = t.opt_with("public_ipv4", sink, parse_ipv4);
    let public_ipv6 = t.opt_with("public_ipv6", sink, parse_ipv6);
    let resources = t
        .opt_value("resources")
        .and_then(|v| read_resources(v, &format!("`resources` of {name}"), sink));
    t.finish(sink);
    Some(Host {
        span,
        roles: roles?,
        address: address?,
        public_ipv4,
        public_ipv6,
        resources: resources.unwrap_or_default(),
    })
}

fn read_resources(value: Value<'_>, name: &str, sink: &mut Sink) -> Option<Resources> {
    let mut t = Table::new(value, name, sink)?;
    let r = Resources {
        cpu: t.opt("cpu", sink).unwrap_or(0),
        ram_mb: t.opt("ram_mb", sink).unwrap_or(0),
        disk_gb: t.opt("disk_gb", sink).unwrap_or(0),
        data_disk_gb: t.opt("data_disk_gb", sink).unwrap_or(0),
        ipv4: t.opt("ipv4", sink).unwrap_or(0),
    };
    t.finish(sink);
    Some(r)
}

fn read_directory(value: Value<'_>, sink: &mut Sink) -> Option<Directory> {
    let mut t = Table::new(value, "[directory]", sink)?;
    let url = t.req::<Spanned<String>>("url", sink).and_then(|s| {
        ServerUrl::parse(&s.value, s.span, &[("ldap", 389), ("ldaps", 636)])
            .map(|u| Spanned::new(u, s.span))
            .map_err(|d| sink.push(d))
            .ok()
    });
    let base_dn = t.req::<Spanned<Dn>>("base_dn", sink);
    let admin_dn = t.req::<Spanned<Dn>>("admin_dn", sink);
    let admin_password_file = abs_path(&mut t, "admin_password_file", sink);
    let uid_range = t.req::<Spanned<Vec<u32>>>("uid_range", sink).and_then(|r| match r.value.as_slice() {
        [lo, hi] if lo < hi && *lo >= 1000 => Some(Spanned::new((*lo, *hi), r.span)),
        _ => {
            sink.push(
                Diagnostic::new(Code::InvalidValue, r.span, "uid_range must be [first, last] with 1000 ≤ first < last")
                    .label("here")
                    .hint("for example `uid_range = [10000, 59999]`: ids below 1000 belong to the system"),
            );
            None
        }
    });
    let ssh_group_gid = t.opt::<Spanned<u32>>("ssh_group_gid", sink);
    let service_dn = t.opt::<Spanned<Dn>>("service_dn", sink);
    let service_password_file = t
        .opt::<Spanned<AbsPath>>("service_password_file", sink)
        .map(|s| Spanned::new(s.value.0, s.span));
    let container_url = t
        .opt::<Spanned<String>>("container_url", sink)
        .and_then(|s| {
            ServerUrl::parse(&s.value, s.span, &[("ldap", 389), ("ldaps", 636)])
                .map(|u| Spanned::new(u, s.span))
                .map_err(|d| sink.push(d))
                .ok()
        });
    t.finish(sink);
    let uid_range = uid_range?;
    let ssh_group_gid = ssh_group_gid
        .unwrap_or_else(|| Spanned::new(uid_range.value.0.saturating_sub(1), uid_range.span));
    Some(Directory {
        url: url?,
        base_dn: base_dn?,
        admin_dn: admin_dn?,
        admin_password_file: admin_password_file?,
        uid_range,
        ssh_group_gid,
        service_dn,
        service_password_file,
        container_url,
    })
}

fn read_database(value: Value<'_>, sink: &mut Sink) -> Option<DatabaseServer> {
    let mut t = Table::new(value, "[database]", sink)?;
    let url = t.req::<Spanned<String>>("url", sink).and_then(|s| {
        ServerUrl::parse(&s.value, s.span, &[("mysql", 3306), ("mariadb", 3306)])
            .map(|u| Spanned::new(u, s.span))
            .map_err(|d| sink.push(d))
            .ok()
    });
    let admin_user = t.req::<Spanned<String>>("admin_user", sink);
    let admin_password_file = abs_path(&mut t, "admin_password_file", sink);
    let clients = t.opt::<Vec<Spanned<ClientHost>>>("clients", sink);
    let site_host = t.opt::<Spanned<String>>("site_host", sink).and_then(|s| {
        parse_ip(&s.value, s.span)
            .map(|ip| Spanned::new(ip, s.span))
            .map_err(|d| sink.push(d))
            .ok()
    });
    t.finish(sink);
    Some(DatabaseServer {
        url: url?,
        admin_user: admin_user?,
        admin_password_file: admin_password_file?,
        clients: clients.unwrap_or_default(),
        site_host,
    })
}

fn read_runtime(value: Value<'_>, span: Span, name: &str, sink: &mut Sink) -> Option<Runtime> {
    let mut t = Table::new(value, name, sink)?;
    let php = t.req::<Spanned<PhpVersion>>("php", sink);
    let base_image = t.req::<Spanned<String>>("base_image", sink);
    let description = t.opt::<String>("description", sink);
    let port = t.opt::<Spanned<u16>>("port", sink);
    t.finish(sink);
    Some(Runtime {
        span,
        php: php?,
        base_image: base_image?,
        description,
        port,
    })
}

fn read_account(value: Value<'_>, span: Span, name: &str, sink: &mut Sink) -> Option<Account> {
    let mut t = Table::new(value, name, sink)?;
    let uid = t.req::<Spanned<u32>>("uid", sink);
    let full_name = t.req::<Spanned<String>>("full_name", sink);
    let email = t.req::<Spanned<Email>>("email", sink);
    let access = t.opt_with("access", sink, Access::parse);
    let ssh_keys = t.opt::<Vec<Spanned<SshKey>>>("ssh_keys", sink);
    t.finish(sink);
    let full_name = full_name?;
    // it becomes the entry's cn and sn, which the directory refuses empty: at apply time,
    // after other entries were added
    if full_name.value.trim().is_empty() || full_name.value.chars().any(char::is_control) {
        sink.push(
            Diagnostic::new(
                Code::InvalidValue,
                full_name.span,
                "the full name is empty or holds a control character",
            )
            .label("here")
            .hint("the name people know the account by, e.g. \"Vélobs Grenoble\""),
        );
        return None;
    }
    let full_name = full_name.value;
    Some(Account {
        span,
        uid: uid?,
        full_name,
        email: email?,
        access: access.unwrap_or_default(),
        ssh_keys: ssh_keys.unwrap_or_default(),
    })
}

fn read_site(value: Value<'_>, span: Span, name: &str, sink: &mut Sink) -> Option<Site> {
    let mut t = Table::new(value, name, sink)?;
    let owner = t.req::<Spanned<AccountName>>("owner", sink);
    let runtime = t.req::<Spanned<Ident>>("runtime", sink);
    let aliases = t.opt::<Vec<Spanned<Domain>>>("aliases", sink);
    let tls = match t.opt_value("tls") {
        Some(v) => read_tls(v, name, sink),
        None => Some(Tls::Acme),
    };
    let databases = t.opt::<Vec<Spanned<DbName>>>("databases", sink);
    let redirect = t.opt::<Spanned<Redirect>>("redirect", sink);
    let hsts = t.opt::<bool>("hsts", sink).unwrap_or(false);
    let max_body_mb = t.opt::<u32>("max_body_mb", sink);
    let backend_timeout = t.opt("backend_timeout_seconds", sink);
    t.finish(sink);
    Some(Site {
        span,
        owner: owner?,
        runtime: runtime?,
        aliases: aliases.unwrap_or_default(),
        tls: tls?,
        databases: databases.unwrap_or_default(),
        redirect,
        hsts,
        max_body_mb,
        backend_timeout,
    })
}

fn read_tls(value: Value<'_>, site: &str, sink: &mut Sink) -> Option<Tls> {
    let span: Span = value.span.into();
    let bad = |sink: &mut Sink| {
        sink.push(
            Diagnostic::new(Code::InvalidValue, span, "`tls` must be \"acme\", \"none\" or { cert = …, key = … }")
                .label("here")
                .hint("\"acme\" gets a certificate automatically; { cert = \"/path/fullchain.pem\", key = \"/path/key.pem\" } uses files you renew yourself"),
        )
    };
    match value.as_str() {
        Some("acme") => return Some(Tls::Acme),
        Some("none") => return Some(Tls::None),
        Some(_) => {
            bad(sink);
            return None;
        }
        None => {}
    }
    if value.as_table().is_none() {
        bad(sink);
        return None;
    }
    let mut t = Table::new(value, format!("`tls` of {site}"), sink)?;
    let cert = abs_path(&mut t, "cert", sink);
    let key = abs_path(&mut t, "key", sink);
    t.finish(sink);
    Some(Tls::Files {
        cert: cert?.value,
        key: key?.value,
    })
}

fn read_database_entry(
    value: Value<'_>,
    span: Span,
    name: &str,
    sink: &mut Sink,
) -> Option<Database> {
    let mut t = Table::new(value, name, sink)?;
    let owner = t.req::<Spanned<AccountName>>("owner", sink);
    t.finish(sink);
    Some(Database {
        span,
        owner: owner?,
    })
}

fn read_list(value: Value<'_>, span: Span, name: &str, sink: &mut Sink) -> Option<MailingList> {
    let mut t = Table::new(value, name, sink)?;
    let domain = t.req::<Spanned<Domain>>("domain", sink);
    let subject = t.opt::<String>("subject", sink);
    let owners = t.req::<Vec<Spanned<Email>>>("owners", sink);
    t.finish(sink);
    Some(MailingList {
        span,
        domain: domain?,
        subject: subject.unwrap_or_default(),
        owners: owners?,
    })
}

fn read_services(value: Value<'_>, sink: &mut Sink) -> Option<Services> {
    let mut t = Table::new(value, "[services]", sink)?;
    let s = Services {
        phpmyadmin: t.opt("phpmyadmin", sink),
        passwd: t.opt("passwd", sink),
        lists_web: t.opt("lists_web", sink),
    };
    t.finish(sink);
    Some(s)
}

fn read_pricing(value: Value<'_>, sink: &mut Sink) -> Option<Pricing> {
    let mut t = Table::new(value, "[pricing]", sink)?;
    let cents = |v: Option<f64>| v.map_or(0, |e| (e * 100.0).round() as u64);
    let p = Pricing {
        cpu: cents(t.opt("cpu", sink)),
        ram_gb: cents(t.opt("ram_gb", sink)),
        data_disk_100gb: cents(t.opt("data_disk_100gb", sink)),
        ipv4: cents(t.opt("ipv4", sink)),
        system_disk_gb: cents(t.opt("system_disk_gb", sink)),
    };
    t.finish(sink);
    Some(p)
}
