//! Scrubbing of free text: what looks like personal data is replaced by a typed placeholder.
//!
//! This first rule set covers e-mail addresses, IPv4 and IPv6 addresses, and the values of properties whose
//! key names a secret. The privacy-engine issue grows it to Sentry Relay's `@common` set.

use std::borrow::Cow;
use std::net::Ipv6Addr;
use std::sync::LazyLock;

use regex::Regex;

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}")
        .expect("valid regex")
});
static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\b")
        .expect("valid regex")
});
/// Candidates only: each match is checked with the standard library's IPv6 parser. The embedded-IPv4
/// form comes first so that leftmost-first matching prefers it.
static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:[0-9a-f]{0,4}:){2,6}(?:\d{1,3}\.){3}\d{1,3}|[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}",
    )
    .expect("valid regex")
});
static SECRET_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)pass(?:word|wd)?|secret|token|api[_-]?key|auth|credential|session|cookie")
        .expect("valid regex")
});

/// The scrubber; stateless, shared.
#[derive(Debug, Default, Clone, Copy)]
pub struct Scrubber;

impl Scrubber {
    /// Scrubs free text: e-mail addresses become `[email]`, IP addresses `[ip]`.
    ///
    /// Each rule runs only when its cheap precondition holds (an `@`, a `:`, three dots and a digit), so
    /// ordinary text costs a few byte scans and one copy.
    pub fn text(&self, s: &str) -> String {
        let mut out = Cow::Borrowed(s);
        if out.contains('@') {
            out = Cow::Owned(EMAIL.replace_all(&out, "[email]").into_owned());
        }
        out = replace_ipv6(out);
        if out.bytes().filter(|b| *b == b'.').count() >= 3
            && out.bytes().any(|b| b.is_ascii_digit())
        {
            out = Cow::Owned(IPV4.replace_all(&out, "[ip]").into_owned());
        }
        out.into_owned()
    }

    /// Scrubs a property value; values under keys that name a secret are dropped whole.
    pub fn property(&self, key: &str, value: &str) -> String {
        if SECRET_KEY.is_match(key) {
            "[redacted]".to_owned()
        } else {
            self.text(value)
        }
    }
}

fn replace_ipv6(s: Cow<'_, str>) -> Cow<'_, str> {
    if !s.contains(':') {
        return s;
    }
    let bytes = s.as_bytes();
    let is_word = |i: usize| {
        bytes
            .get(i)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
    };
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for m in IPV6.find_iter(&s) {
        let standalone = (m.start() == 0 || !is_word(m.start() - 1)) && !is_word(m.end());
        let text = m.as_str();
        if standalone
            && text.bytes().any(|b| b.is_ascii_hexdigit())
            && text.parse::<Ipv6Addr>().is_ok()
        {
            out.push_str(&s[last..m.start()]);
            out.push_str("[ip]");
            last = m.end();
        }
    }
    if last == 0 {
        return s;
    }
    out.push_str(&s[last..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_emails_and_ips() {
        let s = Scrubber;
        assert_eq!(
            s.text("user alice.smith+x@mail.example.co.uk failed"),
            "user [email] failed"
        );
        assert_eq!(s.text("from 203.0.113.42:8080"), "from [ip]:8080");
        assert_eq!(s.text("peer 2001:db8::7 closed"), "peer [ip] closed");
        assert_eq!(s.text("mapped ::ffff:198.51.100.7 too"), "mapped [ip] too");
        assert_eq!(
            s.text("/users/bob@example.org/settings"),
            "/users/[email]/settings"
        );
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        let s = Scrubber;
        for plain in [
            "at main (app.js:10:15)",
            "released 2026-11-29T10:15:30Z",
            "v1.2.3",
            "tacet_model::event::parse",
            "ratio 3:4",
            "Vec::new()",
            "a::b::c",
        ] {
            assert_eq!(s.text(plain), plain);
        }
    }

    #[test]
    fn secret_keys_are_redacted() {
        let s = Scrubber;
        assert_eq!(s.property("password", "hunter2"), "[redacted]");
        assert_eq!(s.property("API_KEY", "k"), "[redacted]");
        assert_eq!(s.property("plan", "pro"), "pro");
    }
}
