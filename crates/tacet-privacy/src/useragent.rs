//! User agent → browser, OS, device category and bot flag, with woothee plus lists of automation.
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
    AUTOMATION.iter().any(|m| lower.contains(m))
        // Microsoft's "Cubot" phones and the like contain "bot" inside a word; a real marker stands alone.
        && !(lower.contains("cubot") && !lower.contains("bot/") && !lower.contains("bot;"))
}

/// Parses a user-agent string. Never fails: what woothee does not recognise is `UNKNOWN`.
pub fn parse_user_agent(ua: &str) -> UserAgent {
    let automated = !ua.is_empty() && is_automation(ua);
    let Some(r) = PARSER.parse(ua) else {
        return UserAgent {
            browser: UNKNOWN.into(),
            browser_version: UNKNOWN.into(),
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
    let or_unknown = |s: &str| {
        if s.is_empty() {
            UNKNOWN.to_owned()
        } else {
            s.to_owned()
        }
    };
    UserAgent {
        browser: or_unknown(r.name),
        browser_version: or_unknown(r.version),
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
}
