//! Crash stacks from minified bundles made readable: each JavaScript frame whose file has a source map
//! for the event's release is rewritten to the original file, line, column and function, before the
//! privacy step. So the fingerprint groups on original frames (two bugs in one bundle are two groups, a
//! redeploy with a new bundle hash is the same group) and the scrubber sees the symbolicated text.
//!
//! Frames are read in the three browser formats: Chrome and Edge (`at fn (url:line:col)`, `at url:line:col`),
//! Firefox and Safari (`fn@url:line:col`). A mapped frame is written one way whatever the browser,
//! `at fn (source:line:col)`, so the same error from Chrome and Firefox is one group. Frames without a map
//! are left exactly as sent (their groups do not move when maps arrive for other files).
//!
//! The function name is the original one where the map can say: the nearest function definition at or
//! above the original line in the map's embedded sources (`function name`, `name(...) {`, `name = (...) =>`,
//! `name: function`); else the minified name as sent. Pure: the maps come in, nothing is read here.

use std::sync::LazyLock;

use regex::Regex;
use sourcemap::DecodedMap;

static CHROME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^\s*at\s+(?:(?P<fn>.+?)\s+\()?(?P<url>[^\s()]+?):(?P<line>\d+):(?P<col>\d+)\)?\s*$",
    )
    .expect("valid")
});
static GECKO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(?P<fn>[^@\s]*)@(?P<url>\S+?):(?P<line>\d+):(?P<col>\d+)\s*$").expect("valid")
});
/// Function definitions in original source, nearest above a position wins.
static DEFINITION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        function\*?\s+(?P<a>[A-Za-z_$][\w$]*)\s*\(
        | (?P<b>[A-Za-z_$][\w$]*)\s*[:=]\s*(?:async\s+)?(?:function\b|\([^()]*\)\s*=>|[A-Za-z_$][\w$]*\s*=>)
        | ^\s*(?:static\s+)?(?:async\s+)?(?P<c>[A-Za-z_$][\w$]*)\s*\([^()]*\)\s*\{",
    )
    .expect("valid")
});
const NOT_NAMES: &[&str] = &[
    "if", "for", "while", "switch", "catch", "return", "function",
];

/// One stack frame as a browser wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub function: Option<&'a str>,
    pub url: &'a str,
    /// 1-based, as browsers print them.
    pub line: u32,
    pub column: u32,
}

/// Reads a frame in Chrome's or Firefox's and Safari's format; `None` for anything else.
pub fn parse_frame(text: &str) -> Option<Frame<'_>> {
    let caps = CHROME.captures(text).or_else(|| GECKO.captures(text))?;
    let function = caps
        .name("fn")
        .map(|m| m.as_str().trim())
        .filter(|f| !f.is_empty());
    Some(Frame {
        function,
        url: caps.name("url")?.as_str(),
        line: caps.name("line")?.as_str().parse().ok()?,
        column: caps.name("col")?.as_str().parse().ok()?,
    })
}

/// A frame's file as a map is uploaded for: the URL without query or fragment.
pub fn file_of(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// The original function around a 0-based original position, from the map's embedded source.
fn original_function(map: &DecodedMap, token: &sourcemap::Token<'_>) -> Option<String> {
    let view = match map {
        DecodedMap::Regular(sm) => sm.get_source_view(token.get_src_id())?,
        _ => token.get_source_view()?,
    };
    let line = token.get_src_line();
    // At most 200 lines up: the nearest definition, not one from another module.
    for idx in (line.saturating_sub(200)..=line).rev() {
        let text = view.get_line(idx)?;
        let text = if idx == line {
            let col = (token.get_src_col() as usize).min(text.len());
            text.get(..col).unwrap_or(text)
        } else {
            text
        };
        if let Some(name) = DEFINITION
            .captures_iter(text)
            .filter_map(|c| c.name("a").or(c.name("b")).or(c.name("c")))
            .map(|m| m.as_str())
            .filter(|n| !NOT_NAMES.contains(n))
            .last()
        {
            return Some(name.to_owned());
        }
    }
    None
}

/// `frame` in original terms through `map`, or `None` when the map has no mapping there.
pub fn symbolicate(frame: &Frame<'_>, map: &DecodedMap) -> Option<String> {
    let token = map.lookup_token(frame.line.checked_sub(1)?, frame.column.saturating_sub(1))?;
    let source = token.get_source()?;
    let function = original_function(map, &token)
        .or_else(|| frame.function.map(str::to_owned))
        .filter(|f| !f.is_empty());
    let position = format!(
        "{source}:{}:{}",
        token.get_src_line() + 1,
        token.get_src_col() + 1
    );
    Some(match function {
        Some(f) => format!("at {f} ({position})"),
        None => format!("at {position}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A map for a one-line bundle `function n(){throw new Error("x")}function r(){n()}` made from
    /// `src/cart.js`, whose functions are `loadCart` (line 2) and `render` (line 6).
    pub(crate) fn cart_map() -> Vec<u8> {
        let source = "// the cart\nexport function loadCart(id) {\n  throw new Error(\"cart \" + id + \" is undefined\");\n}\n\nexport const render = () => {\n  loadCart(7);\n};\n";
        let mut b = sourcemap::SourceMapBuilder::new(Some("app.min.js"));
        let src = b.add_source("src/cart.js");
        b.set_source_contents(src, Some(source));
        // minified col 13 (`throw`) -> cart.js line 3 col 3; col 45 (`n()` in r) -> line 7 col 3.
        b.add(0, 13, 2, 2, Some("src/cart.js"), None, false);
        b.add(0, 45, 6, 2, Some("src/cart.js"), None, false);
        let mut out = Vec::new();
        b.into_sourcemap().to_writer(&mut out).unwrap();
        out
    }

    fn map() -> DecodedMap {
        sourcemap::decode_slice(&cart_map()).unwrap()
    }

    #[test]
    fn chrome_firefox_and_safari_frames_are_read() {
        assert_eq!(
            parse_frame("    at n (https://app.example/static/app.3f9c.js?v=2:1:14)"),
            Some(Frame {
                function: Some("n"),
                url: "https://app.example/static/app.3f9c.js?v=2",
                line: 1,
                column: 14
            })
        );
        assert_eq!(
            parse_frame("at https://app.example/a.js:3:9").map(|f| (f.function, f.line)),
            Some((None, 3))
        );
        assert_eq!(
            parse_frame("n@https://app.example/a.js:1:14").map(|f| (f.function, f.column)),
            Some((Some("n"), 14))
        );
        assert_eq!(
            parse_frame("@https://app.example/a.js:1:14").map(|f| f.function),
            Some(None)
        );
        assert_eq!(parse_frame("TypeError: x is undefined"), None);
        assert_eq!(file_of("https://a/b.js?v=1#x"), "https://a/b.js");
    }

    #[test]
    fn frames_become_original_file_line_and_function_whatever_the_browser() {
        let m = map();
        let chrome = parse_frame("    at n (https://app.example/app.min.js:1:14)").unwrap();
        let firefox = parse_frame("n@https://app.example/app.min.js:1:14").unwrap();
        let expected = "at loadCart (src/cart.js:3:3)";
        assert_eq!(symbolicate(&chrome, &m).as_deref(), Some(expected));
        assert_eq!(symbolicate(&firefox, &m).as_deref(), Some(expected));
        // An arrow function assigned to a name.
        let caller = parse_frame("r@https://app.example/app.min.js:1:46").unwrap();
        assert_eq!(
            symbolicate(&caller, &m).as_deref(),
            Some("at render (src/cart.js:7:3)")
        );
    }
}
