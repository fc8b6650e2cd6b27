//! What a text is made of, from one pass over its bytes, and the cheap preconditions built on it: a rule
//! runs only when its precondition holds, so ordinary text costs a few scans.

/// What `BEARER`'s scheme names contain, in the cases it accepts: a literal prefilter.
const AUTH_SCHEMES: [&str; 6] = ["earer", "EARER", "asic", "ASIC", "igest", "egotiate"];

/// What a text is made of, from one pass over its bytes: enough to skip most rules without a search.
#[derive(Debug, Default)]
pub(super) struct Shape {
    pub(super) at: bool,
    pub(super) colons: usize,
    pub(super) double_colon: bool,
    pub(super) equals: bool,
    pub(super) dash: bool,
    pub(super) slash: bool,
    pub(super) backslash: bool,
    pub(super) upper_j: bool,
    pub(super) upper_a: bool,
    pub(super) underscore: bool,
    pub(super) space: bool,
    pub(super) digits: usize,
    /// `digit.digit` places: an IPv4 address has three.
    pub(super) digit_dot_digit: usize,
    /// Two capitals then two digits: how every IBAN starts.
    pub(super) iban_start: bool,
}

/// Byte classes for [`Shape::of`]: one table lookup a byte instead of a chain of comparisons.
mod class {
    pub const AT: u16 = 1;
    pub const COLON: u16 = 1 << 1;
    pub const EQUALS: u16 = 1 << 2;
    pub const DASH: u16 = 1 << 3;
    pub const SLASH: u16 = 1 << 4;
    pub const BACKSLASH: u16 = 1 << 5;
    pub const UPPER_J: u16 = 1 << 6;
    pub const UPPER_A: u16 = 1 << 7;
    pub const UNDERSCORE: u16 = 1 << 8;
    pub const SPACE: u16 = 1 << 9;
    pub const DIGIT: u16 = 1 << 10;

    pub static OF: [u16; 256] = {
        let mut t = [0u16; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            t[b] = match c {
                b'@' => AT,
                b':' => COLON,
                b'=' => EQUALS,
                b'-' => DASH,
                b'/' => SLASH,
                b'\\' => BACKSLASH,
                b'_' => UNDERSCORE,
                b' ' | b'\t' | b'\n' | b'\r' => SPACE,
                b'0'..=b'9' => DIGIT,
                b'J' => UPPER_J,
                b'A' => UPPER_A,
                _ => 0,
            };
            b += 1;
        }
        t
    };
}

impl Shape {
    pub(super) fn of(s: &[u8]) -> Shape {
        use class::*;
        let mut flags = 0u16;
        let mut shape = Shape::default();
        for (i, &b) in s.iter().enumerate() {
            let c = OF[usize::from(b)];
            flags |= c;
            // Only digits and colons look at their neighbours: letters, the bulk of text, take no branch.
            if c & (DIGIT | COLON) == 0 {
                continue;
            }
            let back = |n: usize| if i >= n { s[i - n] } else { 0 };
            if c & COLON != 0 {
                shape.colons += 1;
                shape.double_colon |= back(1) == b':';
            } else {
                shape.digits += 1;
                if back(1) == b'.' && back(2).is_ascii_digit() {
                    shape.digit_dot_digit += 1;
                }
                if back(1).is_ascii_digit()
                    && back(2).is_ascii_uppercase()
                    && back(3).is_ascii_uppercase()
                {
                    shape.iban_start = true;
                }
            }
        }
        let has = |f: u16| flags & f != 0;
        shape.at = has(AT);
        shape.equals = has(EQUALS);
        shape.dash = has(DASH);
        shape.slash = has(SLASH);
        shape.backslash = has(BACKSLASH);
        shape.upper_j = has(UPPER_J);
        shape.upper_a = has(UPPER_A);
        shape.underscore = has(UNDERSCORE);
        shape.space = has(SPACE);
        shape
    }
}

/// Whether `BEARER` can match: whitespace, room for a scheme and 8 characters, and a scheme's name.
pub(super) fn may_be_bearer(s: &str, shape: &Shape) -> bool {
    shape.space && s.len() >= 12 && AUTH_SCHEMES.iter().any(|w| s.contains(w))
}

/// Whether `API_TOKEN` can match: each format has a `_`, or `glpat-`/`xox` (with a `-`), or AKIA, ASIA,
/// AIza; the shortest (`xoxb-` and 10 more) has 15 bytes. (This was 16 until the property test below
/// found a 15-byte Slack token that was never looked for.)
pub(super) fn may_be_api_token(s: &str, shape: &Shape) -> bool {
    s.len() >= 15
        && (shape.underscore
            || (shape.dash && (s.contains("glpat-") || s.contains("xox")))
            || (shape.upper_a && ["AKIA", "ASIA", "AIza"].iter().any(|w| s.contains(w))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrub::{API_TOKEN, BEARER};

    /// The byte pass before the rules: what it was before the lookup table, byte by byte.
    fn shape_reference(s: &[u8]) -> Shape {
        let mut shape = Shape::default();
        let mut prev = [0u8; 3];
        for &b in s {
            match b {
                b'@' => shape.at = true,
                b':' => {
                    shape.colons += 1;
                    shape.double_colon |= prev[2] == b':';
                }
                b'=' => shape.equals = true,
                b'-' => shape.dash = true,
                b'/' => shape.slash = true,
                b'\\' => shape.backslash = true,
                b'J' => shape.upper_j = true,
                b'A' => shape.upper_a = true,
                b'_' => shape.underscore = true,
                b' ' | b'\t' | b'\n' | b'\r' => shape.space = true,
                b'0'..=b'9' => {
                    shape.digits += 1;
                    if prev[2] == b'.' && prev[1].is_ascii_digit() {
                        shape.digit_dot_digit += 1;
                    }
                    if prev[2].is_ascii_digit()
                        && prev[1].is_ascii_uppercase()
                        && prev[0].is_ascii_uppercase()
                    {
                        shape.iban_start = true;
                    }
                }
                _ => {}
            }
            prev = [prev[1], prev[2], b];
        }
        shape
    }

    proptest::proptest! {
        #[test]
        fn the_shape_table_agrees_with_the_byte_by_byte_pass(s in "[a-zA-Z0-9@:=/\\\\_. \t-]{0,40}") {
            proptest::prop_assert_eq!(
                format!("{:?}", Shape::of(s.as_bytes())),
                format!("{:?}", shape_reference(s.as_bytes()))
            );
        }

        /// The literal prefilters never skip text their regex would match.
        #[test]
        fn prefilters_pass_everything_their_regex_matches(
            s in "((Bearer|bearer|BEARER|Basic|BASIC|basic|Digest|digest|Negotiate|negotiate|AKIA|ASIA|AIza|gh[pousr]_|github_pat_|glpat-|xox[abposr]-|sk_live_|pk_test_|npm_|[A-Za-z0-9+/=._-]{1,12}|[ \t:])){0,8}"
        ) {
            let shape = Shape::of(s.as_bytes());
            proptest::prop_assert!(!BEARER.is_match(&s) || may_be_bearer(&s, &shape), "bearer: {s}");
            proptest::prop_assert!(!API_TOKEN.is_match(&s) || may_be_api_token(&s, &shape), "token: {s}");
        }
    }
}
