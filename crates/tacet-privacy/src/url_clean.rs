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

/// Cleans a page URL, keeping the query parameters named in `allowed`. A relative or unparseable URL keeps
/// only its path part (before `?` and `#`).
pub fn clean_url(raw: &str, allowed: &[String]) -> CleanUrl {
    let Ok(url) = Url::parse(raw) else {
        let path = raw.split(['?', '#']).next().unwrap_or_default();
        return CleanUrl {
            path: decode(path).into_owned(),
            ..CleanUrl::default()
        };
    };
    let mut clean = CleanUrl {
        host: url.host_str().unwrap_or_default().to_ascii_lowercase(),
        path: decode(url.path()).into_owned(),
        ..CleanUrl::default()
    };
    let mut kept = url::form_urlencoded::Serializer::new(String::new());
    let mut any_kept = false;
    for (k, v) in url.query_pairs() {
        if allowed.iter().any(|a| *a == k) {
            kept.append_pair(&k, &v);
            any_kept = true;
            continue;
        }
        let slot = match k.as_ref() {
            "utm_source" => &mut clean.utm_source,
            "utm_medium" => &mut clean.utm_medium,
            "utm_campaign" => &mut clean.utm_campaign,
            "utm_term" => &mut clean.utm_term,
            "utm_content" => &mut clean.utm_content,
            _ => continue,
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

/// The host of a referrer URL, lower case; `None` for anything without a host.
pub fn referrer_host(raw: &str) -> Option<String> {
    Url::parse(raw)
        .ok()?
        .host_str()
        .filter(|h| !h.is_empty())
        .map(str::to_ascii_lowercase)
}

fn decode(path: &str) -> Cow<'_, str> {
    percent_decode_str(path).decode_utf8_lossy()
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
