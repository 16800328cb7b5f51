//! Finding personal data in text: emails, phone numbers, card numbers (Luhn), IBANs (mod-97)
//! and secret-looking API keys. Matches are byte ranges, in order, never overlapping.

use std::ops::Range;
use std::sync::OnceLock;

use regex::Regex;

use crate::scenario::guardrail::PiiEntity;

fn pattern(entity: PiiEntity) -> &'static Regex {
    static PATTERNS: OnceLock<Vec<Regex>> = OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        PiiEntity::ALL
            .iter()
            .map(|e| {
                Regex::new(match e {
                    PiiEntity::Email => r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
                    PiiEntity::Phone => r"\+?\(?\d[\d ().-]{6,}\d",
                    PiiEntity::CreditCard => r"\b\d(?:[ -]?\d){12,18}\b",
                    PiiEntity::Iban => r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b",
                    PiiEntity::ApiKey => {
                        r"\b(?:sk-[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|ghp_[A-Za-z0-9]{36}|xox[bp]-[A-Za-z0-9-]{10,})"
                    }
                })
                .expect("built-in patterns compile")
            })
            .collect()
    });
    &patterns[PiiEntity::ALL.iter().position(|e| *e == entity).expect("listed")]
}

/// The Luhn checksum of a digit string.
pub fn luhn_valid(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    !digits.is_empty() && sum % 10 == 0
}

/// The ISO 13616 mod-97 check of an IBAN (spaces ignored).
pub fn iban_valid(text: &str) -> bool {
    let compact: Vec<u8> = text.bytes().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut remainder = 0u32;
    for byte in tail.iter().chain(head) {
        let value = match byte {
            b'0'..=b'9' => u32::from(byte - b'0'),
            b'A'..=b'Z' => u32::from(byte - b'A') + 10,
            _ => return false,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

/// Where each of `entities` appears in `text`, with the entity found.
pub fn find(text: &str, entities: &[PiiEntity]) -> Vec<(Range<usize>, PiiEntity)> {
    // What every valid match needs, counted once: a text without it is not searched for that
    // entity (the result is the same; most text has neither an `@` nor many digits).
    let ascii_digits = text.bytes().filter(u8::is_ascii_digit).count();
    let possible = |entity: PiiEntity| match entity {
        PiiEntity::Email => text.contains('@'),
        // A card number is 13 to 19 digits, a phone number 8 to 15 (counted in ASCII digits).
        PiiEntity::CreditCard => ascii_digits >= 13,
        PiiEntity::Phone => ascii_digits >= 8,
        // Two check digits after the country code (ASCII, or the mod-97 check fails).
        PiiEntity::Iban => ascii_digits >= 2,
        PiiEntity::ApiKey => true,
    };
    search(text, |entity| entities.contains(&entity) && possible(entity))
}

/// The matches of every entity `searched` lets through, checked and without overlaps.
fn search(text: &str, searched: impl Fn(PiiEntity) -> bool) -> Vec<(Range<usize>, PiiEntity)> {
    let mut found: Vec<(Range<usize>, PiiEntity)> = Vec::new();
    // Checked structures first, so a card number is not also reported as a phone number.
    let order = [
        PiiEntity::ApiKey,
        PiiEntity::Email,
        PiiEntity::CreditCard,
        PiiEntity::Iban,
        PiiEntity::Phone,
    ];
    for entity in order.into_iter().filter(|e| searched(*e)) {
        for m in pattern(entity).find_iter(text) {
            let valid = match entity {
                PiiEntity::CreditCard => {
                    let digits: Vec<u8> = m
                        .as_str()
                        .bytes()
                        .filter(u8::is_ascii_digit)
                        .map(|b| b - b'0')
                        .collect();
                    (13..=19).contains(&digits.len()) && luhn_valid(&digits)
                }
                PiiEntity::Iban => iban_valid(m.as_str()),
                PiiEntity::Phone => {
                    let digits = m.as_str().bytes().filter(u8::is_ascii_digit).count();
                    (8..=15).contains(&digits)
                }
                _ => true,
            };
            let range = m.range();
            if valid && !found.iter().any(|(r, _)| r.start < range.end && range.start < r.end) {
                found.push((range, entity));
            }
        }
    }
    found.sort_by_key(|(r, _)| r.start);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_real_test_numbers_and_rejects_a_changed_digit() {
        let digits = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<_>>();
        assert!(luhn_valid(&digits("4111111111111111")));
        assert!(luhn_valid(&digits("5500005555555559")));
        assert!(!luhn_valid(&digits("4111111111111112")));
    }

    #[test]
    fn iban_mod_97() {
        assert!(iban_valid("DE89370400440532013000"));
        assert!(iban_valid("GB82 WEST 1234 5698 7654 32"));
        assert!(!iban_valid("DE89370400440532013001"));
    }

    #[test]
    fn skipping_texts_without_digits_or_at_signs_finds_the_same() {
        for text in [
            "",
            "no personal data in here at all",
            "Mail ana@example.com today",
            "call +1 415 555 0100 or 555-0100",
            "card 4111 1111 1111 1111 and 4111111111111112",
            "IBAN DE89 3704 0044 0532 0130 00",
            "GB82 WEST 1234 5698 7654 32",
            "key sk-abcdefghijklmnop1234 and AKIAABCDEFGHIJKLMNOP",
            "Arabic-Indic digits ٤١١١ ١١١١ ١١١١ ١١١١ and +٤١٥ ٥٥٥ ٠١٠٠",
            "DE٨٩370400440532013000 with 12 digits 123456789012",
            "seven 1234567 digits, then at@ sign alone @",
        ] {
            // Without the shortcuts: every pattern searched, every match checked.
            assert_eq!(find(text, &PiiEntity::ALL), search(text, |_| true), "{text:?}");
        }
    }

    #[test]
    fn finds_each_entity_once_and_not_lookalikes() {
        let text = "Mail ana@example.com, call +1 415 555 0100, card 4111 1111 1111 1111, \
                    IBAN DE89 3704 0044 0532 0130 00, key sk-abcdefghijklmnop1234; order 4111111111111112.";
        let found: Vec<(&str, &str)> = find(text, &PiiEntity::ALL)
            .into_iter()
            .map(|(r, e)| (e.name(), &text[r]))
            .collect();
        assert_eq!(
            found,
            [
                ("email", "ana@example.com"),
                ("phone", "+1 415 555 0100"),
                ("credit_card", "4111 1111 1111 1111"),
                ("iban", "DE89 3704 0044 0532 0130 00"),
                ("api_key", "sk-abcdefghijklmnop1234"),
            ]
        );
        assert!(find("order 4111111111111112 shipped", &[PiiEntity::CreditCard]).is_empty());
    }
}
