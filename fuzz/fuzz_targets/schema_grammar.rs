//! Raw bytes → JSON → `json_schema_grammar`.
//!
//! Whatever the bytes, the conversion must return (a grammar or an error): no panic,
//! abort, stack overflow, unbounded memory or time. Bytes that are not JSON are skipped.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// Triage: `BASALT_FUZZ_VERBOSE=1 <target> file.json` prints what the conversion gave.
fn verbose() -> bool {
    static VERBOSE: OnceLock<bool> = OnceLock::new();
    *VERBOSE.get_or_init(|| std::env::var_os("BASALT_FUZZ_VERBOSE").is_some())
}

fuzz_target!(|data: &[u8]| {
    let Ok(schema) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let result = basalt_engine::chat::json_schema_grammar(&schema);
    if verbose() {
        match &result {
            Ok(grammar) => eprintln!("grammar of {} bytes", grammar.len()),
            Err(e) => eprintln!("refused: {e}"),
        }
    }
    if let Ok(grammar) = result {
        assert!(
            grammar.contains("root ::="),
            "a grammar without a root rule"
        );
    }
});
