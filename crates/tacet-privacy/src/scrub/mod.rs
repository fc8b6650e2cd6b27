//! Scrubbing of free text: what looks like personal data or a secret is replaced by a typed placeholder.
//!
//! The built-in rules cover Sentry Relay's default (`@common`) set and more:
//!
//! | rule | finds | becomes |
//! |---|---|---|
//! | `private_key` | PEM private keys (`-----BEGIN ... PRIVATE KEY-----` to its end) | `[private_key]` |
//! | `url_credentials` | `user:password@` in URLs | `scheme://[credentials]@host` |
//! | `jwt` | JSON Web Tokens (`eyJ...`.`...`.`...`) | `[jwt]` |
//! | `bearer` | `Bearer`/`Basic`/`Token` authorisation values | `Bearer [token]` |
//! | `api_token` | well-known token formats (AWS, GitHub, GitLab, Slack, Stripe, Google, npm) | `[token]` |
//! | `secret` | values after secret-naming keys (`password=`, `"api_key": "..."`, `token: ...`) | `key=[secret]` |
//! | `email` | e-mail addresses | `[email]` |
//! | `card` | payment card numbers of a known issuer range, Luhn-checked | `[card]` |
//! | `iban` | IBANs of a known country and length, mod-97-checked | `[iban]` |
//! | `us_ssn` | US social security numbers (`078-05-1120`), area, group and serial ranges checked | `[ssn]` |
//! | `ip` | IPv4 and IPv6 addresses (checked by the standard library's parser) | `[ip]` |
//! | `home_user` | user names in home-directory paths (`/home/x`, `/Users/x`, `C:\Users\x`) | `/home/[user]` |
//!
//! Opt-in rules (a tenant's `scrub_opt_in`, [`OPT_IN_RULES`]):
//!
//! | rule | finds | becomes |
//! |---|---|---|
//! | `phone` | telephone numbers: E.164 (`+44 20 7946 0958`), North American, national with a trunk 0 | `[phone]` |
//!
//! Before any rule, the event's known values (its user id, the client IP, identifier properties: see
//! `known.rs`) are replaced (`known_value`). Tenants add their own rules (`custom:<name>`, replaced by
//! `[<name>]`). Every replacement is counted per rule in a [`Tally`]. Each rule runs only when a cheap precondition holds (a byte, a digit count, a
//! literal), so ordinary text costs a few scans and one copy.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use regex::{Captures, Regex};

use crate::policy::{CustomRule, TenantPolicy};

mod clean;
mod known;
mod numbers;
mod shape;

pub(crate) use clean::CleanTexts;
pub use known::Known;
use shape::{Shape, may_be_api_token, may_be_bearer};

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid built-in regex")
}

