//! Units in scenario files: durations (`"500ms"`), rates (`"2/s"`) and prices, parsed to integers.

/// Microseconds in one second.
pub const US_PER_S: u64 = 1_000_000;

/// Parses a duration such as `"250us"`, `"500ms"`, `"2s"`, `"1.5s"`, `"30m"`, `"1h"` into microseconds.
///
/// Returns a message saying what was expected when the text is not a duration.
pub fn parse_duration_us(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(expected_duration(text, "a duration cannot be negative"));
    }
    let unit_start = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .ok_or_else(|| expected_duration(text, "it has no unit"))?;
    let (number, unit) = trimmed.split_at(unit_start);
    let unit_us: u64 = match unit.trim() {
        "us" | "µs" => 1,
        "ms" => 1_000,
        "s" => US_PER_S,
        "m" | "min" => 60 * US_PER_S,
        "h" => 3_600 * US_PER_S,
        "" => return Err(expected_duration(text, "it has no unit")),
        other => return Err(expected_duration(text, &format!("`{other}` is not a unit"))),
    };
    let value_us = parse_decimal_scaled(number, unit_us).ok_or_else(|| {
        let digits = number.chars().filter(char::is_ascii_digit).count();
        let why = if digits > 0 && number.chars().all(|c| c.is_ascii_digit() || c == '_' || c == '.') {
            "the number is too large (a run lasts at most 2^64 microseconds, about 584,000 years)"
        } else {
            "the number is not a non-negative decimal"
        };
        expected_duration(text, why)
    })?;
    Ok(value_us)
}

fn expected_duration(found: &str, why: &str) -> String {
    format!(
        "expected a duration such as \"500ms\", \"2s\" or \"30m\" (units us, ms, s, m, h), found \"{found}\": {why}"
    )
}

/// Parses a rate such as `"2/s"`, `"30/m"` or `"0.5/s"` into events per hour, scaled by 1,000
/// (milli-events per hour) so that fractional rates stay exact integers.
pub fn parse_rate_milli_per_hour(text: &str) -> Result<u64, String> {
    let expected = || format!("expected a rate such as \"2/s\", \"30/m\" or \"100/h\", found \"{text}\"");
    let (number, unit) = text.trim().split_once('/').ok_or_else(expected)?;
    let per_hour: u64 = match unit.trim() {
        "s" => 3_600,
        "m" | "min" => 60,
        "h" => 1,
        _ => return Err(expected()),
    };
    let milli = parse_decimal_scaled(number.trim(), per_hour * 1_000).ok_or_else(expected)?;
    if milli == 0 {
        return Err(format!("expected a positive rate, found \"{text}\""));
    }
    Ok(milli)
}

/// Parses a non-negative decimal (`"1.25"`) and multiplies it by `scale`, exactly, rounding down.
/// Returns `None` on anything else or on overflow.
pub fn parse_decimal_scaled(number: &str, scale: u64) -> Option<u64> {
    let number = number.replace('_', "");
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number.as_str(), ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part.chars().all(|c| c.is_ascii_digit()) || !frac_part.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if frac_part.len() > 12 {
        return None;
    }
    let int_value: u64 = if int_part.is_empty() { 0 } else { int_part.parse().ok()? };
    let mut total = int_value.checked_mul(scale)?;
    if !frac_part.is_empty() {
        let frac_value: u128 = frac_part.parse().ok()?;
        let denominator = 10u128.pow(frac_part.len() as u32);
        let scaled = frac_value * scale as u128 / denominator;
        total = total.checked_add(u64::try_from(scaled).ok()?)?;
    }
    Some(total)
}

