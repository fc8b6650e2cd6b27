//! Texts the rules left as they were, remembered for one request: a batch's events share most of their
//! property keys, many values, the host and the release, and each is put through the rules once.
//!
//! Direct-mapped: a text has one slot, by a hash of its length and its first and last bytes; a text
//! that maps to a taken slot replaces it. A slot's buffer is reused, so remembering costs no allocation
//! once the slots are warm. Only what the rules leave unchanged is remembered, so a hit is always
//! "unchanged", whatever the tally would have counted (nothing).

use super::known::byte_mask;

/// Slots: a power of two.
const SLOTS: usize = 256;

/// Longer texts are not remembered (a message, a stack frame, a long path are seldom repeated and would
/// cost their length to compare).
const MAX_LEN: usize = 256;

/// Texts one scrubber's rules leave unchanged (see the module's documentation). Bound to those rules:
/// one tenant's policy, in practice one request's privacy step. Only the scrubber fills it
/// ([`super::Scrubber::text_remembering`]); it never leaves this crate.
#[derive(Debug, Default)]
pub(crate) struct CleanTexts {
    /// `None` until the first text is remembered; then `SLOTS` slots.
    slots: Option<Box<[Option<Slot>]>>,
}

/// A remembered text and its [`byte_mask`].
#[derive(Debug, Default)]
struct Slot {
    text: String,
    mask: u64,
}

impl CleanTexts {
    /// Whether `s` was remembered (and is still in its slot).
    #[cfg(test)]
    fn contains(&self, s: &str) -> bool {
        self.mask_of(s).is_some()
    }

    /// `s`'s [`byte_mask`], if `s` was remembered: which known values can be in it at all.
    pub(super) fn mask_of(&self, s: &str) -> Option<u64> {
        self.slots
            .as_ref()
            .and_then(|slots| slots[slot(s)].as_ref())
            .and_then(|kept| (kept.text == s).then_some(kept.mask))
    }

    /// Remembers `s`, which the rules left unchanged, in its slot.
    pub(crate) fn insert(&mut self, s: &str) {
        if s.len() > MAX_LEN {
            return;
        }
        let slots = self
            .slots
            .get_or_insert_with(|| (0..SLOTS).map(|_| None).collect());
        let kept = slots[slot(s)].get_or_insert_with(Slot::default);
        kept.text.clear();
        kept.text.push_str(s);
        kept.mask = byte_mask(s);
    }
}

