//! What every table's stage two uses: the context its errors are made in, durations (parsed
//! and range-checked), optional strings and lists of event names.

use std::time::Duration;

use super::error::ConfigError;
use crate::decide::EventKind;

/// Collects the context for stage-two errors.
pub(super) struct Ctx<'a> {
    pub(super) file: &'a str,
}

impl Ctx<'_> {
    pub(super) fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            key: key.into(),
            message: message.into(),
            at: None,
        }
    }

    pub(super) fn duration(
        &self,
        key: &str,
        value: &str,
        min: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        let d = parse_duration(value).map_err(|m| self.err(key, m))?;
        if d < min || d > max {
            return Err(self.err(
                key,
                format!(
                    "{value:?} is out of range (expected between {} and {})",
                    humantime::format_duration(min),
                    humantime::format_duration(max)
                ),
            ));
        }
        Ok(d)
    }
}

pub(super) const HOUR: Duration = Duration::from_secs(3600);

pub(super) const DAY: Duration = Duration::from_secs(86_400);

/// Parses a duration written like `90s`, `7m`, `8h`, `1h30m`, `500ms` or `2d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let expected = || {
        format!("{s:?} is not a duration (expected a number and a unit, like 90s, 7m, 8h or 1h30m)")
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(expected());
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(expected());
        }
        let (num, tail) = rest.split_at(digits);
        let n: u64 = num.parse().map_err(|_| expected())?;
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => n
                .checked_mul(60)
                .map(Duration::from_secs)
                .ok_or_else(expected)?,
            "h" => n
                .checked_mul(3600)
                .map(Duration::from_secs)
                .ok_or_else(expected)?,
            "d" => n
                .checked_mul(86_400)
                .map(Duration::from_secs)
                .ok_or_else(expected)?,
            _ => return Err(expected()),
        };
        total = total.checked_add(part).ok_or_else(expected)?;
        rest = tail;
    }
    Ok(total)
}

pub(super) fn optional(s: String) -> Option<String> {
    let t = s.trim();
    if t.is_empty() {
        None
    } else {
        Some(t.to_string())
    }
}

/// A list of event names, each known, without duplicates.
/// The agent's events named in `key`. Names in `sent_by_others` are accepted and left out: the
/// stack's wake function sends those (a webhook's `waking`).
pub(super) fn events(
    cx: &Ctx<'_>,
    key: &str,
    names: &[String],
    sent_by_others: &[&str],
) -> Result<Vec<EventKind>, ConfigError> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if sent_by_others.contains(&name.as_str()) {
            continue;
        }
        let Some(kind) = EventKind::from_name(name) else {
            let mut known: Vec<&str> = EventKind::ALL.map(EventKind::as_str).to_vec();
            known.extend_from_slice(sent_by_others);
            return Err(cx.err(
                format!("{key}[{i}]"),
                format!(
                    "{name:?} is not an event (expected one of {})",
                    known.join(", ")
                ),
            ));
        };
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("7m"), Ok(Duration::from_secs(420)));
        assert_eq!(parse_duration("8h"), Ok(Duration::from_secs(28_800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in [
            "",
            "s",
            "10",
            "1.5s",
            "10 s",
            "-1s",
            "1y",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn duration_parser_never_panics(s in "\\PC{0,16}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn durations_round_trip(h in 0u64..1000, m in 0u64..60, s in 0u64..60) {
            let text = format!("{h}h{m}m{s}s");
            prop_assert_eq!(parse_duration(&text), Ok(Duration::from_secs(h * 3600 + m * 60 + s)));
        }
    }
}
