//! User agent → browser, OS, device category and bot flag, with woothee plus lists of automation.
//!
//! woothee names the big browsers; [`OVERLAY`] names what it lacks or misnames, checked first in its order:
//! in-app browsers (Facebook, Instagram, Pinterest, Snapchat, Twitter, LINE), browsers built on Chrome or
//! WebKit that say who they are (UC Browser, Samsung Internet, Yandex, Brave, Opera Mini and Touch, Silk,
//! DuckDuckGo, Whale, MIUI, Huawei, Vivaldi), Chrome, Firefox and Edge on iOS (`CriOS`, `FxiOS`, `EdgiOS`),
//! and WebViews: an iPhone or iPad page without a `Safari/` token is an app's WebView (`iOS WebView`),
//! Android's is marked `; wv)` or, before Lollipop, `Version/4.0` beside `Chrome/` (`Android WebView`).
//! The test set in `data/user_agents.tsv` (real user agents, their source named there) holds the names.
//!
//! A bot is woothee's `crawler` category, a headless or automated browser (HeadlessChrome, PhantomJS,
//! Puppeteer, Playwright, Selenium, Lighthouse...), or an HTTP tool or library (curl, Wget,
//! python-requests, Go-http-client, okhttp, ...). An empty user agent is not: server-side senders of crash
//! reports often send none.

use std::sync::LazyLock;

/// What is kept of a user-agent string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgent {
    pub browser: String,
    pub browser_version: String,
    pub os: String,
    pub os_version: String,
    /// `desktop`, `mobile`, `tablet`, `appliance`, `bot` or `unknown`.
    pub device: &'static str,
    pub is_bot: bool,
}

static PARSER: LazyLock<woothee::parser::Parser> = LazyLock::new(woothee::parser::Parser::new);

const UNKNOWN: &str = "UNKNOWN";

/// Substrings (lower case) of automation and tool user agents woothee does not call crawlers.
const AUTOMATION: &[&str] = &[
    "headlesschrome",
    "phantomjs",
    "slimerjs",
    "puppeteer",
    "playwright",
    "selenium",
    "webdriver",
    "cypress",
    "chrome-lighthouse",
    "lighthouse",
    "pagespeed",
    "gtmetrix",
    "pingdom",
    "uptimerobot",
    "statuscake",
    "datadog synthetic",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "python-httpx",
    "aiohttp",
    "httpx/",
    "go-http-client",
    "okhttp",
    "java/",
    "apache-httpclient",
    "libwww-perl",
    "lwp::",
    "axios/",
    "node-fetch",
    "undici",
    "got (https://github.com/sindresorhus/got)",
    "postmanruntime",
    "insomnia",
    "httpie",
    "scrapy",
    "guzzlehttp",
    "ruby",
    "faraday",
    "dart:io",
    "rest-client",
    "powershell",
    "winhttp",
    "bot",
    "crawler",
    "spider",
    "scraper",
    "headless",
];

/// Whether a user agent is an automated client, by the list above (case-insensitive).
pub fn is_automation(ua: &str) -> bool {
    let lower = ua.to_ascii_lowercase();
    AUTOMATION.iter().any(|m| {
        if *m == "bot" {
            // `bot` ends a word (Googlebot/, AhrefsBot;): not the start of one (a carrier "OrangeBotswana").
            lower
                .match_indices("bot")
                .any(|(i, _)| !lower.as_bytes().get(i + 3).is_some_and(u8::is_ascii_alphabetic))
        } else {
            lower.contains(m)
        }
    })
        // Microsoft's "Cubot" phones and the like contain "bot" inside a word; a real marker stands alone.
        && !(lower.contains("cubot") && !lower.contains("bot/") && !lower.contains("bot;"))
}

