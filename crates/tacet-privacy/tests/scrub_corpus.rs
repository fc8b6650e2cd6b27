//! The scrubber against a corpus of planted secrets (zero misses allowed) and a corpus of ordinary text
//! (zero changes allowed). The corpora are `tests/corpus/secrets.txt` and `tests/corpus/ordinary.txt`; the
//! opt-in `phone` rule also has `tests/corpus/phones.txt`, and must leave the ordinary corpus alone too.

use tacet_privacy::{Scrubber, Tally};

const SECRETS: &str = include_str!("corpus/secrets.txt");
const ORDINARY: &str = include_str!("corpus/ordinary.txt");
const PHONES: &str = include_str!("corpus/phones.txt");

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
}

/// Splits a corpus line into the text to scrub and the planted secrets.
fn planted(line: &str) -> (String, Vec<String>) {
    let line = line.replace("\\n", "\n");
    let (mut text, mut secrets) = (String::new(), Vec::new());
    let mut rest = line.as_str();
    while let Some(start) = rest.find('⟦') {
        text.push_str(&rest[..start]);
        let after = &rest[start + '⟦'.len_utf8()..];
        let end = after.find('⟧').expect("every ⟦ has a ⟧");
        secrets.push(after[..end].to_owned());
        text.push_str(&after[..end]);
        rest = &after[end + '⟧'.len_utf8()..];
    }
    text.push_str(rest);
    (text, secrets)
}

#[test]
fn every_planted_secret_is_scrubbed() {
    let scrubber = Scrubber::default();
    let mut tally = Tally::default();
    let (mut planted_total, mut misses) = (0, Vec::new());
    let mut per_rule: std::collections::BTreeMap<&str, usize> = Default::default();
    for line in lines(SECRETS) {
        let (rule, body) = line.split_once('\t').expect("<rule>\\t<text>");
        let (text, secrets) = planted(body);
        let out = scrubber.text(&text, &mut tally);
        for secret in secrets {
            planted_total += 1;
            *per_rule.entry(rule).or_default() += 1;
            // The secret must be gone, also with its separators removed (a card without spaces).
            let compact: String = secret.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
            let out_compact: String = out.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
            if out.contains(&secret) || (compact.len() >= 8 && out_compact.contains(&compact)) {
                misses.push(format!("[{rule}] {secret:?} survived in {out:?}"));
            }
        }
        assert!(out.contains('['), "no placeholder in {out:?}");
    }
    assert!(
        misses.is_empty(),
        "{} of {planted_total} planted secrets were missed:\n{}",
        misses.len(),
        misses.join("\n")
    );
    assert!(planted_total >= 200, "only {planted_total} planted secrets");
    // Every built-in rule found something, and the tally saw every replacement.
    for rule in tacet_privacy::RULES {
        assert!(tally.get(rule) > 0, "rule {rule} never fired: {tally:?}");
    }
    let replaced: u64 = tally.scrubbed.iter().map(|(_, n)| n).sum();
    assert!(
        replaced >= planted_total as u64,
        "{replaced} < {planted_total}: {tally:?}"
    );
    eprintln!(
        "{planted_total} planted secrets, all scrubbed; by corpus rule {per_rule:?}; tally {tally:?}"
    );
}

/// The opt-in `phone` rule: every planted number in every layout found, and no ordinary line changed (the
/// ordinary corpus is full of versions, dates, times, ids and line numbers).
#[test]
fn the_phone_rule_finds_numbers_and_leaves_ordinary_text_alone() {
    let scrubber = Scrubber::default().with_phone(true);
    let mut tally = Tally::default();
    let mut misses = Vec::new();
    let mut n = 0;
    for line in lines(PHONES) {
        let (_, body) = line.split_once('\t').expect("<layout>\\t<text>");
        let (text, numbers) = planted(body);
        let out = scrubber.text(&text, &mut tally);
        for number in numbers {
            n += 1;
            let digits: String = number.chars().filter(char::is_ascii_digit).collect();
            let out_digits: String = out.chars().filter(char::is_ascii_digit).collect();
            if out.contains(&number) || out_digits.contains(&digits) {
                misses.push(format!("{number:?} survived in {out:?}"));
            }
        }
    }
    assert!(misses.is_empty(), "{}", misses.join("\n"));
    assert!(n >= 15 && tally.get("phone") == n, "{n} planted, {tally:?}");
    let changed: Vec<String> = lines(ORDINARY)
        .filter(|l| scrubber.text(l, &mut Tally::default()) != *l)
        .map(str::to_owned)
        .collect();
    assert!(changed.is_empty(), "false positives: {changed:#?}");
    // Off by default.
    let mut t = Tally::default();
    assert!(
        Scrubber::default()
            .text("+44 20 7946 0958", &mut t)
            .contains("7946")
    );
}

#[test]
fn ordinary_text_is_left_alone() {
    let scrubber = Scrubber::default();
    let mut tally = Tally::default();
    let mut changed = Vec::new();
    let mut n = 0;
    for line in lines(ORDINARY) {
        n += 1;
        let out = scrubber.text(line, &mut tally);
        if out != line {
            changed.push(format!("{line:?}\n  became {out:?}"));
        }
    }
    assert!(n >= 70, "only {n} ordinary lines");
    assert!(
        changed.is_empty(),
        "{} false positives:\n{}",
        changed.len(),
        changed.join("\n")
    );
    assert_eq!(tally, Tally::default());
}

/// Found by `cargo fuzz` (target `scrubber`): an e-mail address inside URL credentials hid the credentials
/// from the URL rule until it was replaced, so a second scrub changed the text again and the first left
/// `:⟦c_kowalski@firm` in it. Scrubbing now repeats until nothing changes.
#[test]
fn scrubbing_is_idempotent_when_one_rule_uncovers_another() {
    let input = "ps://_emaem~\u{0}i@firma.pirt-teaSABeo:\u{27e6}c_kowalski@firm\u{0}\u{0}TTTTte:m@helep.exmaia";
    let s = tacet_privacy::Scrubber::new(&[]);
    let mut t = tacet_privacy::Tally::default();
    let once = s.text(input, &mut t);
    assert_eq!(s.text(&once, &mut t), once);
    assert!(!once.contains("kowalski"), "{once}");
}
