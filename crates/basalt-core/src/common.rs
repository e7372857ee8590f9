//! Small helpers every service shares: the clock, resource IDs and the meaning of a
//! store failure.

use basalt_store::StoreError;
use rand::Rng;

use crate::CoreError;

/// Now, as unix milliseconds.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Bedrock's IDs of jobs, guardrails and provisioned models: `[a-z0-9]`.
pub const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// Bedrock's knowledge-base resource IDs: `[0-9A-Z]`.
pub const UPPER_ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// Tool-call IDs: letters of both cases and digits.
pub const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Whether `id` is a resource ID as [`random_id`] makes them: 12 lowercase letters
/// and digits.
pub fn is_resource_id(id: &str) -> bool {
    id.len() == 12
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A random ID of `len` characters drawn from `alphabet`.
pub fn random_id(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

/// Resource tags as stored: `[{"key": …, "value": …}]`, or none for no tags.
pub fn tags_json(tags: &[(String, String)]) -> Option<String> {
    (!tags.is_empty()).then(|| {
        serde_json::Value::Array(
            tags.iter()
                .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
                .collect(),
        )
        .to_string()
    })
}

/// Stored tags read back (what does not parse is left out).
pub fn tags_of(stored: Option<&str>) -> Vec<(String, String)> {
    stored
        .and_then(|t| serde_json::from_str::<Vec<serde_json::Value>>(t).ok())
        .unwrap_or_default()
        .iter()
        .filter_map(|t| {
            Some((
                t.get("key")?.as_str()?.to_owned(),
                t.get("value")?.as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// A store failure as the caller sees it: a duplicate is a conflict, anything else
/// an internal error naming the store (`area`).
pub(crate) fn store_error(area: &'static str) -> impl Fn(StoreError) -> CoreError {
    move |e| match e {
        StoreError::Duplicate(what) => {
            CoreError::Conflict(format!("a resource with this {what} already exists"))
        }
        StoreError::Unavailable(why) => {
            CoreError::ServiceUnavailable(format!("the {area} store is unavailable: {why}"))
        }
        other => CoreError::Internal(format!("{area} store: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_use_their_alphabet_and_errors_name_their_store() {
        let id = random_id(12, LOWER_ALNUM);
        assert_eq!(id.len(), 12);
        assert!(id.bytes().all(|b| LOWER_ALNUM.contains(&b)));
        let map = store_error("batch job");
        assert!(matches!(
            map(StoreError::Duplicate("client token")),
            CoreError::Conflict(_)
        ));
        let internal = map(StoreError::Database("disk full".into()));
        assert_eq!(
            internal.to_string(),
            "batch job store: database error: disk full"
        );
        assert!(matches!(
            map(StoreError::Unavailable("connection refused".into())),
            CoreError::ServiceUnavailable(_)
        ));
        let tags = vec![("team".to_string(), "a".to_string())];
        assert_eq!(tags_of(tags_json(&tags).as_deref()), tags);
        assert_eq!(tags_json(&[]), None);
    }
}