/// Browsers woothee lacks or misnames: `(markers, family, version token)`. The first entry with a marker in
/// the user agent names the browser; its version is the number after the version token (empty: none).
const OVERLAY: &[(&[&str], &str, &str)] = &[
    (&["FBAN/", "FBAV/", "FB_IAB/"], "Facebook in-app", "FBAV/"),
    (&["Instagram "], "Instagram in-app", "Instagram "),
    (&["Pinterest"], "Pinterest in-app", ""),
    (&["Snapchat"], "Snapchat in-app", "Snapchat/"),
    (
        &["Twitter for i", "TwitterAndroid"],
        "Twitter in-app",
        "Twitter for iPhone/",
    ),
    (&[" Line/", "Safari Line/"], "LINE in-app", "Line/"),
    (
        &["UCBrowser/", "UCWEB", "UC Browser", "UBrowser/"],
        "UC Browser",
        "UCBrowser/",
    ),
    (&["SamsungBrowser/"], "Samsung Internet", "SamsungBrowser/"),
    (
        &["YaBrowser/", "YaSearchBrowser/"],
        "Yandex Browser",
        "YaBrowser/",
    ),
    (&["Opera Mini/", "OPiOS/"], "Opera Mini", "Opera Mini/"),
    (&["OPT/"], "Opera Touch", "OPT/"),
    (&["Silk/"], "Amazon Silk", "Silk/"),
    (&["DuckDuckGo/", " Ddg/"], "DuckDuckGo", "DuckDuckGo/"),
    (&["Whale/"], "Naver Whale", "Whale/"),
    (&["MiuiBrowser/"], "MIUI Browser", "MiuiBrowser/"),
    (&["HuaweiBrowser/"], "Huawei Browser", "HuaweiBrowser/"),
    (&["Brave/", "brave/", " Brave "], "Brave", "Brave/"),
    (&["Vivaldi/"], "Vivaldi", "Vivaldi/"),
    (&["EdgiOS/", "EdgA/", "Edge/", "Edg/"], "Edge", "EdgiOS/"),
    (&["GSA/"], "Google Search App", "GSA/"),
    (&["CriOS/"], "Chrome", "CriOS/"),
    (&["FxiOS/"], "Firefox", "FxiOS/"),
];

/// The family and version from [`OVERLAY`] or the WebView rules, if one applies.
fn overlay(ua: &str) -> Option<(&'static str, String)> {
    if let Some((_, family, token)) = OVERLAY
        .iter()
        .find(|(markers, _, _)| markers.iter().any(|m| ua.contains(m)))
    {
        // The version token, or the first marker that carries a number.
        let version = std::iter::once(*token)
            .chain(
                OVERLAY
                    .iter()
                    .find(|(_, f, _)| f == family)
                    .into_iter()
                    .flat_map(|(m, _, _)| m.iter().copied()),
            )
            .filter(|t| !t.is_empty())
            .find_map(|t| version_after(ua, t))
            .unwrap_or_default();
        return Some((family, version));
    }
    let ios = ua.contains("iPhone") || ua.contains("iPad") || ua.contains("iPod");
    if ios && ua.contains("AppleWebKit") && !ua.contains("Safari") {
        return Some(("iOS WebView", String::new()));
    }
    // Mobile Safari, also where the `Safari` token lost its version (woothee calls those a WebView).
    if ios && ua.contains("Version/") {
        return Some(("Safari", version_after(ua, "Version/").unwrap_or_default()));
    }
    let android_webview = ua.contains("Android")
        && ua.contains("Chrome/")
        && (ua.contains("; wv)") || ua.contains("Version/4.0"));
    if android_webview {
        return Some((
            "Android WebView",
            version_after(ua, "Chrome/").unwrap_or_default(),
        ));
    }
    None
}

/// For what woothee cannot name at all: a `Chrome/` token is Chrome (old Android builds without `Safari`).
fn fallback(ua: &str) -> Option<(&'static str, String)> {
    version_after(ua, "Chrome/").map(|v| ("Chrome", v))
}

