//! What is wrong with an inventory, where, and how to fix it.
//!
//! Every diagnostic has a stable kebab-case [`Code`] (listed in `docs/diagnostics.md`), a
//! primary span, a message saying what is wrong, and usually a hint saying what to do.

use crate::source::{LineCol, SourceFile, Span};

macro_rules! codes {
    ($($variant:ident => $code:literal: $summary:literal,)*) => {
        /// A stable identifier for each kind of inventory error.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code { $($variant,)* }

        impl Code {
            /// Every code, in documentation order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            /// One line for the documentation table.
            pub fn summary(self) -> &'static str {
                match self { $(Code::$variant => $summary,)* }
            }
        }
    };
}

codes! {
    Syntax => "toml-syntax": "The file is not valid TOML.",
    UnknownKey => "unknown-key": "A key pic2 does not know (often a typo); the nearest valid key is suggested.",
    MissingKey => "missing-key": "A required key is absent.",
    WrongType => "wrong-type": "A value has the wrong TOML type (a string where a number is expected, …).",
    InvalidValue => "invalid-value": "A value is outside what the key accepts (an unknown mode, a negative price, …).",
    InvalidName => "invalid-name": "An account, database, runtime or host name breaks the naming rules.",
    ReservedName => "reserved-name": "A name is reserved for the system (root, www-data, mysql, …).",
    InvalidDomain => "invalid-domain": "A domain name is malformed.",
    InvalidAddress => "invalid-address": "An IP address or network is malformed or of the wrong family.",
    InvalidEmail => "invalid-email": "An e-mail address is malformed.",
    InvalidSshKey => "invalid-ssh-key": "An SSH public key cannot be parsed, or is of a weak type or size.",
    InvalidPath => "invalid-path": "A path is not absolute, not normalised, or holds characters other than letters, digits and `/._-+@`.",
    InvalidUrl => "invalid-url": "A directory or database URL is malformed.",
    InvalidDn => "invalid-dn": "An LDAP distinguished name is malformed.",
    UnknownAccount => "unknown-account": "An owner names an account that is not declared.",
    UnknownRuntime => "unknown-runtime": "A site names a runtime that is not declared.",
    UnknownDatabase => "unknown-database": "A site names a database that is not declared.",
    DuplicateUid => "duplicate-uid": "Two accounts have the same uid.",
    UidOutOfRange => "uid-out-of-range": "An account's uid is outside the directory's uid_range.",
    DuplicateDomain => "duplicate-domain": "A domain (site or alias) is served twice.",
    DuplicateValue => "duplicate-value": "The same value is listed twice (an SSH key, an alias, a database).",
    DatabaseOwnerMismatch => "database-owner-mismatch": "A site uses a database owned by another account.",
    HostRoles => "host-roles": "The hosts do not cover the roles the platform needs, or cover one twice.",
}

/// A secondary place the diagnostic points at (the first definition of a duplicate, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Related {
    pub span: Span,
    pub label: String,
}

/// One problem found in an inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    /// What is wrong, in one sentence.
    pub message: String,
    /// The offending text.
    pub span: Span,
    /// A short label under the offending text.
    pub label: String,
    /// What to do about it.
    pub hint: Option<String>,
    pub related: Vec<Related>,
}

impl Diagnostic {
    pub fn new(code: Code, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            span,
            label: String::new(),
            hint: None,
            related: Vec::new(),
        }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Whether this diagnostic only follows from entries that failed to read, given as
    /// (section, name): "no account named `x`" when `[accounts.x]` was unreadable, or a
    /// missing host role when a host was.
    pub(crate) fn follows_from(
        &self,
        broken: &std::collections::BTreeSet<(String, String)>,
    ) -> bool {
        let section = match self.code {
            Code::UnknownAccount => "accounts",
            Code::UnknownRuntime => "runtimes",
            Code::UnknownDatabase => "databases",
            Code::HostRoles => return broken.iter().any(|(s, _)| s == "hosts"),
            _ => return false,
        };
        broken
            .iter()
            .any(|(s, n)| s == section && self.message.contains(&format!("`{n}`")))
    }

    pub fn related(mut self, span: Span, label: impl Into<String>) -> Self {
        self.related.push(Related {
            span,
            label: label.into(),
        });
        self
    }
}

/// Every problem found in one inventory, with the text they point into.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{path}: {count} error(s) in the inventory", path = file.path().display(), count = diagnostics.len())]
pub struct Diagnostics {
    pub file: std::sync::Arc<SourceFile>,
    pub diagnostics: Vec<Diagnostic>,
}

/// A diagnostic flattened for `--json` output and for tests.
#[derive(Clone, Debug, serde::Serialize, PartialEq, Eq)]
pub struct Located {
    pub code: &'static str,
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub text: String,
    pub hint: Option<String>,
}

impl Diagnostics {
    pub fn located(&self) -> Vec<Located> {
        self.diagnostics
            .iter()
            .map(|d| {
                let LineCol { line, column } = self.file.line_col(d.span.start);
                Located {
                    code: d.code.as_str(),
                    path: self.file.path().display().to_string(),
                    line,
                    column,
                    message: d.message.clone(),
                    text: self.file.slice(d.span).to_string(),
                    hint: d.hint.clone(),
                }
            })
            .collect()
    }
}

/// The valid name nearest to `wrong`, if one is close enough to be a likely typo.
pub fn nearest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(wrong, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_kebab_case_and_documented() {
        let doc = include_str!("../../../docs/diagnostics.md");
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "code {s} used twice");
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{s}");
            assert!(
                doc.contains(&format!("`{s}`")),
                "{s} missing from docs/diagnostics.md"
            );
        }
    }

    #[test]
    fn nearest_suggests_close_names_only() {
        assert_eq!(nearest("ownr", ["owner", "runtime"]), Some("owner"));
        assert_eq!(nearest("zzz", ["owner", "runtime"]), None);
    }
}
