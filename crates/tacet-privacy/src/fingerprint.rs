//! Crash fingerprints: a stable grouping key, so that one bug is one row in a crash-triage report however
//! many line numbers, deploy hashes, addresses and ids its occurrences differ in.
//!
//! The key is blake3 of the exception type plus the top [`FRAMES`] in-app frames, normalised: no scheme or
//! host, no line or column numbers, no addresses, no content hashes in file names, no numbers, hex or uuids.
//! Library frames (`node_modules`, the standard library, extensions...) are skipped when any in-app frame
//! remains. Without frames, the message is used with numbers, hex and uuids masked.

use std::sync::LazyLock;

use regex::Regex;

/// How many in-app frames make up a fingerprint.
pub const FRAMES: usize = 5;

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid built-in regex")
}

static ORIGIN: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\b[a-z][a-z0-9+.\-]*://[^/\s)]*"));
static UUID: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"));
static HEX: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\b0x[0-9a-f]+\b|\b[0-9a-f]*\d[0-9a-f]*\b"));
/// `:12:34`, `:12`, ` line 12`, `(12:34)`: positions in a file.
static POSITION: LazyLock<Regex> = LazyLock::new(|| re(r"(?i):\d+(?::\d+)?\b|\bline \d+\b"));
/// Content hashes in bundle names: `app.3f9a2c1d.js`, `chunk-4KX2P9QZ.js`.
static BUNDLE_HASH: LazyLock<Regex> =
    LazyLock::new(|| re(r"[.\-_]([0-9A-Za-z]{6,})(\.(?:m?js|css|map|wasm)\b)"));
static QUERY: LazyLock<Regex> = LazyLock::new(|| re(r"\?[^\s):]*"));
static NUMBER: LazyLock<Regex> = LazyLock::new(|| re(r"\d+"));
static SPACES: LazyLock<Regex> = LazyLock::new(|| re(r"\s+"));

/// Markers of frames that are not the application's own code.
const LIBRARY_MARKERS: &[&str] = &[
    "node_modules",
    "/vendor/",
    "webpack/bootstrap",
    "webpack/runtime",
    "<anonymous>",
    "[native code]",
    "(native)",
    "chrome-extension://",
    "moz-extension://",
    "safari-extension://",
    "site-packages",
    "dist-packages",
    "/rustc/",
    "/.cargo/registry/",
    "java.base/",
    "at java.",
    "at sun.",
    "at kotlin.",
    "std::",
    "core::",
    "tokio::",
    "libsystem_",
    "libc.so",
];

/// Whether a stack frame belongs to the application rather than a library or the runtime.
pub fn is_in_app(frame: &str) -> bool {
    !LIBRARY_MARKERS.iter().any(|m| frame.contains(m))
}

/// One frame without what varies between occurrences of the same bug.
pub fn normalise_frame(frame: &str) -> String {
    let f = frame.trim();
    let f = f.strip_prefix("at ").unwrap_or(f);
    let f = ORIGIN.replace_all(f, "");
    let f = QUERY.replace_all(&f, "");
    let f = POSITION.replace_all(&f, "");
    let f = BUNDLE_HASH.replace_all(&f, |c: &regex::Captures| {
        let hash = &c[1];
        let hex = hash.bytes().all(|b| b.is_ascii_hexdigit()) && hash.len() >= 6;
        let digits = hash.bytes().any(|b| b.is_ascii_digit());
        if digits && (hex || hash.len() == 8) {
            c[2].to_owned()
        } else {
            c[0].to_owned()
        }
    });
    let f = UUID.replace_all(&f, "<id>");
    let f = HEX.replace_all(&f, "<n>");
    SPACES.replace_all(f.trim(), " ").into_owned()
}

/// A message with numbers, hex and uuids masked, so `id 41 not found` and `id 42 not found` group.
pub fn normalise_message(message: &str) -> String {
    let m = UUID.replace_all(message, "<id>");
    let m = HEX.replace_all(&m, "<n>");
    let m = NUMBER.replace_all(&m, "<n>");
    SPACES.replace_all(m.trim(), " ").into_owned()
}

/// The grouping key of a crash: 16 hex characters.
pub fn fingerprint(error_type: Option<&str>, message: Option<&str>, stack: &[String]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"tacet-fingerprint-v1\0");
    h.update(error_type.unwrap_or_default().trim().as_bytes());
    h.update(b"\0");
    let in_app: Vec<&String> = stack.iter().filter(|f| is_in_app(f)).collect();
    let frames: Vec<&String> = if in_app.is_empty() {
        stack.iter().collect()
    } else {
        in_app
    };
    if frames.is_empty() {
        h.update(b"message\0");
        h.update(normalise_message(message.unwrap_or_default()).as_bytes());
    } else {
        for f in frames.into_iter().take(FRAMES) {
            h.update(normalise_frame(f).as_bytes());
            h.update(b"\n");
        }
    }
    hex::encode(&h.finalize().as_bytes()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn line_numbers_hashes_and_hosts_do_not_split_a_group() {
        let a = frames(&[
            "at renderCart (https://cdn.shop.example/assets/app.3f9a2c1d.js:10:15)",
            "at node_modules/react-dom/cjs/react-dom.development.js:3990:14",
            "at onClick (https://cdn.shop.example/assets/app.3f9a2c1d.js:88:3)",
        ]);
        let b = frames(&[
            "at renderCart (https://static.shop.example/assets/app.77e01b9a.js:12:9?v=2)",
            "at onClick (https://static.shop.example/assets/app.77e01b9a.js:90:1)",
        ]);
        let ta = fingerprint(Some("TypeError"), Some("x is undefined"), &a);
        assert_eq!(ta.len(), 16);
        assert_eq!(ta, fingerprint(Some("TypeError"), Some("other"), &b));
        assert_ne!(ta, fingerprint(Some("RangeError"), None, &b));
        assert_eq!(
            normalise_frame("at renderCart (https://cdn.example/assets/app.3f9a2c1d.js:10:15)"),
            "renderCart (/assets/app.js)"
        );
        assert_eq!(
            normalise_frame("  0x7ff6a1b2 in handle_request src/server.rs line 42"),
            "<n> in handle_request src/server.rs"
        );
    }

    #[test]
    fn without_frames_the_masked_message_groups() {
        let f = |m: &str| fingerprint(Some("NotFound"), Some(m), &[]);
        assert_eq!(
            f("order 41 not found (req 0xdeadbeef)"),
            f("order 42 not found (req 0xfeedface)")
        );
        assert_eq!(
            f("session 6f1c2e0a-8b9d-4c3e-a1f2-0123456789ab expired"),
            f("session 00000000-1111-2222-3333-444444444444 expired")
        );
        assert_ne!(f("order 41 not found"), f("user 41 not found"));
    }

    #[test]
    fn library_frames_are_skipped_unless_nothing_else_remains() {
        let app = frames(&[
            "at main (app.js:1:1)",
            "at x (node_modules/lib/index.js:5:5)",
        ]);
        let app2 = frames(&[
            "at y (node_modules/lib/index.js:9:9)",
            "at main (app.js:3:3)",
        ]);
        assert_eq!(
            fingerprint(None, None, &app),
            fingerprint(None, None, &app2)
        );
        let lib_only = frames(&["at x (node_modules/lib/index.js:5:5)"]);
        let lib_only2 = frames(&["at z (node_modules/lib/other.js:5:5)"]);
        assert_ne!(
            fingerprint(None, None, &lib_only),
            fingerprint(None, None, &lib_only2)
        );
    }
}
