//! Small helpers the dialects share: the clock in unix milliseconds and the wire
//! spelling of a time.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A time as unix milliseconds.
pub fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Now, as unix milliseconds.
pub fn now_ms() -> i64 {
    unix_ms(OffsetDateTime::now_utc())
}

/// Unix milliseconds as an RFC 3339 time, or `None` for one out of range.
pub fn rfc3339(ms: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
}

/// Unix milliseconds as a JSON RFC 3339 string (`null` for a time out of range), as
/// the Bedrock control plane and the agent services write their timestamps.
pub fn timestamp(ms: i64) -> Value {
    rfc3339(ms).map_or(Value::Null, Value::String)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(
            timestamp(1_500),
            Value::String("1970-01-01T00:00:01.5Z".into())
        );
        assert_eq!(timestamp(i64::MAX), Value::Null);
    }

    #[test]
    fn unix_ms_round_trips_now() {
        let now = now_ms();
        assert!(rfc3339(now).is_some());
        assert!(now > 1_600_000_000_000, "{now}");
    }
}
