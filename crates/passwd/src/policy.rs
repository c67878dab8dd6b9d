//! The password policy: minimum length, not the account's or the person's name, not a common
//! password, and a zxcvbn strength score of at least 3 (of 4). Enforced on the server; the
//! page shows the same reasons as the user types.
//!
//! `common-passwords.txt` holds the entries of 8 characters or more of the password frequency
//! list that zxcvbn ships (MIT), lower-cased and sorted, plus a few French ones.

const COMMON: &str = include_str!("common-passwords.txt");
/// Longer passwords are refused before the estimate, which is superlinear in the length.
pub const MAX_LENGTH: usize = 256;
/// The lowest zxcvbn score accepted ("safely unguessable": about 10^8 guesses and more).
const MIN_SCORE: u8 = 3;

/// Why a password was refused; pages translate it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    TooShort(usize),
    TooLong,
    ContainsAccount,
    ContainsName,
    Common,
    Weak,
    Mismatch,
}

/// Every reason the password fails the policy (empty: accepted).
pub fn check(password: &str, account: &str, full_name: &str, min_length: usize) -> Vec<Reason> {
    let mut out = check_before_score(password, account, full_name, min_length);
    if out.is_empty() && score(password, account, full_name) < MIN_SCORE {
        out.push(Reason::Weak);
    }
    out
}

/// The reasons that need no estimate.
fn check_before_score(
    password: &str,
    account: &str,
    full_name: &str,
    min_length: usize,
) -> Vec<Reason> {
    let mut out = Vec::new();
    let len = password.chars().count();
    if len < min_length {
        out.push(Reason::TooShort(min_length));
    }
    if len > MAX_LENGTH {
        out.push(Reason::TooLong);
        return out;
    }
    let lower = password.to_lowercase();
    if !account.is_empty() && lower.contains(&account.to_lowercase()) {
        out.push(Reason::ContainsAccount);
    }
    if name_parts(full_name).any(|part| lower.contains(&part)) {
        out.push(Reason::ContainsName);
    }
    if is_common(&lower) {
        out.push(Reason::Common);
    }
    out
}

/// The score and every reason at once: zxcvbn runs once (up to some 36 ms of CPU for a
/// crafted password; `check` and `score` each ran it).
pub fn assess(
    password: &str,
    account: &str,
    full_name: &str,
    min_length: usize,
) -> (u8, Vec<Reason>) {
    let score = score(password, account, full_name);
    let mut reasons = check_before_score(password, account, full_name, min_length);
    if reasons.is_empty() && score < MIN_SCORE {
        reasons.push(Reason::Weak);
    }
    (score, reasons)
}

/// zxcvbn's score, 0 to 4, knowing the account and person names.
pub fn score(password: &str, account: &str, full_name: &str) -> u8 {
    if password.is_empty() || password.chars().count() > MAX_LENGTH {
        return 0;
    }
    let mut inputs: Vec<String> = name_parts(full_name).collect();
    inputs.push(account.to_lowercase());
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    u8::from(zxcvbn::zxcvbn(password, &inputs).score())
}

/// The words of a person's name worth refusing (three letters or more), lower-cased.
fn name_parts(full_name: &str) -> impl Iterator<Item = String> + '_ {
    full_name
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_lowercase)
        .filter(|w| !matches!(w.as_str(), "des" | "les" | "the" | "and" | "aux"))
}

static COMMON_LINES: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| COMMON.lines().collect());

fn is_common(lower: &str) -> bool {
    // The list is sorted (checked by a test), so a binary search works.
    COMMON_LINES.binary_search(&lower).is_ok()
}

/// An account name as pic2 accepts them (so it is safe in a DN and a log line).
pub fn valid_account_name(name: &str) -> bool {
    pic2_inventory::AccountName::parse(name, pic2_inventory::Span::default()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_lowercase_and_long_enough() {
        let lines: Vec<&str> = COMMON.lines().collect();
        assert!(lines.len() > 10_000);
        assert!(lines.windows(2).all(|w| w[0] < w[1]));
        assert!(lines.iter().all(|l| l.len() >= 8 && *l == l.to_lowercase()));
    }

    #[test]
    fn reasons() {
        assert_eq!(
            check("short", "velobs", "Vélobs", 12),
            vec![Reason::TooShort(12)]
        );
        assert!(check("my velobs password is long", "velobs", "X", 12)
            .contains(&Reason::ContainsAccount));
        assert!(check(
            "saisons-ensoleillees-42",
            "amap",
            "AMAP des Quatre Saisons",
            12
        )
        .contains(&Reason::ContainsName));
        assert!(check("motdepasse123", "x", "", 12).contains(&Reason::Common));
        assert_eq!(check("aaaaaaaaaaaaaaaa", "x", "", 12), vec![Reason::Weak]);
        assert!(check(&"a".repeat(300), "x", "", 12).contains(&Reason::TooLong));
        assert!(check("correct horse battery staple 42", "velobs", "Vélobs", 12).is_empty());
    }

    /// `assess` (one estimate, for the live meter) says what `check` and `score` say.
    #[test]
    fn assess_agrees_with_check_and_score() {
        for pw in [
            "",
            "short",
            "password1234",
            "velobs velobs velobs",
            "Ecureuil-Violon-42-Marne",
            "!1@2#3$4%5^6&7*8(9)0",
        ] {
            assert_eq!(
                assess(pw, "velobs", "Vélobs Grenoble", 12),
                (
                    score(pw, "velobs", "Vélobs Grenoble"),
                    check(pw, "velobs", "Vélobs Grenoble", 12)
                ),
                "{pw}"
            );
        }
    }

    #[test]
    fn account_names() {
        assert!(valid_account_name("velobs"));
        assert!(valid_account_name("pw-test-1"));
        assert!(!valid_account_name("*)(uid=*"));
        assert!(!valid_account_name("a,ou=x"));
        assert!(!valid_account_name(""));
    }
}