/// `s`'s slot: its length and up to eight bytes from each end, mixed (a multiply, the top bits). Loads of
/// a fixed size: a copy of a variable length would be a call to `memcpy` for every text.
fn slot(s: &str) -> usize {
    let b = s.as_bytes();
    let n = b.len();
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"));
    let (head, tail) = if n >= 8 {
        (word(0), word(n - 8))
    } else {
        let short = b
            .iter()
            .enumerate()
            .fold(0u64, |w, (i, &x)| w | u64::from(x) << (8 * i));
        (short, 0)
    };
    let h = (head ^ tail.rotate_left(29) ^ (n as u64).rotate_left(53))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> (64 - SLOTS.trailing_zeros())) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::CustomRule;
    use crate::scrub::{Known, Scrubber, Tally};
    use proptest::strategy::Strategy;

    proptest::proptest! {
        /// Remembering clean texts changes nothing: a run of texts (repeated, some holding the events'
        /// changing known values or personal data) scrubs to the same texts and counts with the memo as
        /// without it.
        #[test]
        fn remembered_texts_scrub_as_without_memory(
            texts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(vec![
                        "plan", "pro", "user-7", "USER-7 left", "mail a@b.example", "203.0.113.9",
                        "call 415 555 0123", "token=abcdef0123456789abcdef", "x", "", "-----BEGIN",
                    ]).prop_map(|t: &str| t.to_owned()),
                    "[a-z0-9@. :=_-]{0,12}",
                ],
                1..24,
            ),
            users in proptest::collection::vec(proptest::sample::select(vec!["user-7", "user-8", "pro"]), 24),
        ) {
            let custom = [CustomRule::new("plan", "pla?n").unwrap()];
            let mut memory = CleanTexts::default();
            let (mut with, mut without) = (Tally::default(), Tally::default());
            for (i, text) in texts.iter().enumerate() {
                // Each text is another event's, with its own user id among the known values.
                let known: Vec<Known> = Known::user(users[i]).into_iter().collect();
                let s = Scrubber::new(&custom).with_phone(true).with_known(&known);
                proptest::prop_assert_eq!(
                    s.text_remembering(text.clone(), &mut with, Some(&mut memory)),
                    s.text(text, &mut without),
                    "text {}: {:?}", i, text
                );
            }
            proptest::prop_assert_eq!(with, without);
        }
    }

    #[test]
    fn remembers_texts_until_their_slot_is_taken() {
        let mut clean = CleanTexts::default();
        assert!(!clean.contains("plan"));
        assert!(!clean.contains(""));
        clean.insert("plan");
        clean.insert("");
        assert!(clean.contains("plan"));
        assert!(clean.contains(""));
        assert!(!clean.contains("plan2"));
        assert!(!clean.contains("Plan"));
        // Over MAX_LEN: never remembered.
        let long = "x".repeat(MAX_LEN + 1);
        clean.insert(&long);
        assert!(!clean.contains(&long));
        // Two texts of one slot: the second replaces the first.
        let first = "aaaaaaaa-middle-one-zzzzzzzz";
        let second = "aaaaaaaa-middle-two-zzzzzzzz";
        assert_eq!(slot(first), slot(second));
        clean.insert(first);
        assert!(clean.contains(first) && !clean.contains(second));
        clean.insert(second);
        assert!(clean.contains(second) && !clean.contains(first));
    }

    #[test]
    fn slots_spread_short_texts() {
        let keys = [
            "plan",
            "experiment",
            "variant",
            "cart_items",
            "screen",
            "lang",
            "title",
            "pro",
            "b",
            "3",
            "en-GB",
        ];
        let mut used: Vec<usize> = keys.iter().map(|k| slot(k)).collect();
        used.sort_unstable();
        used.dedup();
        assert!(used.len() >= keys.len() - 1, "{used:?}");
    }

    /// A batch's events are pseudonymised with the memory on, each alone without: the same events and
    /// counts, known values included (each event's own user id in the texts the others share), and
    /// property keys that come and go between events (secret, dropped by the policy, an identifier).
    #[test]
    fn a_batch_is_pseudonymised_as_its_events_alone() {
        use crate::{Keys, Privacy, RequestContext, TenantPolicy, parse_user_agent};
        let policy: TenantPolicy = toml::from_str(
            "identifiers = [\"customer_no\"]\nprops = [\"plan\", \"note\", \"ref\", \"password\", \"api_key\"]",
        )
        .unwrap();
        let tenant = tacet_model::TenantId::new("t").unwrap();
        let keys = Keys {
            visitor_salt: [1; 32],
            subject_key: [2; 32],
        };
        let ctx = RequestContext::new(
            "203.0.113.5".parse().unwrap(),
            "Mozilla/5.0 (X11; Linux x86_64)",
        );
        let ua = parse_user_agent(ctx.user_agent);
        let raws: Vec<tacet_model::RawEvent> = (0..6)
            .map(|i| {
                let user = ["u-alpha", "u-beta"][i % 2];
                let mut json = serde_json::json!({"kind": "pageview", "url": "https://a.example/p",
                    "user_id": user, "release": "u-alpha 1.2",
                    "props": {"plan": "pro", "note": "for u-beta", "customer_no": "C-1", "ref": "C-1 from 203.0.113.5"}});
                let props = &mut json["props"];
                match i % 3 {
                    1 => props["password"] = "hunter2".into(),
                    2 => props["zz_unlisted"] = "x".into(),
                    _ => {}
                }
                if i % 2 == 1 {
                    props["api_key"] = "k-123".into();
                }
                tacet_model::parse_event(json, 1_764_400_000_000).unwrap()
            })
            .collect();
        let privacy = Privacy::default();
        let mut batch_tally = Tally::default();
        let batch = privacy.pseudonymise_all(
            &tenant,
            &policy,
            &keys,
            ctx,
            &ua,
            raws.clone(),
            &mut batch_tally,
        );
        let mut alone_tally = Tally::default();
        let alone: Vec<_> = raws
            .into_iter()
            .map(|raw| {
                privacy.pseudonymise(&tenant, &policy, &keys, ctx, &ua, raw, &mut alone_tally)
            })
            .collect();
        assert_eq!(batch, alone);
        assert_eq!(batch_tally, alone_tally);
        // The known values were replaced in the shared texts, per event.
        assert_eq!(batch_tally.get(crate::KNOWN_VALUE), 3 + 3 + 6 + 6);
        // What the keys' rules did: secrets hidden, the unlisted key and the identifier dropped.
        let crate::Outcome::Keep(e) = &batch[1] else {
            panic!("kept")
        };
        let keys: Vec<&str> = e.props.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["api_key", "note", "password", "plan", "ref"]);
        assert!(e.props.iter().all(|(_, v)| v != "hunter2" && v != "k-123"));
    }
}
