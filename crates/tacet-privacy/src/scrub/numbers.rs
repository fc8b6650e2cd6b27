//! Numbers that identify people or their money, each checked beyond its shape: payment cards (issuer range
//! and Luhn), IBANs (country length and mod 97), US social security numbers (area, group and serial ranges)
//! and, for tenants that opt in, telephone numbers (E.164 and national layouts).

use std::sync::LazyLock;

use regex::Regex;

/// A card number: 13 to 19 digits, a known issuer prefix, and a valid Luhn check digit.
pub(super) fn is_card(candidate: &str) -> bool {
    let digits: Vec<u8> = candidate
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let prefix = |n: usize| {
        digits[..n]
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(*d))
    };
    let known_issuer = match digits[0] {
        4 => true,                                                               // Visa
        5 => (51..=55).contains(&prefix(2)) || (50..=59).contains(&prefix(2)), // Mastercard, Maestro
        2 => (2221..=2720).contains(&prefix(4)), // Mastercard 2-series
        3 => (34..=39).contains(&prefix(2)) || (300..=305).contains(&prefix(3)), // Amex, JCB, Diners
        6 => true, // Discover, UnionPay, Maestro
        _ => false,
    };
    known_issuer && luhn(&digits)
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// An IBAN: a known country, that country's length, and a valid mod-97 check.
pub(super) fn is_iban(candidate: &str) -> bool {
    let compact: Vec<u8> = candidate.bytes().filter(|b| *b != b' ').collect();
    let Some(&(_, len)) = IBAN_LENGTHS
        .iter()
        .find(|(cc, _)| cc.as_bytes() == &compact[..2])
    else {
        return false;
    };
    if compact.len() != len {
        return false;
    }
    let mut rem: u32 = 0;
    for &b in compact[4..].iter().chain(&compact[..4]) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// `AAA-GG-SSSS` (or with spaces): the separators are checked to be the same in the closure.
pub(super) static SSN: LazyLock<Regex> =
    LazyLock::new(|| super::re(r"\b(\d{3})([\- ])(\d{2})([\- ])(\d{4})\b"));

/// A US social security number as issued: area 001-899 but not 666, group 01-99, serial 0001-9999, one
/// separator throughout. Nine digits without separators are left alone (too many ids look like that).
pub(super) fn is_ssn(c: &regex::Captures) -> bool {
    let num = |i: usize| c[i].parse::<u32>().unwrap_or(0);
    let (area, group, serial) = (num(1), num(3), num(5));
    c[2] == c[4] && area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// Candidates for telephone numbers: an optional `+` or `(`, then digits with spaces, dots, dashes and
/// parentheses between them. [`phone_len`] decides.
static PHONE: LazyLock<Regex> = LazyLock::new(|| super::re(r"[+(]?\d[\d ().\-]{5,24}\d"));

/// How many leading bytes of a candidate form a telephone number, if any: the longest prefix ending at a
/// digit group's end that passes [`is_phone`] (a candidate may run on into the next number).
fn phone_len(candidate: &str) -> Option<usize> {
    let bytes = candidate.as_bytes();
    (1..=bytes.len())
        .rev()
        .filter(|&end| {
            bytes[end - 1].is_ascii_digit() && bytes.get(end).is_none_or(|b| !b.is_ascii_digit())
        })
        .find(|&end| is_phone(&candidate[..end]))
}

/// A telephone number in one of the layouts people write:
/// - international: `+` and 8 to 15 digits (E.164), grouped or not: `+44 20 7946 0958`, `+14155550123`;
/// - North American: `(415) 555-0123`, `415-555-0123`, `415.555.0123`, `1 415 555 0123` (area and
///   exchange start with 2-9);
/// - national with a trunk 0: `020 7946 0958`, `07700 900123`, `030 1234567` (9 to 12 digits, 2 to 5
///   groups, separated).
///
/// Dates (`2026-12-03`), versions (`10.0.19041.1234`), times and bare digit runs (ids) match none.
fn is_phone(s: &str) -> bool {
    let international = s.starts_with('+');
    let body = s.trim_start_matches('+');
    let groups: Vec<&str> = body
        .split([' ', '.', '-', '(', ')'])
        .filter(|g| !g.is_empty())
        .collect();
    if groups
        .iter()
        .any(|g| !g.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    // No doubled separators except around parentheses ("(415) 555"), and parentheses balanced.
    if body.contains("..") || body.contains("--") || body.contains("  ") {
        return false;
    }
    let (open, close) = (body.matches('(').count(), body.matches(')').count());
    if open != close || open > 1 {
        return false;
    }
    let digits: usize = groups.iter().map(|g| g.len()).sum();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if international {
        return (8..=15).contains(&digits) && !body.starts_with('0') && lens.len() <= 6;
    }
    let nanp = |g: &[&str]| {
        g.len() == 3
            && g[0].len() == 3
            && g[1].len() == 3
            && g[2].len() == 4
            && !g[0].starts_with(['0', '1'])
            && !g[1].starts_with(['0', '1'])
    };
    // Dots alone join versions and IP-like numbers: a national number with dots must be North American.
    let dotted = body.contains('.');
    if nanp(&groups) || (groups.len() == 4 && groups[0] == "1" && nanp(&groups[1..])) {
        return true;
    }
    !dotted
        && groups.len() >= 2
        && groups.len() <= 5
        && groups[0].starts_with('0')
        && groups[0].len() >= 2
        && (9..=12).contains(&digits)
        && lens.iter().all(|l| (2..=8).contains(l))
}

/// Replaces telephone numbers with `[phone]`; returns the text and how many.
pub(super) fn replace_phones(s: &str) -> Option<(String, u64)> {
    let bytes = s.as_bytes();
    let mut out = String::new();
    let (mut last, mut n) = (0, 0);
    for m in PHONE.find_iter(s) {
        // Not the tail of a word, a version, a path segment or a longer number.
        let before = m.start().checked_sub(1).map(|i| bytes[i]);
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b"._/+-#".contains(&b)) {
            continue;
        }
        let Some(len) = phone_len(m.as_str()) else {
            continue;
        };
        out.push_str(&s[last..m.start()]);
        out.push_str("[phone]");
        last = m.start() + len;
        n += 1;
    }
    (n > 0).then(|| {
        out.push_str(&s[last..]);
        (out, n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_in_their_usual_layouts_and_nothing_else() {
        for (text, expected) in [
            ("call +1 415 555 0123 now", "call [phone] now"),
            ("+44 20 7946 0958", "[phone]"),
            ("tel:+4915112345678", "tel:[phone]"),
            ("(415) 555-0123", "[phone]"),
            ("415-555-0123 or 415.555.0123", "[phone] or [phone]"),
            ("ring 020 7946 0958, ext 12", "ring [phone], ext 12"),
            ("mobile 07700 900123", "mobile [phone]"),
            (
                "+44 20 7946 0958 2026 was the year",
                "[phone] 2026 was the year",
            ),
        ] {
            assert_eq!(
                replace_phones(text).map(|(t, _)| t).as_deref(),
                Some(expected),
                "{text}"
            );
        }
        for text in [
            "released 2026-12-03 at 10:30:00",
            "Windows NT 10.0.19041.1234",
            "order 1234567890123",
            "v1.2.3-beta.4 build 2026.12.03",
            "at main (app.3f9c.js:1:48213)",
            "SELECT 1 LIMIT 100 OFFSET 200",
            "ids 123-456-7890",
            "matrix 1 2 3 4 5 6 7 8",
            "192.168.0.1 and 10.0.0.12",
            "page 3 of 12 (25 per page)",
            "uuid 550e8400-e29b-41d4-a716-446655440000",
            "took 1.234 s, 56.78 ms",
        ] {
            assert_eq!(replace_phones(text), None, "{text}");
        }
    }

    #[test]
    fn social_security_numbers_in_issued_ranges() {
        let found = |t: &str| SSN.captures(t).is_some_and(|c| is_ssn(&c));
        assert!(found("ssn 078-05-1120"));
        assert!(found("ssn 219 09 9999"));
        for t in [
            "000-12-3456",
            "666-12-3456",
            "912-34-5678",
            "123-00-4567",
            "123-45-0000",
            "123-45 6789",
        ] {
            assert!(!found(t), "{t}");
        }
    }
}