static PRIVATE_KEY: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\z)",
    )
});
static URL_CREDENTIALS: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@:]*:[^/\s@]*@"));
static JWT: LazyLock<Regex> =
    LazyLock::new(|| re(r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*"));
static BEARER: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\b([Bb]earer|BEARER|[Bb]asic|BASIC|[Dd]igest|[Nn]egotiate)(\s+)([A-Za-z0-9._~+/=\-]{8,})")
});
static API_TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"\b(?:",
        r"(?:AKIA|ASIA)[0-9A-Z]{16}",
        r"|gh[pousr]_[A-Za-z0-9]{30,}",
        r"|github_pat_[A-Za-z0-9_]{30,}",
        r"|glpat-[A-Za-z0-9_\-]{20,}",
        r"|xox[abposr]-[A-Za-z0-9\-]{10,}",
        r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}",
        r"|AIza[0-9A-Za-z_\-]{35}",
        r"|npm_[A-Za-z0-9]{36}",
        r")\b"
    ))
});
/// A key that names a secret, then `=`, `:` or `": "`, then the value (quoted or up to a delimiter).
static SECRET_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r#"(?i)((?:\b|_)(?:[a-z0-9]+[_\-.])*"#,
        r"(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_\-]?key|apikey|access[_\-]?key|auth(?:orization)?",
        r"|credentials?|private[_\-]?key|session(?:[_\-]?id)?|sid|cookie|signature)",
        r#"(?:[_\-][a-z0-9]+)*["']?\s*(?:=|:)\s*)"#,
        r#"("[^"]*"|'[^']*'|(?:bearer|basic)\s+[^\s"'&,;)}]+|[^\s"'&,;)}]+)"#
    ))
});
/// The words `SECRET_VALUE` needs, as a cheap literal prefilter (the full regex has no literal prefix).
static SECRET_WORD: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)pass|pwd|secret|token|key|auth|credential|session|sid|cookie|signature")
});
/// Keys whose unquoted `key: value` is taken as a secret even when the value looks like a word.
static STRONG_KEY: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)pass(?:word|wd|phrase)?|pwd|secret|api[_\-]?key|apikey|access[_\-]?key|credentials?|private[_\-]?key",
    )
});
static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}"));
static CARD: LazyLock<Regex> = LazyLock::new(|| re(r"\b\d(?:[ \-]?\d){12,18}\b"));
static IBAN: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"));
static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\b(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\b",
    )
});
/// Candidates only: each match is checked with the standard library's IPv6 parser. The embedded-IPv4
/// form comes first so that leftmost-first matching prefers it.
static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)(?:[0-9a-f]{0,4}:){2,6}(?:\d{1,3}\.){3}\d{1,3}|[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}")
});
static HOME_USER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(/home/|/Users/|/var/home/|(?i:[a-z]:\\{1,2}users\\{1,2}|[a-z]:/users/))([^/\\\s:*?<>|\[\]]+)",
    )
});
/// Property keys whose values are dropped whole.
static SECRET_KEY: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)pass(?:word|wd|phrase)?|pwd|secret|token|api[_\-]?key|access[_\-]?key|auth|credential|private[_\-]?key|session|cookie|signature",
    )
});

/// The words [`SECRET_WORD`] and [`SECRET_KEY`] find in ASCII text (for `is_match`, `pass(?:word|wd|
/// phrase)?` is `pass`, `api[_\-]?key` its three spellings), as automata: every event's URLs and property
/// keys are looked at, and a shared regex hands each thread but the first its search cache under a lock
/// (3% of a loaded server's CPU for the keys alone). `(?i)` also folds `ſ` to `s` and the Kelvin sign to
/// `k`, so text that is not ASCII still goes to the regex.
static SECRET_WORDS: LazyLock<AhoCorasick> = LazyLock::new(|| {
    words(&[
        "pass",
        "pwd",
        "secret",
        "token",
        "key",
        "auth",
        "credential",
        "session",
        "sid",
        "cookie",
        "signature",
    ])
});
static SECRET_KEY_WORDS: LazyLock<AhoCorasick> = LazyLock::new(|| {
    words(&[
        "pass",
        "pwd",
        "secret",
        "token",
        "apikey",
        "api_key",
        "api-key",
        "accesskey",
        "access_key",
        "access-key",
        "auth",
        "credential",
        "privatekey",
        "private_key",
        "private-key",
        "session",
        "cookie",
        "signature",
    ])
});

fn words(words: &[&str]) -> AhoCorasick {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(words)
        .expect("valid built-in words")
}

/// Whether `s` has a word [`SECRET_VALUE`] needs (`SECRET_WORD.is_match`).
fn has_secret_word(s: &str) -> bool {
    if s.is_ascii() {
        SECRET_WORDS.is_match(s)
    } else {
        SECRET_WORD.is_match(s)
    }
}

/// Replacements made, per rule; and what the privacy step dropped or anonymised. Cheap to keep per request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// (rule, replacements); built-in rule names, or `custom:<name>`.
    pub scrubbed: Vec<(Cow<'static, str>, u64)>,
}

impl Tally {
    fn count(&mut self, rule: Cow<'static, str>, n: u64) {
        if n == 0 {
            return;
        }
        match self.scrubbed.iter_mut().find(|(r, _)| *r == rule) {
            Some((_, c)) => *c += n,
            None => self.scrubbed.push((rule, n)),
        }
    }

