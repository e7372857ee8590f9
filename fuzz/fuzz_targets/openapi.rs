//! Agents' action-group schemas: bytes as an inline OpenAPI 3 payload (JSON or YAML),
//! through `parse_api_schema`. It returns the operations or an error naming the path
//! of what it refuses; no panic, no unbounded time or memory (YAML aliases included).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(payload) = std::str::from_utf8(data) else {
        return;
    };
    let _ = basalt_core::agents::openapi::parse_api_schema(payload);
});
