//! Known values: the raw identifiers the privacy step pseudonymises or drops (the event's user id, the
//! client's IP address, properties the policy names as identifiers), replaced wherever they also appear
//! in the event's free text. An app that writes `cart failed for user canary-user-7f3a9` into a crash
//! message would otherwise store the very id the `user_id` field was pseudonymised to hide.
//!
//! A value matches without regard to ASCII case, as a whole token: the characters on either side are not
//! letters or digits, so a short id does not eat into longer words and numbers. Values shorter than
//! [`MIN_LEN`], without a letter or digit, or with a bracket are not searched for (they would match
//! everywhere, or across the placeholders).

/// The shortest value searched for.
pub const MIN_LEN: usize = 3;

/// A raw value and the placeholder it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    value: String,
    placeholder: &'static str,
    /// The value's bytes, ASCII case folded, as a [`byte_mask`]: it cannot occur in a text whose mask
    /// lacks one of them.
    mask: u64,
}

impl Known {
    /// The event's own user id: `[user]`.
    pub fn user(value: &str) -> Option<Known> {
        Self::new(value, "[user]")
    }

    /// The client's IP address: `[ip]`.
    pub fn ip(value: &str) -> Option<Known> {
        Self::new(value, "[ip]")
    }

    /// A property the policy names as an identifier: `[identifier]`.
    pub fn identifier(value: &str) -> Option<Known> {
        Self::new(value, "[identifier]")
    }

    /// Whether this is the client's IP address (the same for every event of a request).
    pub fn is_ip(&self) -> bool {
        self.placeholder == "[ip]"
    }

    /// Whether this value may occur, in any ASCII case, in a text of this [`byte_mask`] (`false` is
    /// certain: one of its bytes is not there).
    pub(super) fn may_occur_in(&self, text_mask: u64) -> bool {
        self.mask & !text_mask == 0
    }

    fn new(value: &str, placeholder: &'static str) -> Option<Known> {
        let value = value.trim();
        // Brackets are the placeholders' own: a value made of them could match across two placeholders.
        let searchable = value.len() >= MIN_LEN
            && value.bytes().any(|b| b.is_ascii_alphanumeric())
            && !value.contains(['[', ']']);
        searchable.then(|| Known {
            value: value.to_owned(),
            placeholder,
            mask: byte_mask(value),
        })
    }
}

/// Which bytes `s` holds, ASCII case folded, each as one of 64 bits (by its low six bits): a value whose
/// mask has a bit the text's lacks does not occur in it.
pub(super) fn byte_mask(s: &str) -> u64 {
    s.bytes()
        .fold(0, |m, b| m | 1 << (b.to_ascii_lowercase() & 63))
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// `s` with every whole-token occurrence of each known value replaced, and how many; `None` when there was
/// none (the usual case, without a copy).
pub(super) fn replace_known(s: &str, known: &[Known]) -> Option<(String, u64)> {
    let mut current: Option<String> = None;
    let mut n = 0;
    for k in known {
        let text = current.as_deref().unwrap_or(s);
        if let Some((replaced, found)) = replace_one(text, k) {
            current = Some(replaced);
            n += found;
        }
    }
    current.map(|c| (c, n))
}

fn replace_one(s: &str, k: &Known) -> Option<(String, u64)> {
    let (hay, needle) = (s.as_bytes(), k.value.as_bytes());
    if hay.len() < needle.len() {
        return None;
    }
    let (lower, upper) = (
        needle[0].to_ascii_lowercase(),
        needle[0].to_ascii_uppercase(),
    );
    // Candidates are the places of the first byte in either case, found with SIMD; the last place a
    // match can start bounds the search.
    let starts = &hay[..=hay.len() - needle.len()];
    let mut out: Option<String> = None;
    let (mut last, mut i, mut n) = (0, 0, 0);
    while i < starts.len() {
        let Some(found) = memchr::memchr2(lower, upper, &starts[i..]) else {
            break;
        };
        let at = i + found;
        i = at + 1;
        if !hay[at..at + needle.len()].eq_ignore_ascii_case(needle) {
            continue;
        }
        let end = at + needle.len();
        // A whole token, and on character boundaries (the needle is valid UTF-8, so its ends are).
        let starts_token = at == 0 || !is_token_byte(hay[at - 1]) || !is_token_byte(needle[0]);
        let ends_token = end == hay.len()
            || !is_token_byte(hay[end])
            || !is_token_byte(needle[needle.len() - 1]);
        // A placeholder an earlier pass left (a user id `user` inside `[user]`) stays as it is.
        let placeholder = at > 0 && hay[at - 1] == b'[' && hay.get(end) == Some(&b']');
        if placeholder
            || !(starts_token && ends_token && s.is_char_boundary(at) && s.is_char_boundary(end))
        {
            continue;
        }
        let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
        o.push_str(&s[last..at]);
        o.push_str(k.placeholder);
        last = end;
        i = end;
        n += 1;
    }
    out.map(|mut o| {
        o.push_str(&s[last..]);
        (o, n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_are_replaced_as_whole_tokens() {
        let known = [
            Known::user("canary-user-7f3a9").unwrap(),
            Known::ip("203.0.113.5").unwrap(),
            Known::identifier("C-1042").unwrap(),
        ];
        let (out, n) = replace_known(
            "cart failed for user Canary-User-7F3A9 (203.0.113.5), customer c-1042; /u/canary-user-7f3a9/x",
            &known,
        )
        .unwrap();
        assert_eq!(
            out,
            "cart failed for user [user] ([ip]), customer [identifier]; /u/[user]/x"
        );
        assert_eq!(n, 4);
        // Inside a longer token it stays: a short id must not eat into words and numbers.
        let short = [Known::user("42a").unwrap()];
        assert_eq!(replace_known("line 142a0 and 42ab", &short), None);
        assert_eq!(replace_known("id=42a;", &short).unwrap().0, "id=[user];");
        assert_eq!(Known::user("ab"), None);
        assert_eq!(Known::user("]["), None);
        assert_eq!(Known::user("a[b]c"), None);
        // A value that is also a placeholder's word is replaced once, not again inside `[user]`.
        let word = [Known::user("user").unwrap()];
        let once = replace_known("user logged in as user", &word).unwrap().0;
        assert_eq!(once, "[user] logged in as [user]");
        assert_eq!(replace_known(&once, &word), None);
        assert_eq!(replace_known("nothing here", &known), None);
        // Multi-byte text around the value is kept whole.
        assert_eq!(
            replace_known("für canary-user-7f3a9 ✓", &known).unwrap().0,
            "für [user] ✓"
        );
    }
}