    /// Replacements made by `rule`.
    pub fn get(&self, rule: &str) -> u64 {
        self.scrubbed
            .iter()
            .find(|(r, _)| r == rule)
            .map_or(0, |(_, n)| *n)
    }

    /// Adds another tally's counts to this one.
    pub fn merge(&mut self, other: &Tally) {
        for (rule, n) in &other.scrubbed {
            self.count(rule.clone(), *n);
        }
    }
}

/// The names of the built-in rules that always run, in the order they run.
pub const RULES: [&str; 12] = [
    "private_key",
    "url_credentials",
    "jwt",
    "bearer",
    "api_token",
    "secret",
    "email",
    "card",
    "iban",
    "us_ssn",
    "ip",
    "home_user",
];

/// Built-in rules a tenant turns on by name (`scrub_opt_in`): they would change too much ordinary text to
/// run for everyone.
pub const OPT_IN_RULES: [&str; 1] = ["phone"];

/// The tally's name for replacements of known values (`known.rs`).
pub const KNOWN_VALUE: &str = "known_value";

/// The scrubber; holds a tenant's own rules, borrowed from its policy, its opt-in rules, and an event's
/// known values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scrubber<'a> {
    custom: &'a [CustomRule],
    phone: bool,
    known: &'a [Known],
}

impl<'a> Scrubber<'a> {
    /// The built-in rules and `custom`.
    pub fn new(custom: &'a [CustomRule]) -> Self {
        Self {
            custom,
            ..Self::default()
        }
    }

    /// The built-in rules, the tenant's opt-in rules and its own rules.
    pub fn for_policy(policy: &'a TenantPolicy) -> Self {
        Self::new(&policy.scrub).with_phone(policy.scrubs("phone"))
    }

    /// With the opt-in `phone` rule on or off.
    pub fn with_phone(self, phone: bool) -> Self {
        Self { phone, ..self }
    }

    /// Also replacing these known values (one event's user id, client IP, identifier properties).
    pub fn with_known(self, known: &'a [Known]) -> Self {
        Self { known, ..self }
    }

    /// Scrubs free text, counting replacements into `tally`.
    pub fn text(&self, s: &str, tally: &mut Tally) -> String {
        self.scrub(s, tally).into_owned()
    }

    /// Like [`Scrubber::text`], taking the string: unchanged text (the usual case) is returned as it came,
    /// without a copy.
    pub fn text_owned(&self, s: String, tally: &mut Tally) -> String {
        self.text_remembering(s, tally, None)
    }

    /// Like [`Scrubber::text_owned`], remembering in `clean` the texts the rules leave as they are and
    /// skipping the rules for them next time (the known values are still searched every time: they are
    /// each event's own). `clean` must only ever be used with scrubbers of the same rules (one tenant's
    /// policy: in practice one request's events).
    pub(crate) fn text_remembering(
        &self,
        s: String,
        tally: &mut Tally,
        clean: Option<&mut CleanTexts>,
    ) -> String {
        match self.scrub_remembering(&s, tally, clean) {
            Cow::Borrowed(_) => s,
            Cow::Owned(o) => o,
        }
    }

