//! URLs are reduced to what reports need: host, path and campaign parameters.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use url::Url;

/// A page URL without fragment or credentials; of the query, `utm_*` parameters and allowed ones survive.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanUrl {
    pub host: String,
    pub path: String,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_term: Option<String>,
    pub utm_content: Option<String>,
    /// The allowed query parameters, in URL order, form-encoded (`page=2&sort=price`).
    pub query: Option<String>,
}

impl CleanUrl {
    /// The field a `utm_*` parameter named `name` goes to.
    fn utm(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name {
            "utm_source" => &mut self.utm_source,
            "utm_medium" => &mut self.utm_medium,
            "utm_campaign" => &mut self.utm_campaign,
            "utm_term" => &mut self.utm_term,
            "utm_content" => &mut self.utm_content,
            _ => return None,
        })
    }
}

/// The parts of an absolute http(s) URL the privacy step needs, split without the `url` crate when the URL
/// is plain (ASCII host, no IPv6 literal, no dot segments or backslashes in the path): the common case, and
/// several times cheaper than a full parse. Anything else goes through `url::Url`.
struct Parts<'a> {
    host: Cow<'a, str>,
    path: Cow<'a, str>,
    query: Option<Cow<'a, str>>,
}

fn split_plain(raw: &str) -> Option<Parts<'_>> {
    let (host, lower, tail) = plain_host(raw)?;
    // One pass over the path: it ends at `?` or `#`, and the url crate would change dot segments,
    // backslashes, spaces and control characters, and non-ASCII bytes.
    let bytes = tail.as_bytes();
    let mut end = bytes.len();
    let mut previous = 0u8;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'?' || b == b'#' {
            end = i;
            break;
        }
        if !b.is_ascii_graphic() || b == b'\\' || (b == b'.' && previous == b'/') {
            return None;
        }
        previous = b;
    }
    let (path, after) = tail.split_at(end);
    let query = after.strip_prefix('?').map(|q| {
        let end = memchr::memchr(b'#', q.as_bytes()).unwrap_or(q.len());
        Cow::Borrowed(&q[..end])
    });
    Some(Parts {
        host: if lower {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        },
        path: Cow::Borrowed(if path.is_empty() { "/" } else { path }),
        query,
    })
}

/// What a byte is in a plain host: ASCII lower case letters, digits, `-` and `.`; upper case letters; the
/// `:` before a port; anything else (which sends the URL to the url crate).
const OTHER: u8 = 0;
const PLAIN: u8 = 1;
const UPPER: u8 = 2;
const COLON: u8 = 3;
static HOST_BYTES: [u8; 256] = {
    let mut table = [OTHER; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' => PLAIN,
            b'A'..=b'Z' => UPPER,
            b':' => COLON,
            _ => OTHER,
        };
        b += 1;
    }
    table
};

/// The host of an absolute http(s) URL whose host is plain (ASCII letters, digits, `-` and `.`, not ending
/// in a label that starts with a digit, which the url crate reads as an IPv4 address), in one pass over the
/// scheme and authority: the host, whether it has upper case letters, and what follows the authority.
fn plain_host(raw: &str) -> Option<(&str, bool, &str)> {
    let bytes = raw.as_bytes();
    let scheme = if bytes.len() >= 8 && bytes[..8].eq_ignore_ascii_case(b"https://") {
        8
    } else if bytes.len() >= 7 && bytes[..7].eq_ignore_ascii_case(b"http://") {
        7
    } else {
        return None;
    };
    // The authority ends at the first `/`, `?` or `#`; the host starts after its last `@`.
    let end =
        memchr::memchr3(b'/', b'?', b'#', &bytes[scheme..]).map_or(bytes.len(), |e| scheme + e);
    let start = memchr::memrchr(b'@', &bytes[scheme..end]).map_or(scheme, |at| scheme + at + 1);
    // Then the host up to a `:` and a port of digits (maybe none).
    let mut host_end = end;
    let mut upper = false;
    for (i, &b) in bytes[..end].iter().enumerate().skip(start) {
        match HOST_BYTES[usize::from(b)] {
            PLAIN => {}
            UPPER => upper = true,
            COLON => {
                if !bytes[i + 1..end].iter().all(u8::is_ascii_digit) {
                    return None;
                }
                host_end = i;
                break;
            }
            _ => return None,
        }
    }
    // The last label (before a trailing dot) must start with a letter: `1.2`, `0x7f.1` or `10.0.0.1`
    // are IPv4 addresses to the url crate, which writes them its own way, and an empty label is left to it.
    let host = &raw[start..host_end];
    let last = host.strip_suffix('.').unwrap_or(host).rsplit('.').next();
    if !last
        .unwrap_or_default()
        .starts_with(|c: char| c.is_ascii_alphabetic())
    {
        return None;
    }
    Some((host, upper, &raw[end..]))
}

