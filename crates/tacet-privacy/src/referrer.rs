//! Referrer classification: where a visit came from, as a class (`search`, `social`, `email`, `internal`,
//! `direct`, `other`) and, for known hosts, a source name. The host list is `data/referrers.txt`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::LazyLock;

const LIST: &str = include_str!("../data/referrers.txt");

/// A referrer's class and, when known, its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    pub class: &'static str,
    pub source: Option<&'static str>,
}

struct Known {
    exact: HashMap<&'static str, (&'static str, String), Fnv>,
    /// `google.*`: the name before the wildcard.
    wildcard: HashMap<&'static str, (&'static str, String), Fnv>,
}

/// FNV-1a for the list's tables. They are filled once from `data/referrers.txt`, so a host chosen by a
/// client can cost at most the longest probe of a fixed table: SipHash's defence against chosen keys buys
/// nothing here, and it was most of a lookup's cost (three lookups an event for `www.google.com`).
type Fnv = BuildHasherDefault<Fnv1a>;

struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

static KNOWN: LazyLock<Known> = LazyLock::new(|| {
    let mut known = Known {
        exact: HashMap::default(),
        wildcard: HashMap::default(),
    };
    for line in LIST.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let class = match words.next() {
            Some("search") => "search",
            Some("social") => "social",
            Some("email") => "email",
            other => panic!("data/referrers.txt: unknown class {other:?} in {line:?}"),
        };
        let source = words
            .next()
            .expect("data/referrers.txt: every line names a source")
            .replace('_', " ");
        for host in words {
            match host.strip_suffix(".*") {
                Some(name) => known.wildcard.insert(name, (class, source.clone())),
                None => known.exact.insert(host, (class, source.clone())),
            };
        }
    }
    known
});

fn source(entry: &'static (&'static str, String)) -> Referrer {
    Referrer {
        class: entry.0,
        source: Some(entry.1.as_str()),
    }
}

/// Looks a host up in the list: the host itself, then each parent domain; `name.*` entries match a name
/// followed by up to two labels of at most three letters (`google.co.uk`).
fn lookup(host: &str) -> Option<Referrer> {
    let known = &*KNOWN;
    let mut candidate = host;
    loop {
        if let Some(entry) = known.exact.get(candidate) {
            return Some(source(entry));
        }
        let (name, suffix) = candidate.split_at(memchr::memchr(b'.', candidate.as_bytes())?);
        let suffix = &suffix[1..];
        if short_labels(suffix)
            && let Some(entry) = known.wildcard.get(name)
        {
            return Some(source(entry));
        }
        candidate = suffix;
    }
}

/// One or two labels of two or three bytes each (`com`, `co.uk`): what may follow a `name.*` entry.
fn short_labels(suffix: &str) -> bool {
    let (mut labels, mut len) = (1, 0);
    for &b in suffix.as_bytes() {
        if b != b'.' {
            len += 1;
        } else if (2..=3).contains(&len) && labels < 2 {
            (labels, len) = (labels + 1, 0);
        } else {
            return false;
        }
    }
    (2..=3).contains(&len)
}

/// `a` is a subdomain of `of` (`blog.shop.example` of `shop.example`).
fn is_subdomain(a: &str, of: &str) -> bool {
    a.len() > of.len() && a.ends_with(of) && a.as_bytes()[a.len() - of.len() - 1] == b'.'
}

fn strip_www(host: &str) -> &str {
    host.strip_prefix("www.").unwrap_or(host)
}

