//! SigV4: an `Authorization` header, headers, a method, path, query and body from the
//! bytes, through the parser, the header checks and the verifier. Whatever they are,
//! each returns (`Ok` or an error): no panic, no unbounded time.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    authorization: String,
    headers: Vec<(String, String)>,
    method: String,
    path: String,
    query: String,
    body: Vec<u8>,
    /// Seconds from the start of 2026; the request's `x-amz-date` comes from the headers.
    now: u32,
}

fuzz_target!(|input: Input| {
    let Some(parsed) = basalt_edge::sigv4::parse_authorization(&input.authorization) else {
        return;
    };
    let Ok(auth) = parsed else { return };
    let lookup = |name: &str| -> Vec<String> {
        input
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    };
    let now = time::OffsetDateTime::from_unix_timestamp(1_767_225_600 + i64::from(input.now))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let _ = basalt_edge::sigv4::check_headers(&auth, &lookup, "bedrock", now);
    let request = basalt_edge::sigv4::RequestParts {
        method: &input.method,
        raw_path: &input.path,
        raw_query: &input.query,
        headers: &lookup,
        body: &input.body,
    };
    let _ = basalt_edge::sigv4::verify(&auth, &request, "fuzz-secret", "bedrock", now);
});