/// Formats microseconds the way a person reads them: `"900ms"`, `"2.5s"`, `"3m12s"`.
pub fn format_duration_us(duration_us: u64) -> String {
    if duration_us < 1_000 {
        return format!("{duration_us}us");
    }
    if duration_us < US_PER_S {
        return trim_decimal(duration_us as f64 / 1_000.0, "ms");
    }
    if duration_us < 60 * US_PER_S {
        return trim_decimal(duration_us as f64 / US_PER_S as f64, "s");
    }
    let total_s = duration_us / US_PER_S;
    let (h, m, s) = (total_s / 3_600, (total_s / 60) % 60, total_s % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else {
        format!("{m}m{s:02}s")
    }
}

fn trim_decimal(value: f64, unit: &str) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

/// `between = [FROM, TO]`: two durations, FROM before TO.
pub fn parse_between_us(pair: &[String]) -> Result<(u64, u64), String> {
    match pair {
        [from, to] => match (parse_duration_us(from)?, parse_duration_us(to)?) {
            (from, to) if from < to => Ok((from, to)),
            _ => Err("expected `between = [FROM, TO]` with FROM before TO".to_owned()),
        },
        _ => Err("expected `between = [\"10s\", \"20s\"]`: two durations".to_owned()),
    }
}

/// A count with its noun: `1 actor`, `2 actors`.
pub fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Formats pico-USD as dollars with six decimals, rounded half up to the micro-dollar as the
/// summary's means and percentiles are, so that one cost never reads two ways in one report.
pub fn format_usd(pusd: u64) -> String {
    let micro_usd = pusd / 1_000_000 + u64::from(pusd % 1_000_000 >= 500_000);
    format!("${}.{:06}", micro_usd / 1_000_000, micro_usd % 1_000_000)
}

/// The largest budget a scenario or faults file may set, in USD: below where sums of pico-USD
/// saturate (`u64::MAX` pico-USD is about $18.4 million), so a cost that saturated breaks every
/// budget instead of wrapping round under it.
pub const BUDGET_USD_MAX: f64 = 10_000_000.0;

/// A budget in USD as exact pico-USD, or what was expected.
pub fn budget_pusd(usd: f64) -> Result<u64, String> {
    if !usd.is_finite() || !(0.0..=BUDGET_USD_MAX).contains(&usd) {
        return Err(format!(
            "expected a cost in USD between 0 and {BUDGET_USD_MAX}, found {usd}"
        ));
    }
    Ok((usd * 1e12).round() as u64)
}

/// Pico-USD as a JSON number of dollars, as reports write `cost_usd` beside the exact `cost_pusd`.
pub fn usd_from_pusd(pusd: u64) -> f64 {
    pusd as f64 / 1e12
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_rounds_half_up_to_the_micro_dollar() {
        assert_eq!(format_usd(0), "$0.000000");
        assert_eq!(format_usd(499_999), "$0.000000");
        assert_eq!(format_usd(500_000), "$0.000001");
        assert_eq!(format_usd(1_234_567_890_123), "$1.234568");
        assert_eq!(format_usd(999_999_500_000), "$1.000000");
        assert_eq!(format_usd(u64::MAX), "$18446744.073710");
    }

    #[test]
    fn durations_parse_to_exact_microseconds() {
        assert_eq!(parse_duration_us("250us"), Ok(250));
        assert_eq!(parse_duration_us("500ms"), Ok(500_000));
        assert_eq!(parse_duration_us("1.5s"), Ok(1_500_000));
        assert_eq!(parse_duration_us("30m"), Ok(1_800_000_000));
        assert_eq!(parse_duration_us("1h"), Ok(3_600_000_000));
        assert_eq!(parse_duration_us("0s"), Ok(0));
    }

    #[test]
    fn durations_without_a_known_unit_are_rejected_with_the_expected_form() {
        for bad in ["5", "5 parsecs", "-1s", "s", "1.2.3s", ""] {
            let err = parse_duration_us(bad).unwrap_err();
            assert!(err.contains("expected a duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn rates_parse_to_milli_events_per_hour() {
        assert_eq!(parse_rate_milli_per_hour("2/s"), Ok(7_200_000));
        assert_eq!(parse_rate_milli_per_hour("0.5/s"), Ok(1_800_000));
        assert_eq!(parse_rate_milli_per_hour("30/m"), Ok(1_800_000));
        assert!(parse_rate_milli_per_hour("0/s").is_err());
        assert!(parse_rate_milli_per_hour("2 per s").is_err());
    }

    #[test]
    fn durations_format_for_people() {
        assert_eq!(format_duration_us(900_000), "900ms");
        assert_eq!(format_duration_us(2_500_000), "2.5s");
        assert_eq!(format_duration_us(192 * US_PER_S), "3m12s");
        assert_eq!(format_duration_us(12), "12us");
    }
}