    fn scrub<'s>(&self, s: &'s str, tally: &mut Tally) -> Cow<'s, str> {
        self.scrub_remembering(s, tally, None)
    }

    fn scrub_remembering<'s>(
        &self,
        s: &'s str,
        tally: &mut Tally,
        clean: Option<&mut CleanTexts>,
    ) -> Cow<'s, str> {
        // Text these rules already left as it was (a property key or value, a host, a release that
        // the request's events share) and that holds none of this event's known values stays as it is;
        // its bytes alone often show that a known value cannot be in it.
        let remembered = clean.as_deref().and_then(|c| c.mask_of(s));
        if let Some(mask) = remembered
            && !self.known.iter().any(|k| k.may_occur_in(mask))
        {
            return Cow::Borrowed(s);
        }
        let mut out = self.known_once(s, tally);
        if remembered.is_some() && matches!(out, Cow::Borrowed(_)) {
            return out;
        }
        out = self.rules_once(out, tally);
        if let Some(clean) = clean
            && matches!(out, Cow::Borrowed(_))
        {
            clean.insert(s);
        }
        // A replacement can make another rule match: an address inside URL credentials becomes a
        // placeholder, and the credentials rule then sees `scheme://user:pass@host` (found by fuzzing).
        // Repeat until nothing changes, so that scrubbed text scrubs to itself.
        for _ in 0..8 {
            let current = match &out {
                Cow::Owned(c) => c.clone(),
                Cow::Borrowed(_) => break,
            };
            match self.scrub_once(&current, tally) {
                Cow::Borrowed(_) => break,
                Cow::Owned(next) => out = Cow::Owned(next),
            }
        }
        out
    }

    fn scrub_once<'s>(&self, s: &'s str, tally: &mut Tally) -> Cow<'s, str> {
        let out = self.known_once(s, tally);
        self.rules_once(out, tally)
    }

    /// `s` with the event's known values replaced.
    fn known_once<'s>(&self, s: &'s str, tally: &mut Tally) -> Cow<'s, str> {
        if !self.known.is_empty()
            && let Some((text, n)) = known::replace_known(s, self.known)
        {
            tally.count(Cow::Borrowed(KNOWN_VALUE), n);
            return Cow::Owned(text);
        }
        Cow::Borrowed(s)
    }

    /// `out` after every rule (built-in, opt-in and the tenant's own).
    fn rules_once<'s>(&self, mut out: Cow<'s, str>, tally: &mut Tally) -> Cow<'s, str> {
        let t = tally;
        // One pass over the bytes decides which rules can match at all. Replacements only remove
        // features (placeholders are letters, `_` and brackets), so the shape of the input stays a safe
        // over-estimate for every later rule.
        let shape = Shape::of(out.as_bytes());
        if shape.dash && out.contains("-----BEGIN") {
            apply(&mut out, t, "private_key", &PRIVATE_KEY, |_| {
                Some("[private_key]".into())
            });
        }
        if shape.at && shape.slash && shape.colons > 0 && out.contains("://") {
            apply(&mut out, t, "url_credentials", &URL_CREDENTIALS, |c| {
                Some(format!("{}[credentials]@", &c[1]))
            });
        }
        if shape.upper_j && out.contains("eyJ") {
            apply(&mut out, t, "jwt", &JWT, |_| Some("[jwt]".into()));
        }
        // `Bearer x`: needs whitespace and one of the scheme names. Known token formats: a `_`, or a `-`
        // with `glpat-` or `xox`, or AKIA/ASIA/AIza. Literal checks first: ordinary titles and messages
        // have spaces and dashes, and a regex search costs several times a substring scan.
        if may_be_bearer(&out, &shape) {
            apply(&mut out, t, "bearer", &BEARER, |c| {
                looks_random(&c[3]).then(|| format!("{}{}[token]", &c[1], &c[2]))
            });
        }
        if may_be_api_token(&out, &shape) {
            apply(&mut out, t, "api_token", &API_TOKEN, |_| {
                Some("[token]".into())
            });
        }
        if (shape.equals || shape.colons > 0) && has_secret_word(&out) {
            apply(&mut out, t, "secret", &SECRET_VALUE, |c| {
                let (key, value) = (&c[1], &c[2]);
                let bare = value.trim_matches(['"', '\'']);
                let last_word = bare.split_whitespace().last().unwrap_or_default();
                if bare.is_empty() || is_placeholder(last_word) {
                    return None;
                }
                let quoted = matches!(value.as_bytes()[0], b'"' | b'\'');
                // `key: value` without quotes is also ordinary prose ("token: expired"): unless the key is
                // a password-like one, the value must look machine-made.
                let prose_like = key.trim_end().ends_with(':') && !quoted;
                if prose_like && !STRONG_KEY.is_match(key) && !looks_random(bare) {
                    return None;
                }
                Some(if quoted {
                    let q = &value[..1];
                    format!("{key}{q}[secret]{q}")
                } else {
                    format!("{key}[secret]")
                })
            });
        }
        if shape.at {
            apply(&mut out, t, "email", &EMAIL, |_| Some("[email]".into()));
        }
        if shape.digits >= 13 {
            apply(&mut out, t, "card", &CARD, |c| {
                numbers::is_card(&c[0]).then(|| "[card]".into())
            });
        }
        if shape.iban_start && out.len() >= 15 {
            apply(&mut out, t, "iban", &IBAN, |c| {
                numbers::is_iban(&c[0]).then(|| "[iban]".into())
            });
        }
        if shape.digits >= 9 && (shape.dash || shape.space) {
            apply(&mut out, t, "us_ssn", &numbers::SSN, |c| {
                numbers::is_ssn(c).then(|| "[ssn]".into())
            });
        }
        if shape.double_colon || shape.colons >= 6 {
            let (text, n) = replace_ipv6(&out);
            if n > 0 {
                out = Cow::Owned(text);
                t.count(Cow::Borrowed("ip"), n);
            }
        }
        if shape.digit_dot_digit >= 3 {
            let (text, n) = replace_ipv4(&out);
            if n > 0 {
                out = Cow::Owned(text);
                t.count(Cow::Borrowed("ip"), n);
            }
        }
        if self.phone
            && shape.digits >= 7
            && let Some((text, n)) = numbers::replace_phones(&out)
        {
            out = Cow::Owned(text);
            t.count(Cow::Borrowed("phone"), n);
        }
        if (shape.slash || shape.backslash)
            && (out.contains("/home/")
                || out.contains("Users")
                || out.contains("users\\")
                || out.contains(":/users/"))
        {
            apply(&mut out, t, "home_user", &HOME_USER, |c| {
                Some(format!("{}[user]", &c[1]))
            });
        }
        for rule in self.custom {
            if !rule.regex.is_match(&out) {
                continue;
            }
            let mut n = 0;
            let replaced = rule.regex.replace_all(&out, |_: &Captures| {
                n += 1;
                rule.placeholder.clone()
            });
            if n > 0 {
                let replaced = replaced.into_owned();
                out = Cow::Owned(replaced);
                t.count(Cow::Owned(format!("custom:{}", rule.name)), n);
            }
        }
        out
    }

    /// Scrubs a property value; values under keys that name a secret are dropped whole (`[secret]`).
    pub fn property(&self, key: &str, value: &str, tally: &mut Tally) -> String {
        if is_secret_key(key) {
            tally.count(Cow::Borrowed("secret"), 1);
            "[secret]".to_owned()
        } else {
            self.text(value, tally)
        }
    }
}