fn split(raw: &str) -> Option<Parts<'_>> {
    if let Some(parts) = split_plain(raw) {
        return Some(parts);
    }
    let url = Url::parse(raw).ok()?;
    Some(Parts {
        host: Cow::Owned(url.host_str().unwrap_or_default().to_ascii_lowercase()),
        path: Cow::Owned(url.path().to_owned()),
        query: url.query().map(|q| Cow::Owned(q.to_owned())),
    })
}

/// Cleans a page URL, keeping the query parameters named in `allowed`. A relative or unparseable URL keeps
/// only its path part (before `?` and `#`).
pub fn clean_url(raw: &str, allowed: &[String]) -> CleanUrl {
    let Some(parts) = split(raw) else {
        let path = raw.split(['?', '#']).next().unwrap_or_default();
        return CleanUrl {
            path: decode(path).into_owned(),
            ..CleanUrl::default()
        };
    };
    let mut clean = CleanUrl {
        host: parts.host.into_owned(),
        path: decode(&parts.path).into_owned(),
        ..CleanUrl::default()
    };
    let Some(query) = parts.query else {
        return clean;
    };
    let mut kept = url::form_urlencoded::Serializer::new(String::new());
    let mut any_kept = false;
    // Split as `form_urlencoded::parse` does, but a value is decoded only when it is kept: most of a
    // query is dropped, and decoding it was most of this function's cost.
    pairs(&query, |k, v| {
        let k = k.decoded();
        if allowed.iter().any(|a| *a == k) {
            kept.append_pair(&k, &v.decoded());
            any_kept = true;
            return;
        }
        let Some(slot) = clean.utm(&k) else {
            return;
        };
        if slot.is_none() {
            let v = v.decoded();
            if !v.is_empty() {
                *slot = Some(v.into_owned());
            }
        }
    });
    if any_kept {
        clean.query = Some(kept.finish());
    }
    clean
}

/// The host of a referrer URL, lower case; `None` for anything without a host.
pub fn referrer_host(raw: &str) -> Option<String> {
    // The path does not change the host: only the scheme and authority are looked at.
    if let Some((host, _, _)) = plain_host(raw) {
        return Some(host.to_ascii_lowercase());
    }
    Url::parse(raw)
        .ok()?
        .host_str()
        .filter(|h| !h.is_empty())
        .map(str::to_ascii_lowercase)
}

fn decode(path: &str) -> Cow<'_, str> {
    // Without a `%` there is nothing to decode (and the text is UTF-8 already).
    if memchr::memchr(b'%', path.as_bytes()).is_none() {
        return Cow::Borrowed(path);
    }
    percent_decode_str(path).decode_utf8_lossy()
}

/// One component of a form-encoded query as sent, and whether it has a `+` or `%` to decode.
#[derive(Clone, Copy)]
struct Component<'a> {
    text: &'a str,
    coded: bool,
}

impl<'a> Component<'a> {
    fn decoded(self) -> Cow<'a, str> {
        if self.coded {
            Cow::Owned(form_decode(self.text))
        } else {
            Cow::Borrowed(self.text)
        }
    }
}

/// The bytes that end a pair, end its key or need decoding.
const QUERY_MARKS: [bool; 256] = {
    let mut t = [false; 256];
    t[b'&' as usize] = true;
    t[b'=' as usize] = true;
    t[b'+' as usize] = true;
    t[b'%' as usize] = true;
    t
};