/// The dotted number right after `token` in `ua`, if any.
fn version_after(ua: &str, token: &str) -> Option<String> {
    let rest = &ua[ua.find(token)? + token.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let v = rest[..end].trim_end_matches('.');
    (!v.is_empty() && v.starts_with(|c: char| c.is_ascii_digit())).then(|| v.to_owned())
}

/// Parses a user-agent string. Never fails: what woothee does not recognise is `UNKNOWN`.
pub fn parse_user_agent(ua: &str) -> UserAgent {
    let automated = !ua.is_empty() && is_automation(ua);
    let named = overlay(ua).filter(|_| !automated);
    let or_unknown = |s: &str| {
        if s.is_empty() {
            UNKNOWN.to_owned()
        } else {
            s.to_owned()
        }
    };
    let Some(r) = PARSER.parse(ua) else {
        let (browser, browser_version) = match named.or_else(|| fallback(ua)) {
            Some((family, version)) => (family.to_owned(), or_unknown(&version)),
            None => (UNKNOWN.into(), UNKNOWN.into()),
        };
        return UserAgent {
            browser,
            browser_version,
            os: UNKNOWN.into(),
            os_version: UNKNOWN.into(),
            device: if automated { "bot" } else { "unknown" },
            is_bot: automated,
        };
    };
    let is_bot = r.category == "crawler" || automated;
    // woothee files tablets under "smartphone"; an iPad, or Android without "Mobile", is a tablet.
    let tablet = ua.contains("iPad") || (ua.contains("Android") && !ua.contains("Mobile"));
    let device = match r.category {
        _ if is_bot => "bot",
        "pc" => "desktop",
        "smartphone" if tablet => "tablet",
        "smartphone" | "mobilephone" => "mobile",
        "appliance" => "appliance",
        _ => "unknown",
    };
    let named = match named {
        None if r.name.is_empty() || r.name == UNKNOWN => fallback(ua),
        named => named,
    };
    let (browser, browser_version) = match named.filter(|_| !is_bot) {
        Some((family, version)) => (family.to_owned(), or_unknown(&version)),
        None => (or_unknown(r.name), or_unknown(r.version)),
    };
    UserAgent {
        browser,
        browser_version,
        os: or_unknown(r.os),
        os_version: or_unknown(&r.os_version),
        device,
        is_bot,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_agents() {
        let chrome = parse_user_agent(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        );
        assert_eq!(
            (chrome.browser.as_str(), chrome.os.as_str(), chrome.device),
            ("Chrome", "Windows 10", "desktop")
        );
        assert_eq!(chrome.browser_version, "120.0.0.0");
        let iphone = parse_user_agent(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        );
        assert_eq!(
            (iphone.browser.as_str(), iphone.os.as_str(), iphone.device),
            ("Safari", "iPhone", "mobile")
        );
        let ipad = parse_user_agent(
            "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
        );
        assert_eq!(ipad.device, "tablet");
        let bot = parse_user_agent(
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        );
        assert!(bot.is_bot);
        assert_eq!(bot.device, "bot");
        for automated in [
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
            "curl/8.5.0",
            "python-requests/2.31.0",
            "Go-http-client/1.1",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Chrome-Lighthouse",
            "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
            "okhttp/4.12.0",
            "PostmanRuntime/7.36.0",
        ] {
            let parsed = parse_user_agent(automated);
            assert!(parsed.is_bot, "{automated}");
            assert_eq!(parsed.device, "bot", "{automated}");
        }
        assert!(!parse_user_agent("Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36").is_bot);
        let none = parse_user_agent("");
        assert_eq!((none.browser.as_str(), none.device), ("UNKNOWN", "unknown"));
    }

    /// Every user agent of `data/user_agents.tsv` (real ones; the file names its source) gets its family.
    #[test]
    fn real_user_agents_get_their_family() {
        let set = include_str!("../data/user_agents.tsv");
        let (mut n, mut wrong) = (0, Vec::new());
        let mut families = std::collections::BTreeSet::new();
        for line in set.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let (family, ua) = line.split_once('\t').expect("<family>\\t<user agent>");
            n += 1;
            families.insert(family);
            let got = parse_user_agent(ua);
            if got.browser != family || got.is_bot {
                wrong.push(format!(
                    "{family:?} expected, got {:?} (bot {}): {ua}",
                    got.browser, got.is_bot
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of {n} wrong:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
        assert!(n >= 150, "{n}");
        for f in [
            "UC Browser",
            "Facebook in-app",
            "Instagram in-app",
            "iOS WebView",
            "Brave",
            "Samsung Internet",
            "Yandex Browser",
            "Amazon Silk",
            "Opera Mini",
            "Opera Touch",
            "DuckDuckGo",
            "Edge",
            "Firefox",
            "Chrome",
        ] {
            assert!(families.contains(f), "no {f} in the set");
        }
        // Versions come from the browser's own token.
        let edge = parse_user_agent(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 12_3_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1.1 EdgiOS/44.5.0.10 Mobile/15E148 Safari/604.1",
        );
        assert_eq!(
            (
                edge.browser.as_str(),
                edge.browser_version.as_str(),
                edge.os.as_str()
            ),
            ("Edge", "44.5.0.10", "iPhone")
        );
    }
}