/// True for property or parameter names that name a secret (`password`, `api_key`, `sessionToken`...).
pub fn is_secret_key(key: &str) -> bool {
    if key.is_ascii() {
        SECRET_KEY_WORDS.is_match(key)
    } else {
        SECRET_KEY.is_match(key)
    }
}

/// Runs one rule over `out`; `f` returns the replacement, or `None` to keep a match.
fn apply(
    out: &mut Cow<'_, str>,
    tally: &mut Tally,
    rule: &'static str,
    re: &Regex,
    f: impl Fn(&Captures) -> Option<String>,
) {
    if !re.is_match(out) {
        return;
    }
    let mut n = 0;
    let replaced = re.replace_all(out, |c: &Captures| match f(c) {
        Some(r) => {
            n += 1;
            r
        }
        None => c[0].to_owned(),
    });
    if n > 0 {
        let replaced = replaced.into_owned();
        *out = Cow::Owned(replaced);
        tally.count(Cow::Borrowed(rule), n);
    }
}

/// A placeholder an earlier rule left (`[token]`).
fn is_placeholder(s: &str) -> bool {
    s.len() > 2 && s.starts_with('[') && s.ends_with(']') && !s[1..s.len() - 1].contains(['[', ']'])
}

/// Machine-made rather than a word: a digit, a symbol, or a capital after the first letter.
fn looks_random(s: &str) -> bool {
    s.bytes().enumerate().any(|(i, b)| {
        b.is_ascii_digit() || b"+/=_-.~".contains(&b) || (i > 0 && b.is_ascii_uppercase())
    })
}

