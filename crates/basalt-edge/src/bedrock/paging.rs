//! Paging of the Bedrock list operations: `maxResults` and `nextToken`.
//!
//! `maxResults` is 1 to [`MAX_RESULTS`] rows, [`MAX_RESULTS`] when the caller names
//! none. A page that leaves rows behind carries a `nextToken`, and the next request
//! passes it back to read on from there.
//!
//! A token is opaque and cannot be forged: URL-safe base64 (no padding) of the offset
//! of the next row (8 bytes, big-endian) followed by an HMAC-SHA256 tag over that
//! offset, the caller's key ID and the operation's name, keyed with a secret drawn
//! at random when the process starts. A token made up by a client, altered, issued
//! to another key or for another operation is refused with a `ValidationException`
//! ("nextToken is not one this server issued"); so is one issued before a restart,
//! after which the client starts its listing again.

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::error::BedrockError;

type HmacSha256 = Hmac<Sha256>;

/// The most rows one page holds, and the page size when the caller names none.
pub const MAX_RESULTS: usize = 1000;

/// The refusal of a token this server did not issue (to this key, for this operation).
const NOT_ISSUED: &str = "nextToken is not one this server issued";

/// Bytes of the offset at the front of a token.
const OFFSET_LEN: usize = 8;
/// Bytes of the HMAC-SHA256 tag that follows it.
const TAG_LEN: usize = 32;

/// Issues and checks page tokens under one secret.
#[derive(Clone)]
struct Signer {
    mac: HmacSha256,
}

impl Signer {
    fn new(secret: &[u8]) -> Self {
        Self {
            mac: <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes any key length"),
        }
    }

    /// The signer of this process, under a secret drawn from the OS at first use.
    fn process() -> &'static Signer {
        static SIGNER: OnceLock<Signer> = OnceLock::new();
        SIGNER.get_or_init(|| {
            let mut secret = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            Signer::new(&secret)
        })
    }

    /// The MAC over an offset, the key it is issued to and the operation, keyed and
    /// ready to finish or verify. The key ID is length-prefixed, so no two
    /// (key, operation) pairs feed it the same bytes.
    fn mac(&self, offset: u64, key_id: &str, operation: &str) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(&offset.to_be_bytes());
        mac.update(&(key_id.len() as u64).to_be_bytes());
        mac.update(key_id.as_bytes());
        mac.update(operation.as_bytes());
        mac
    }

    fn issue(&self, offset: usize, key_id: &str, operation: &str) -> String {
        let offset = offset as u64;
        let tag = self.mac(offset, key_id, operation).finalize().into_bytes();
        let mut raw = Vec::with_capacity(OFFSET_LEN + TAG_LEN);
        raw.extend_from_slice(&offset.to_be_bytes());
        raw.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The offset a token names, if this signer issued it to `key_id` for `operation`.
    fn check(&self, token: &str, key_id: &str, operation: &str) -> Option<usize> {
        let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        if raw.len() != OFFSET_LEN + TAG_LEN {
            return None;
        }
        let (offset, tag) = raw.split_at(OFFSET_LEN);
        let offset = u64::from_be_bytes(offset.try_into().ok()?);
        self.mac(offset, key_id, operation).verify_slice(tag).ok()?;
        usize::try_from(offset).ok()
    }
}

/// One page of a listed collection: its rows and, when rows remain after them, the
/// token that reads on.
#[derive(Debug)]
pub struct Page<T> {
    /// The rows of this page, in the collection's order.
    pub rows: Vec<T>,
    /// The `nextToken` to answer with; `None` on the last page.
    pub next_token: Option<String>,
}

impl<T> Page<T> {
    /// The response body `{ field: [rows...], "nextToken": ... }`, each row written by
    /// `row`; `nextToken` only when rows remain.
    pub fn into_json(self, field: &str, row: impl FnMut(&T) -> Value) -> Value {
        let mut body = Map::new();
        body.insert(
            field.to_owned(),
            Value::Array(self.rows.iter().map(row).collect()),
        );
        if let Some(token) = self.next_token {
            body.insert("nextToken".to_owned(), Value::String(token));
        }
        Value::Object(body)
    }
}