/// Classifies a visit by its referrer host (already lower case) and page host, with `utm_medium` only for
/// visits without a referrer (newsletters often send none). A referrer host always gets the same class,
/// whatever the link's `utm_medium` said: otherwise one host showed up under two classes in the
/// referrers report (`other` for most of its visits, `email` for those tagged so).
pub fn classify(
    referrer_host: Option<&str>,
    page_host: &str,
    utm_medium: Option<&str>,
) -> Referrer {
    const MEDIA: [(&str, &str); 10] = [
        ("email", "email"),
        ("e-mail", "email"),
        ("newsletter", "email"),
        ("mail", "email"),
        ("social", "social"),
        ("social-media", "social"),
        ("social_media", "social"),
        ("sm", "social"),
        ("organic", "search"),
        ("search", "search"),
    ];
    let by_medium = utm_medium.and_then(|m| {
        MEDIA
            .iter()
            .find(|(name, _)| m.eq_ignore_ascii_case(name))
            .map(|&(_, class)| class)
    });
    let Some(host) = referrer_host.filter(|h| !h.is_empty()) else {
        return Referrer {
            class: by_medium.unwrap_or("direct"),
            source: None,
        };
    };
    let (r, p) = (strip_www(host), strip_www(page_host));
    if !p.is_empty() && (r == p || is_subdomain(r, p) || is_subdomain(p, r)) {
        return Referrer {
            class: "internal",
            source: None,
        };
    }
    lookup(host).unwrap_or(Referrer {
        class: "other",
        source: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(referrer: Option<&str>, medium: Option<&str>) -> (&'static str, Option<&'static str>) {
        let r = classify(referrer, "shop.example", medium);
        (r.class, r.source)
    }

    /// The byte scan of a wildcard's suffix answers as splitting it did.
    #[test]
    fn short_labels_as_split() {
        let split =
            |s: &str| s.split('.').count() <= 2 && s.split('.').all(|l| (2..=3).contains(&l.len()));
        for s in [
            "", ".", "c", "co", "com", "comm", "co.uk", "com.au", "co.ukk", "c.uk", "co.uk.x",
            "co.u", "co.", ".uk", "co..uk", "ab.cd.ef",
        ] {
            assert_eq!(short_labels(s), split(s), "{s:?}");
        }
    }

    #[test]
    fn known_hosts_and_subdomains() {
        assert_eq!(c(Some("www.google.com"), None), ("search", Some("Google")));
        assert_eq!(
            c(Some("www.google.co.uk"), None),
            ("search", Some("Google"))
        );
        assert_eq!(c(Some("google.de"), None), ("search", Some("Google")));
        assert_eq!(c(Some("mail.google.com"), None), ("email", Some("Gmail")));
        assert_eq!(
            c(Some("l.facebook.com"), None),
            ("social", Some("Facebook"))
        );
        assert_eq!(
            c(Some("news.ycombinator.com"), None),
            ("social", Some("Hacker News"))
        );
        assert_eq!(c(Some("t.co"), None), ("social", Some("X")));
        assert_eq!(
            c(Some("duckduckgo.com"), None),
            ("search", Some("DuckDuckGo"))
        );
        // A look-alike is not Google.
        assert_eq!(c(Some("google.evil-example.net"), None), ("other", None));
        assert_eq!(c(Some("notgoogle.com"), None), ("other", None));
    }

    #[test]
    fn internal_direct_and_medium() {
        assert_eq!(c(Some("shop.example"), None), ("internal", None));
        assert_eq!(c(Some("www.shop.example"), None), ("internal", None));
        assert_eq!(c(Some("blog.shop.example"), None), ("internal", None));
        assert_eq!(c(None, None), ("direct", None));
        assert_eq!(c(None, Some("Email")), ("email", None));
        assert_eq!(c(None, Some("SOCIAL_Media")), ("social", None));
        assert_eq!(c(None, Some("Organic")), ("search", None));
        assert_eq!(c(None, Some("cpc")), ("direct", None));
        assert_eq!(c(None, Some("e-mails")), ("direct", None));
        // A host keeps its class whatever the link's medium: one row per host in the report.
        assert_eq!(
            c(Some("partner.example"), Some("newsletter")),
            ("other", None)
        );
        assert_eq!(c(Some("t.co"), Some("email")), ("social", Some("X")));
        assert_eq!(c(Some("partner.example"), None), ("other", None));
    }

    #[test]
    fn the_list_parses() {
        assert!(KNOWN.exact.len() > 100, "{}", KNOWN.exact.len());
    }
}
