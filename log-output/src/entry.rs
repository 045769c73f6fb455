//! The text of one entry, exactly as SPEC §5 gives it:
//!
//! ```text
//! 2020-03-30T12:15:17.705Z: 8523ecb1-c716-4cb6-a044-b9e83bb98e43.
//! Ping / Pongs: 3
//! ```
//!
//! UTC in RFC 3339 with milliseconds and `Z`, a colon and a space, the writer's UUID, a full
//! stop, a newline, `Ping / Pongs: ` and the count, and no trailing newline.

use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

/// The entry the writer `id` writes at `at` when the counter holds `pongs`.
pub fn format_entry(at: SystemTime, id: Uuid, pongs: u64) -> String {
    // Millis truncates the sub-millisecond digits; `true` writes `Z`, not `+00:00`.
    let at = DateTime::<Utc>::from(at).to_rfc3339_opts(SecondsFormat::Millis, true);
    format!("{at}: {id}.\nPing / Pongs: {pongs}")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn matches_the_spec_example_exactly() {
        // 2020-03-30T12:15:17.705Z, the example in SPEC §5.
        let at = UNIX_EPOCH + Duration::from_millis(1_585_570_517_705);
        let id = Uuid::parse_str("8523ecb1-c716-4cb6-a044-b9e83bb98e43").expect("valid uuid");
        assert_eq!(
            format_entry(at, id, 3),
            "2020-03-30T12:15:17.705Z: 8523ecb1-c716-4cb6-a044-b9e83bb98e43.\nPing / Pongs: 3"
        );
    }

    #[test]
    fn keeps_milliseconds_when_they_are_zero_and_drops_finer_digits() {
        let id = Uuid::nil();
        let whole_second = UNIX_EPOCH + Duration::from_secs(1_585_570_517);
        assert_eq!(
            format_entry(whole_second, id, 0),
            "2020-03-30T12:15:17.000Z: 00000000-0000-0000-0000-000000000000.\nPing / Pongs: 0"
        );
        let with_nanos = whole_second + Duration::from_nanos(705_999_999);
        assert!(format_entry(with_nanos, id, 0).starts_with("2020-03-30T12:15:17.705Z: "));
    }

    #[test]
    fn writes_the_same_timestamp_as_humantime_did_byte_for_byte() {
        // The format before chrono, over random instants from 1970 to 9999.
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..10_000 {
            let at =
                UNIX_EPOCH + Duration::new(rng.u64(0..253_402_300_800), rng.u32(0..1_000_000_000));
            let entry = format_entry(at, Uuid::nil(), 0);
            let before = humantime::format_rfc3339_millis(at).to_string();
            assert_eq!(
                entry.split_once(": ").map(|(t, _)| t),
                Some(before.as_str())
            );
        }
    }

    #[test]
    fn shows_a_v4_uuid_in_lowercase_hyphenated_form_and_the_full_count() {
        let id = Uuid::new_v4();
        let entry = format_entry(UNIX_EPOCH, id, u64::MAX);
        assert_eq!(id.get_version_num(), 4);
        assert_eq!(
            entry,
            format!(
                "1970-01-01T00:00:00.000Z: {}.\nPing / Pongs: 18446744073709551615",
                id.hyphenated()
            )
        );
        assert!(!entry.ends_with('\n'));
    }
}