/// Where one caller's page of one list operation starts and how many rows it holds.
pub struct Paging<'a> {
    signer: &'a Signer,
    operation: &'static str,
    key_id: &'a str,
    start: usize,
    max: usize,
}

impl<'a> Paging<'a> {
    /// For an operation that takes `maxResults` and `nextToken` in its query string
    /// (the control plane's `GET` lists). `operation` is the operation's name and
    /// `key_id` the caller's (`""` for none): a token works only for both.
    pub fn from_query(
        operation: &'static str,
        key_id: &'a str,
        max_results: Option<&str>,
        next_token: Option<&str>,
    ) -> Result<Self, BedrockError> {
        let max = match max_results {
            None => MAX_RESULTS,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_RESULTS).contains(n))
                .ok_or_else(|| {
                    BedrockError::validation(format!(
                        "maxResults must be a number from 1 to {MAX_RESULTS}"
                    ))
                })?,
        };
        Self::new(Signer::process(), operation, key_id, max, next_token)
    }

    /// For an operation that takes `maxResults` and `nextToken` in its JSON body (the
    /// agent services' `POST` lists). `operation` and `key_id` as for
    /// [`Paging::from_query`].
    pub fn from_body(
        operation: &'static str,
        key_id: &'a str,
        max_results: Option<i64>,
        next_token: Option<&str>,
    ) -> Result<Self, BedrockError> {
        let max = match max_results {
            None => MAX_RESULTS,
            Some(n) => usize::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_RESULTS).contains(n))
                .ok_or_else(|| {
                    BedrockError::validation(format!(
                        "maxResults must be 1..{MAX_RESULTS}, got {n}"
                    ))
                })?,
        };
        Self::new(Signer::process(), operation, key_id, max, next_token)
    }

    fn new(
        signer: &'a Signer,
        operation: &'static str,
        key_id: &'a str,
        max: usize,
        next_token: Option<&str>,
    ) -> Result<Self, BedrockError> {
        let start = match next_token {
            None => 0,
            Some(token) => signer
                .check(token, key_id, operation)
                .ok_or_else(|| BedrockError::validation(NOT_ISSUED))?,
        };
        Ok(Self {
            signer,
            operation,
            key_id,
            start,
            max,
        })
    }

    /// This page of `rows` (the whole collection, in order), with a token for the
    /// next page when rows remain after it.
    pub fn page<T>(&self, rows: Vec<T>) -> Page<T> {
        let total = rows.len();
        let end = self.start.saturating_add(self.max).min(total);
        let next_token = (end < total).then(|| self.signer.issue(end, self.key_id, self.operation));
        let rows = rows
            .into_iter()
            .skip(self.start)
            .take(end.saturating_sub(self.start))
            .collect();
        Page { rows, next_token }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::BedrockErrorCode;

    fn refused<T>(r: Result<T, BedrockError>) -> String {
        match r {
            Ok(_) => panic!("expected a ValidationException"),
            Err(e) => {
                assert!(matches!(e.code, BedrockErrorCode::Validation), "{e:?}");
                e.message
            }
        }
    }

    fn list(n: usize) -> Vec<usize> {
        (0..n).collect()
    }

    #[test]
    fn pages_round_trip() {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let paging = Paging::from_query("ListThings", "key-a", Some("3"), token.as_deref())
                .expect("a token this server issued is accepted");
            let page = paging.page(list(10));
            seen.extend(page.rows);
            pages += 1;
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen, list(10));
        assert_eq!(pages, 4);
    }

    #[test]
    fn the_last_page_has_no_token() {
        let paging = Paging::from_body("ListThings", "key-a", Some(5), None).expect("paging");
        let page = paging.page(list(5));
        assert_eq!(page.rows, list(5));
        assert!(page.next_token.is_none());
        let page = paging.page(list(6));
        assert_eq!(page.rows, list(5));
        assert!(page.next_token.is_some());
        let page = Paging::from_query("ListThings", "key-a", None, None)
            .expect("paging")
            .page(list(MAX_RESULTS));
        assert_eq!(page.rows.len(), MAX_RESULTS);
        assert!(page.next_token.is_none());
    }

    #[test]
    fn tokens_are_opaque() {
        let token = Signer::process().issue(20, "key-a", "ListThings");
        assert_ne!(token, "20");
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        // The offsets this server used to hand out are not tokens.
        let message = refused(Paging::from_query("ListThings", "key-a", None, Some("20")));
        assert_eq!(message, "nextToken is not one this server issued");
    }

    #[test]
    fn a_token_of_another_key_is_refused() {
        let page = Paging::from_query("ListThings", "key-a", Some("1"), None)
            .expect("paging")
            .page(list(3));
        let token = page.next_token.expect("rows remain");
        let message = refused(Paging::from_query(
            "ListThings",
            "key-b",
            None,
            Some(&token),
        ));
        assert_eq!(message, "nextToken is not one this server issued");
        // Nor does a key ID that runs into the operation's name collide with another.
        let token = Signer::process().issue(1, "key-a", "ListThings");
        assert!(Signer::process()
            .check(&token, "key-aL", "istThings")
            .is_none());
        assert!(Signer::process().check(&token, "", "ListThings").is_none());
    }

    #[test]
    fn a_token_for_another_operation_is_refused() {
        let page = Paging::from_body("ListDataSources", "key-a", Some(1), None)
            .expect("paging")
            .page(list(3));
        let token = page.next_token.expect("rows remain");
        let message = refused(Paging::from_body(
            "ListKnowledgeBases",
            "key-a",
            None,
            Some(&token),
        ));
        assert_eq!(message, "nextToken is not one this server issued");
    }

    #[test]
    fn a_tampered_token_is_refused() {
        let token = Signer::process().issue(2, "key-a", "ListThings");
        let mut raw = URL_SAFE_NO_PAD.decode(&token).expect("base64");
        // Point it further into the collection, keeping the tag.
        raw[OFFSET_LEN - 1] = 9;
        let forged = URL_SAFE_NO_PAD.encode(&raw);
        for bad in [
            forged.as_str(),
            &token[..token.len() - 1],
            "",
            "not base64!",
            &format!("{token}AA"),
        ] {
            let message = refused(Paging::from_query("ListThings", "key-a", None, Some(bad)));
            assert_eq!(
                message, "nextToken is not one this server issued",
                "{bad:?}"
            );
        }
        // A token signed under another secret (another server) is refused too.
        let other = Signer::new(b"another server's secret").issue(2, "key-a", "ListThings");
        assert!(Signer::process()
            .check(&other, "key-a", "ListThings")
            .is_none());
        assert_eq!(
            Signer::process().check(&token, "key-a", "ListThings"),
            Some(2)
        );
    }

    #[test]
    fn max_results_is_bounded() {
        for ok in ["1", "1000"] {
            assert!(Paging::from_query("ListThings", "", Some(ok), None).is_ok());
        }
        for bad in ["0", "1001", "-1", "ten", ""] {
            let message = refused(Paging::from_query("ListThings", "", Some(bad), None));
            assert_eq!(message, "maxResults must be a number from 1 to 1000");
        }
        for ok in [1, 1000] {
            assert!(Paging::from_body("ListThings", "", Some(ok), None).is_ok());
        }
        for bad in [0, 1001, -5] {
            let message = refused(Paging::from_body("ListThings", "", Some(bad), None));
            assert_eq!(message, format!("maxResults must be 1..1000, got {bad}"));
        }
    }

    #[test]
    fn a_page_past_the_end_is_empty() {
        let token = Signer::process().issue(50, "k", "ListThings");
        let page = Paging::from_query("ListThings", "k", Some("10"), Some(&token))
            .expect("paging")
            .page(list(20));
        assert!(page.rows.is_empty());
        assert!(page.next_token.is_none());
    }

    #[test]
    fn into_json_writes_the_field_then_the_token() {
        let page = Page {
            rows: vec![1, 2],
            next_token: Some("t".to_owned()),
        };
        let body = page.into_json("items", |n| Value::from(*n));
        assert_eq!(body.to_string(), r#"{"items":[1,2],"nextToken":"t"}"#);
        let page: Page<i32> = Page {
            rows: vec![],
            next_token: None,
        };
        assert_eq!(
            page.into_json("items", |n| Value::from(*n)).to_string(),
            r#"{"items":[]}"#
        );
    }
}
