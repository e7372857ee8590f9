//! AWS Signature Version 4 verification, as botocore signs Bedrock requests.
//!
//! The server rebuilds the canonical request from what it received — the raw
//! (still percent-encoded) path encoded once more, the sorted query, the signed
//! headers, and the SHA-256 of the body it read — and compares signatures in
//! constant time. Requests more than 15 minutes from the server's clock are refused.

use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

/// Characters left as they are by AWS URI encoding: unreserved `A-Za-z0-9-_.~`.
const AWS_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// Path encoding also keeps `/`.
const AWS_PATH: &AsciiSet = &AWS_UNRESERVED.remove(b'/');

/// Largest accepted difference between the request's time and the server's clock.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 15 * 60;

/// Why a signature was refused (logged; the client only learns "access denied").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    #[error("missing or malformed X-Amz-Date")]
    BadDate,
    #[error("request time is more than 15 minutes from the server's clock")]
    ClockSkew,
    #[error("credential scope is for service {0}, not {1}")]
    WrongService(String, &'static str),
    #[error("credential scope date does not match X-Amz-Date")]
    ScopeDate,
    #[error("signed header {0} is missing from the request")]
    MissingSignedHeader(String),
    #[error("neither host nor :authority is among the signed headers")]
    HostNotSigned,
    #[error("signature does not match")]
    Mismatch,
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Parses the header; `None` when it is not a SigV4 header at all.
pub fn parse_authorization(value: &str) -> Option<Result<Authorization, SigV4Error>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    Some(parse_fields(rest))
}

fn parse_fields(rest: &str) -> Result<Authorization, SigV4Error> {
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(SigV4Error::Malformed("expected key=value"))?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => return Err(SigV4Error::Malformed("unknown field")),
        }
    }
    let credential = credential.ok_or(SigV4Error::Malformed("no Credential"))?;
    let mut scope = credential.split('/');
    let (Some(akid), Some(date), Some(region), Some(service), Some("aws4_request"), None) = (
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
        scope.next(),
    ) else {
        return Err(SigV4Error::Malformed(
            "Credential must be AKID/date/region/service/aws4_request",
        ));
    };
    let signed_headers: Vec<String> = signed
        .ok_or(SigV4Error::Malformed("no SignedHeaders"))?
        .split(';')
        .map(str::to_ascii_lowercase)
        .collect();
    let signature = signature.ok_or(SigV4Error::Malformed("no Signature"))?;
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SigV4Error::Malformed("Signature must be 64 hex digits"));
    }
    Ok(Authorization {
        access_key_id: akid.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers,
        signature: signature.to_ascii_lowercase(),
    })
}

/// What the verifier needs from the HTTP request.
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The path exactly as received (percent-encoded).
    pub raw_path: &'a str,
    /// The query string exactly as received, without `?`.
    pub raw_query: &'a str,
    /// Looks up all values of a header (lowercase name).
    pub headers: &'a dyn Fn(&str) -> Vec<String>,
    pub body: &'a [u8],
}

/// The checks that need no body and no secret: service, date, clock skew, scope
/// date, and that the authority (`host`, or `:authority` over HTTP/2) is signed.
pub fn check_headers(
    auth: &Authorization,
    headers: &dyn Fn(&str) -> Vec<String>,
    expected_service: &'static str,
    now: OffsetDateTime,
) -> Result<(), SigV4Error> {
    if auth.service != expected_service {
        return Err(SigV4Error::WrongService(
            auth.service.clone(),
            expected_service,
        ));
    }
    let amz_date = headers("x-amz-date")
        .into_iter()
        .next()
        .ok_or(SigV4Error::BadDate)?;
    let request_time = parse_amz_date(&amz_date).ok_or(SigV4Error::BadDate)?;
    if (now - request_time).whole_seconds().abs() > MAX_CLOCK_SKEW_SECONDS {
        return Err(SigV4Error::ClockSkew);
    }
    if !amz_date.starts_with(&auth.date) || auth.date.len() != 8 {
        return Err(SigV4Error::ScopeDate);
    }
    if !auth
        .signed_headers
        .iter()
        .any(|h| h == "host" || h == ":authority")
    {
        return Err(SigV4Error::HostNotSigned);
    }
    Ok(())
}

