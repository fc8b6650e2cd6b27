//! Referrer classification: where a visit came from, as a class (`search`, `social`, `email`, `internal`,
//! `direct`, `other`) and, for known hosts, a source name. The host list is `data/referrers.txt`.

use std::collections::HashMap;
use std::sync::LazyLock;

const LIST: &str = include_str!("../data/referrers.txt");

/// A referrer's class and, when known, its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    pub class: &'static str,
    pub source: Option<&'static str>,
}

struct Known {
    exact: HashMap<&'static str, (&'static str, String)>,
    /// `google.*`: the name before the wildcard.
    wildcard: HashMap<&'static str, (&'static str, String)>,
}

static KNOWN: LazyLock<Known> = LazyLock::new(|| {
    let mut known = Known {
        exact: HashMap::new(),
        wildcard: HashMap::new(),
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
        if let Some((name, suffix)) = candidate.split_once('.')
            && suffix.split('.').count() <= 2
            && suffix.split('.').all(|l| (2..=3).contains(&l.len()))
            && let Some(entry) = known.wildcard.get(name)
        {
            return Some(source(entry));
        }
        candidate = candidate.split_once('.')?.1;
    }
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
    let medium = utm_medium.map(str::to_ascii_lowercase);
    let by_medium = match medium.as_deref() {
        Some("email" | "e-mail" | "newsletter" | "mail") => Some("email"),
        Some("social" | "social-media" | "social_media" | "sm") => Some("social"),
        Some("organic" | "search") => Some("search"),
        _ => None,
    };
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