fn is_word(bytes: &[u8], i: usize) -> bool {
    bytes
        .get(i)
        .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

fn replace_ipv6(s: &str) -> (String, u64) {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let (mut last, mut n) = (0, 0);
    for m in IPV6.find_iter(s) {
        let standalone =
            (m.start() == 0 || !is_word(bytes, m.start() - 1)) && !is_word(bytes, m.end());
        let text = m.as_str();
        if standalone
            && text.bytes().any(|b| b.is_ascii_hexdigit())
            && text.parse::<Ipv6Addr>().is_ok()
        {
            out.push_str(&s[last..m.start()]);
            out.push_str("[ip]");
            last = m.end();
            n += 1;
        }
    }
    out.push_str(&s[last..]);
    (out, n)
}

/// IPv4 addresses, except where a dotted quad is a version: after `v`, after a product token
/// (`Chrome/120.0.0.0`), after the word version/release/build, followed by another `.digit` or by a
/// pre-release tag (`-beta`). A bare four-part version with none of these cues is scrubbed: privacy wins
/// the tie.
fn version_word_before(head: &str) -> bool {
    let word = head
        .trim_end_matches([' ', ':', '='])
        .rsplit([' ', '(', '[', ','])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    ["version", "ver", "release", "build", "firmware"]
        .iter()
        .any(|w| word.ends_with(w))
}

fn replace_ipv4(s: &str) -> (String, u64) {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let (mut last, mut n) = (0, 0);
    for m in IPV4.find_iter(s) {
        let before = |k: usize| m.start().checked_sub(k).map(|i| bytes[i]);
        let version = matches!(before(1), Some(b'v' | b'V'))
            || (before(1) == Some(b'/') && before(2).is_some_and(|b| b.is_ascii_alphanumeric()))
            || before(1) == Some(b'.')
            || (bytes.get(m.end()) == Some(&b'.')
                && bytes.get(m.end() + 1).is_some_and(u8::is_ascii_digit))
            || (bytes.get(m.end()) == Some(&b'-')
                && bytes.get(m.end() + 1).is_some_and(u8::is_ascii_alphabetic))
            || version_word_before(&s[..m.start()]);
        if version || m.as_str().parse::<Ipv4Addr>().is_err() {
            continue;
        }
        out.push_str(&s[last..m.start()]);
        out.push_str("[ip]");
        last = m.end();
        n += 1;
    }
    out.push_str(&s[last..]);
    (out, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrub(s: &str) -> String {
        Scrubber::default().text(s, &mut Tally::default())
    }

    #[test]
    fn secret_keys_by_their_words() {
        for key in [
            "password",
            "userPassPhrase",
            "x-api-Key",
            "API_KEY",
            "sessionId",
            "ſession",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["plan", "monkey", "key", "colour", "apiVersion"] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    proptest::proptest! {
        /// The automata answer as the regexes they stand for (`(?i:…)` here also yields `ſ` and the
        /// Kelvin sign, which only the regexes fold).
        #[test]
        fn secret_words_agree_with_their_regexes(
            s in "((?i:pass|word|wd|phrase|pwd|secret|token|key|api|access|private|auth|credential|session|sid|cookie|signature)|[_. =:-]|[a-z0-9]{1,3}|é){0,6}"
        ) {
            proptest::prop_assert_eq!(is_secret_key(&s), SECRET_KEY.is_match(&s), "key: {}", s);
            proptest::prop_assert_eq!(has_secret_word(&s), SECRET_WORD.is_match(&s), "word: {}", s);
        }
    }

    #[test]
    fn replaces_emails_and_ips() {
        assert_eq!(
            scrub("user alice.smith+x@mail.example.co.uk failed"),
            "user [email] failed"
        );
        assert_eq!(scrub("from 203.0.113.42:8080"), "from [ip]:8080");
        assert_eq!(scrub("peer 2001:db8::7 closed"), "peer [ip] closed");
        assert_eq!(scrub("mapped ::ffff:198.51.100.7 too"), "mapped [ip] too");
        assert_eq!(
            scrub("/users/bob@example.org/settings"),
            "/users/[email]/settings"
        );
        assert_eq!(scrub("GET http://10.0.0.1/x"), "GET http://[ip]/x");
    }

    #[test]
    fn secrets_are_typed() {
        assert_eq!(
            scrub("card 4111 1111 1111 1111 declined"),
            "card [card] declined"
        );
        assert_eq!(
            scrub("card 4111 1111 1111 1112 declined"),
            "card 4111 1111 1111 1112 declined"
        );
        assert_eq!(
            scrub("pay to DE89 3704 0044 0532 0130 00 now"),
            "pay to [iban] now"
        );
        assert_eq!(scrub("pay to GB82WEST12345698765432"), "pay to [iban]");
        assert_eq!(
            scrub("postgres://app:hunter2@db.internal:5432/app"),
            "postgres://[credentials]@db.internal:5432/app"
        );
        assert_eq!(
            scrub("Authorization: Bearer abcdef1234567890"),
            "Authorization: Bearer [token]"
        );
        assert_eq!(
            scrub("login failed password=hunter2 for"),
            "login failed password=[secret] for"
        );
        assert_eq!(
            scrub(r#"{"api_key": "k-123456"}"#),
            r#"{"api_key": "[secret]"}"#
        );
        assert_eq!(
            scrub("at /home/alice/app/src/main.rs"),
            "at /home/[user]/app/src/main.rs"
        );
        assert_eq!(
            scrub(r"at C:\Users\bob\AppData\x.dll"),
            r"at C:\Users\[user]\AppData\x.dll"
        );
        assert_eq!(
            scrub("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- tail"),
            "[private_key] tail"
        );
        assert_eq!(
            scrub("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl end"),
            "jwt [jwt] end"
        );
    }

    #[test]
    fn tokens_behind_each_literal_prefilter_are_found() {
        for (text, want) in [
            (
                "header Basic dXNlcjpwYXNzd29yZA== sent",
                "header Basic [token] sent",
            ),
            ("BEARER abcdef1234567890", "BEARER [token]"),
            (
                "auth Negotiate YIIabc123xyz+/ ok",
                "auth Negotiate [token] ok",
            ),
            ("key AKIAIOSFODNN7EXAMPLE here", "key [token] here"),
            (
                "key AIzaSyA1234567890abcdefghijklmnopqrstuv here",
                "key [token] here",
            ),
            ("push glpat-abcdefghij0123456789 done", "push [token] done"),
            ("hook xoxb-1234567890-abcdefghij done", "hook [token] done"),
            ("xoxb-1234567890", "[token]"),
            (
                "Waterproof boots - Shop Example - free delivery",
                "Waterproof boots - Shop Example - free delivery",
            ),
        ] {
            assert_eq!(scrub(text), want, "{text}");
        }
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        for plain in [
            "at main (app.js:10:15)",
            "released 2026-11-29T10:15:30Z",
            "v1.2.3",
            "tacet_model::event::parse",
            "ratio 3:4",
            "Vec::new()",
            "a::b::c",
            "Chrome/120.0.0.0",
            "v10.0.0.1",
            "version 1.2.3.4.5",
            "order 20261129101530123",
            "token expired",
            "auth failed",
            "the password is wrong",
        ] {
            assert_eq!(scrub(plain), plain);
        }
    }

    #[test]
    fn secret_keys_are_dropped_and_counted() {
        let s = Scrubber::default();
        let mut tally = Tally::default();
        assert_eq!(s.property("password", "hunter2", &mut tally), "[secret]");
        assert_eq!(s.property("API_KEY", "k", &mut tally), "[secret]");
        assert_eq!(s.property("plan", "pro", &mut tally), "pro");
        s.text("a@b.example and c@d.example from 192.0.2.1", &mut tally);
        assert_eq!(
            (tally.get("secret"), tally.get("email"), tally.get("ip")),
            (2, 2, 1)
        );
    }

    #[test]
    fn custom_rules_run_last_and_are_counted() {
        let rules = [CustomRule::new("order", r"ORD-\d{6}").unwrap()];
        let mut tally = Tally::default();
        assert_eq!(
            Scrubber::new(&rules).text("refund ORD-123456 and ORD-654321", &mut tally),
            "refund [order] and [order]"
        );
        assert_eq!(tally.get("custom:order"), 2);
    }
}