/// Checks the signature of a request with the key's secret.
pub fn verify(
    auth: &Authorization,
    request: &RequestParts<'_>,
    secret_access_key: &str,
    expected_service: &'static str,
    now: OffsetDateTime,
) -> Result<(), SigV4Error> {
    check_headers(auth, request.headers, expected_service, now)?;
    let amz_date = (request.headers)("x-amz-date")
        .into_iter()
        .next()
        .ok_or(SigV4Error::BadDate)?;
    let canonical = canonical_request(auth, request)?;
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{secret_access_key}").as_bytes(),
        auth.date.as_bytes(),
    );
    for part in [
        auth.region.as_bytes(),
        auth.service.as_bytes(),
        b"aws4_request",
    ] {
        key = hmac(&key, part);
    }
    let expected = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    if bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
        Ok(())
    } else {
        Err(SigV4Error::Mismatch)
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn parse_amz_date(value: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(value, &format)
        .ok()
        .map(|t| t.assume_utc())
}

fn canonical_request(
    auth: &Authorization,
    request: &RequestParts<'_>,
) -> Result<String, SigV4Error> {
    let mut headers = String::new();
    for name in &auth.signed_headers {
        let values = (request.headers)(name);
        if values.is_empty() {
            return Err(SigV4Error::MissingSignedHeader(name.clone()));
        }
        let joined: Vec<String> = values
            .iter()
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        headers.push_str(name);
        headers.push(':');
        headers.push_str(&joined.join(","));
        headers.push('\n');
    }
    let payload_hash = match (request.headers)("x-amz-content-sha256").into_iter().next() {
        Some(v) if v == "UNSIGNED-PAYLOAD" => v,
        _ => hex::encode(Sha256::digest(request.body)),
    };
    Ok(format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        canonical_uri(request.raw_path),
        canonical_query(request.raw_query),
        headers,
        auth.signed_headers.join(";"),
        payload_hash
    ))
}

/// botocore: drop `.` and empty segments, resolve `..`, keep a trailing `/`, then
/// percent-encode the (already encoded) path once more.
fn canonical_uri(raw_path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in raw_path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut path = format!("/{}", segments.join("/"));
    if raw_path.ends_with('/') && !segments.is_empty() {
        path.push('/');
    }
    utf8_percent_encode(&path, AWS_PATH).to_string()
}

fn canonical_query(raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (
                utf8_percent_encode(&decode(k), AWS_UNRESERVED).to_string(),
                utf8_percent_encode(&decode(v), AWS_UNRESERVED).to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;
    // Signed by botocore 1.44.8's SigV4Auth (service bedrock, region us-west-2).
    const AUTH: &str = "AWS4-HMAC-SHA256 Credential=BSLTEXAMPLE/20261125/us-west-2/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=d142910f00cef04ef5a098867ce8fedca877f0b8c9e3d9889e6567eb0fd3e4e9";

    fn headers(name: &str) -> Vec<String> {
        match name {
            "content-type" => vec!["application/json".into()],
            "host" => vec!["127.0.0.1:8080".into()],
            "x-amz-date" => vec!["20261125T061133Z".into()],
            _ => vec![],
        }
    }

    fn check(body: &[u8], path: &str, secret: &str, now: OffsetDateTime) -> Result<(), SigV4Error> {
        let auth = parse_authorization(AUTH).expect("sigv4").expect("parses");
        let parts = RequestParts {
            method: "POST",
            raw_path: path,
            raw_query: "b=2&a=x%20y",
            headers: &headers,
            body,
        };
        verify(&auth, &parts, secret, "bedrock", now)
    }

    const PATH: &str = "/model/huggingfacetb.smollm2-135m-instruct-v1%3A0/converse";
    const NOW: OffsetDateTime = time::macros::datetime!(2026-11-25 06:12:00 UTC);

    #[test]
    fn accepts_a_botocore_signature() {
        check(BODY, PATH, "secretEXAMPLE", NOW).expect("botocore's signature verifies");
    }

    #[test]
    fn refuses_a_wrong_secret_body_or_path() {
        assert_eq!(
            check(BODY, PATH, "secretWRONG", NOW),
            Err(SigV4Error::Mismatch)
        );
        assert_eq!(
            check(b"{}", PATH, "secretEXAMPLE", NOW),
            Err(SigV4Error::Mismatch)
        );
        assert_eq!(
            check(BODY, "/model/other-v1%3A0/converse", "secretEXAMPLE", NOW),
            Err(SigV4Error::Mismatch)
        );
    }

    #[test]
    fn refuses_requests_outside_the_clock_skew() {
        let late = time::macros::datetime!(2026-11-25 06:27:00 UTC);
        assert_eq!(
            check(BODY, PATH, "secretEXAMPLE", late),
            Err(SigV4Error::ClockSkew)
        );
        let early = time::macros::datetime!(2026-11-25 05:56:00 UTC);
        assert_eq!(
            check(BODY, PATH, "secretEXAMPLE", early),
            Err(SigV4Error::ClockSkew)
        );
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        for bad in [
            "AWS4-HMAC-SHA256 ",
            "AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request, SignedHeaders=host, Signature=zz",
            "AWS4-HMAC-SHA256 garbage",
        ] {
            assert!(
                matches!(
                    parse_authorization(bad),
                    Some(Err(SigV4Error::Malformed(_)))
                ),
                "{bad}"
            );
        }
        assert!(parse_authorization("Bearer abc").is_none());
    }

    #[test]
    fn canonical_uri_double_encodes_and_normalises() {
        assert_eq!(
            canonical_uri("/model/a%3A0/converse"),
            "/model/a%253A0/converse"
        );
        assert_eq!(canonical_uri("/a/./b/../c/"), "/a/c/");
        assert_eq!(canonical_uri("/"), "/");
    }

    #[test]
    fn canonical_query_sorts_and_reencodes() {
        assert_eq!(canonical_query("b=2&a=x%20y&c"), "a=x%20y&b=2&c=");
    }
}