/// Calls `each` with the key and value of every pair of `query`, split as `form_urlencoded::parse` splits
/// it (pieces between `&`, empty ones skipped; the key ends at the first `=`, the value is empty without
/// one), in one pass that also notes which components need decoding.
fn pairs<'a>(query: &'a str, mut each: impl FnMut(Component<'a>, Component<'a>)) {
    let bytes = query.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let mut eq = None;
        // Whether the key, then the value, has a byte to decode.
        let mut coded = [false; 2];
        loop {
            // Most bytes are none of the four: skip them in a tight loop.
            while i < bytes.len() && !QUERY_MARKS[usize::from(bytes[i])] {
                i += 1;
            }
            match bytes.get(i) {
                None | Some(b'&') => break,
                Some(b'=') if eq.is_none() => eq = Some(i),
                Some(b'+' | b'%') => coded[usize::from(eq.is_some())] = true,
                Some(_) => {}
            }
            i += 1;
        }
        if i > start {
            let (key, value) = match eq {
                Some(e) => (&query[start..e], &query[e + 1..i]),
                None => (&query[start..i], ""),
            };
            each(
                Component {
                    text: key,
                    coded: coded[0],
                },
                Component {
                    text: value,
                    coded: coded[1],
                },
            );
        }
        i += 1;
    }
}

