//! User agent → browser, OS, device category and crawler flag, with woothee.

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

/// Parses a user-agent string. Never fails: what woothee does not recognise is `UNKNOWN`.
pub fn parse_user_agent(ua: &str) -> UserAgent {
    let Some(r) = PARSER.parse(ua) else {
        return UserAgent {
            browser: UNKNOWN.into(),
            browser_version: UNKNOWN.into(),
            os: UNKNOWN.into(),
            os_version: UNKNOWN.into(),
            device: "unknown",
            is_bot: false,
        };
    };
    let is_bot = r.category == "crawler";
    // woothee files tablets under "smartphone"; an iPad, or Android without "Mobile", is a tablet.
    let tablet = ua.contains("iPad") || (ua.contains("Android") && !ua.contains("Mobile"));
    let device = match r.category {
        "pc" => "desktop",
        "smartphone" if tablet => "tablet",
        "smartphone" | "mobilephone" => "mobile",
        "appliance" => "appliance",
        "crawler" => "bot",
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
        let none = parse_user_agent("");
        assert_eq!((none.browser.as_str(), none.device), ("UNKNOWN", "unknown"));
    }
}
