//! Key policies: bytes as a policy document (`KeyPolicy::parse`), and a parsed policy
//! asked about requests made from the bytes. Parsing returns a policy or a validation
//! error, checking returns a verdict; no panic, no unbounded time (wildcards included).
#![no_main]

use arbitrary::Arbitrary;
use basalt_core::policy::{KeyPolicy, Request};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    policy: String,
    action: String,
    resources: Vec<String>,
    guardrail: Option<String>,
}

fuzz_target!(|input: Input| {
    let Ok(policy) = KeyPolicy::parse(&input.policy) else {
        return;
    };
    let resources: Vec<String> = input.resources.into_iter().take(8).collect();
    let _ = policy.check(&Request {
        action: &input.action,
        resources: &resources,
        guardrail: input.guardrail.as_deref(),
    });
});