/// One component of a form-encoded query, decoded as `form_urlencoded::parse` decodes it: `+` is a
/// space, then percent escapes are bytes, and bytes that are not UTF-8 become U+FFFD.
/// Called only for a component `pairs` found a `+` or `%` in.
fn form_decode(s: &str) -> String {
    decode(&s.replace('+', " ")).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_query_except_utm() {
        let c = clean_url(
            "https://User:pw@Shop.Example/Cart/Item%20One?email=a@b.c&utm_source=news&utm_medium=mail#frag",
            &[],
        );
        assert_eq!(c.host, "shop.example");
        assert_eq!(c.path, "/Cart/Item One");
        assert_eq!(c.utm_source.as_deref(), Some("news"));
        assert_eq!(c.utm_medium.as_deref(), Some("mail"));
        assert_eq!((c.utm_campaign, c.query), (None, None));
        let relative = clean_url("/settings?token=abc", &[]);
        assert_eq!(
            (relative.host.as_str(), relative.path.as_str()),
            ("", "/settings")
        );
    }

    #[test]
    fn allowed_parameters_are_kept_in_order() {
        let allowed = ["page".to_owned(), "q".to_owned()];
        let c = clean_url(
            "https://s.example/list?q=red+shoes&token=x&page=2&utm_source=a",
            &allowed,
        );
        assert_eq!(c.query.as_deref(), Some("q=red+shoes&page=2"));
        assert_eq!(c.utm_source.as_deref(), Some("a"));
    }

    /// The fast split and the url crate agree wherever the fast split answers.
    #[test]
    fn plain_split_agrees_with_the_url_crate() {
        let slow = |raw: &str| {
            let url = Url::parse(raw).unwrap();
            (
                url.host_str().unwrap_or_default().to_ascii_lowercase(),
                decode(url.path()).into_owned(),
                url.query().map(str::to_owned),
            )
        };
        for raw in [
            "https://shop.example/products/red-shoes?page=2&utm_source=news",
            "HTTP://Shop.Example:8080",
            "https://user:pw@a.example/x%20y?q=a+b#frag",
            "https://a.example?x=1",
            "https://a.example/#top",
            "https://a.example/a/b/c.html?",
            "https://xn--bcher-kva.example/",
        ] {
            let fast =
                split_plain(raw).unwrap_or_else(|| panic!("{raw} should take the fast path"));
            assert_eq!(
                (
                    fast.host.into_owned(),
                    decode(&fast.path).into_owned(),
                    fast.query.map(Cow::into_owned)
                ),
                slow(raw),
                "{raw}"
            );
        }
        for unusual in [
            "https://bücher.example/",
            "https://a.example/x/../y",
            "https://[2001:db8::1]/",
            "https://a.example/a b",
            "https://a.example:port/",
            "ftp://a.example/",
            "android-app://com.example",
            "http://10.0.0.1:3000/admin",
            "https://0x7f.1/",
            "https://1.2./",
        ] {
            assert!(split_plain(unusual).is_none(), "{unusual}");
        }
        assert_eq!(clean_url("https://a.example/x/../y", &[]).path, "/y");
        assert_eq!(clean_url("https://0x7f.1/", &[]).host, "127.0.0.1");
        assert_eq!(
            clean_url("https://bücher.example/", &[]).host,
            "xn--bcher-kva.example"
        );
    }

    proptest::proptest! {
        /// Wherever the one-pass split answers, the url crate gives the same host, path and query; a
        /// referrer's host is the url crate's, whatever follows it.
        #[test]
        fn the_one_pass_split_agrees_with_the_url_crate(
            raw in "(https?|HTTP|ftp|http:/)://((a|b:c|@)@)?([abZ09x-]|\\.|0x|1\\.){0,7}(:[0-9p]{0,3})?([/?#.\\\\%a :@\t]|%41|%zz|b|2|\\.\\.|/\\.){0,8}"
        ) {
            let slow = Url::parse(&raw).ok();
            let host = |u: &Url| u.host_str().filter(|h| !h.is_empty()).map(str::to_ascii_lowercase);
            proptest::prop_assert_eq!(referrer_host(&raw), slow.as_ref().and_then(host), "{}", raw);
            if let Some(fast) = split_plain(&raw) {
                let slow = slow.expect("the url crate parses what the fast split takes");
                proptest::prop_assert_eq!(
                    (fast.host.into_owned(), decode(&fast.path).into_owned(), fast.query.map(Cow::into_owned)),
                    (
                        slow.host_str().unwrap_or_default().to_ascii_lowercase(),
                        decode(slow.path()).into_owned(),
                        slow.query().map(str::to_owned)
                    ),
                    "{}", raw
                );
            }
        }
    }

    /// `clean_url` as it was, with every parameter decoded by `form_urlencoded::parse`.
    fn clean_url_reference(raw: &str, allowed: &[String]) -> CleanUrl {
        let (base, query) = raw.split_once('?').expect("a URL with a query");
        let query = query.split('#').next().unwrap_or_default();
        let mut clean = clean_url(base, allowed);
        let mut kept = url::form_urlencoded::Serializer::new(String::new());
        let mut any_kept = false;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if allowed.iter().any(|a| *a == k) {
                kept.append_pair(&k, &v);
                any_kept = true;
                continue;
            }
            let Some(slot) = clean.utm(&k) else {
                continue;
            };
            if !v.is_empty() && slot.is_none() {
                *slot = Some(v.into_owned());
            }
        }
        if any_kept {
            clean.query = Some(kept.finish());
        }
        clean
    }

    proptest::proptest! {
        /// Decoding only the parameters kept answers as decoding them all did.
        #[test]
        fn lazy_query_decoding_agrees_with_form_urlencoded(
            query in "((utm_source|utm_medium|utm_term|page|q|ref|%75tm_source|utm%5Fmedium|a\\+b)(=([a-z0-9+ ]|%[0-9A-Fa-f]{2}|%[G-Z]|%|%C3%A9|%FF|=){0,6})?|&){0,8}"
        ) {
            let allowed = ["page".to_owned(), "q".to_owned(), "a b".to_owned()];
            let raw = format!("https://s.example/p?{query}#f");
            proptest::prop_assert_eq!(clean_url(&raw, &allowed), clean_url_reference(&raw, &allowed));
        }
    }

    #[test]
    fn referrer_is_host_only() {
        assert_eq!(
            referrer_host("https://www.Google.com/search?q=secret").as_deref(),
            Some("www.google.com")
        );
        assert_eq!(referrer_host("not a url"), None);
        assert_eq!(
            referrer_host("android-app://com.example"),
            Some("com.example".into())
        );
    }
}
