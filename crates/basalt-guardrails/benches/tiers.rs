//! Latency of the pattern tiers on a 1,000-character input, in process:
//! `cargo bench -p basalt-guardrails --bench tiers`. Prints p50/p99 per tier.

use std::time::Instant;

use basalt_guardrails::policy::{ManagedWordsRule, PiiRule, RegexRule, WordRule};
use basalt_guardrails::{
    CompiledGuardrail, ConfiguredAction, GuardrailPolicy, PiiType, Segment, Source,
};

const TEXT: &str = "Hello, my name is Maria Gonzalez and I am writing about my order from last week. \
You can reach me at maria.gonzalez@example.com or on (212) 736-5000 after six. The package was sent to \
221 Baker Street, Springfield, IL 62704, but the tracking page at https://shop.example.com/track?id=88 \
still says pending. My card ending 1111 was charged twice, and my account number 12345678901 shows both \
charges. Could you please refund one of them? I have attached the receipt, ticket TCK-4821, and a photo \
of the damaged box. The courier left it in the rain, which is frankly not acceptable for a parcel marked \
fragile. I would also like to know whether the replacement can be delivered to my office instead, since \
nobody is home during the day. Thank you for your help, and have a good afternoon. Best regards, Maria.";

fn rule<T>(make: impl Fn(ConfiguredAction) -> T) -> T {
    make(ConfiguredAction::Block)
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn measure(name: &str, policy: GuardrailPolicy) {
    let compiled = CompiledGuardrail::compile(policy).expect("valid policy");
    let input: String = format!("{TEXT} {TEXT}").chars().take(1000).collect();
    let segments = vec![Segment::guarded(input)];
    let plan = compiled.plan(Source::Input, &segments);
    for _ in 0..50 {
        compiled.evaluate(Source::Input, &segments, &plan, &[]);
    }
    let mut samples: Vec<f64> = (0..2000)
        .map(|_| {
            let start = Instant::now();
            let verdict = compiled.evaluate(Source::Input, &segments, &plan, &[]);
            std::hint::black_box(verdict);
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let p50 = percentile(&mut samples, 0.50);
    let p99 = percentile(&mut samples, 0.99);
    println!("{name:<44} p50 {p50:>7.3} ms   p99 {p99:>7.3} ms");
}

fn main() {
    let words: Vec<WordRule> = (0..1000)
        .map(|i| WordRule {
            text: format!("blocked phrase {i}"),
            sides: Default::default(),
        })
        .collect();
    let managed = vec![rule(|_| ManagedWordsRule {
        kind: basalt_guardrails::policy::ManagedWordList::Profanity,
        sides: Default::default(),
    })];
    let regexes: Vec<RegexRule> = [
        r"TCK-\d{4}",
        r"ORD-[A-Z0-9]{8}",
        r"\b[A-Z]{3}-\d{6}\b",
        r"(?i)internal use only",
        r"\bEMP\d{5}\b",
    ]
    .iter()
    .enumerate()
    .map(|(i, p)| RegexRule {
        name: format!("r{i}"),
        description: None,
        pattern: (*p).into(),
        action: ConfiguredAction::Anonymize,
        sides: Default::default(),
    })
    .collect();
    let pii: Vec<PiiRule> = PiiType::ALL
        .iter()
        .map(|&kind| PiiRule {
            kind,
            action: ConfiguredAction::Anonymize,
            sides: Default::default(),
        })
        .collect();
    println!("1,000 characters of input (a support e-mail with PII), 2,000 evaluations per tier");
    measure(
        "words (1,000 custom + managed profanity)",
        GuardrailPolicy {
            words: words.clone(),
            managed_word_lists: managed.clone(),
            ..Default::default()
        },
    );
    measure(
        "custom regexes (5)",
        GuardrailPolicy {
            regexes: regexes.clone(),
            ..Default::default()
        },
    );
    measure(
        "PII, all 31 types",
        GuardrailPolicy {
            pii_entities: pii.clone(),
            ..Default::default()
        },
    );
    measure(
        "words + regexes + all PII",
        GuardrailPolicy {
            words,
            managed_word_lists: managed,
            regexes,
            pii_entities: pii,
            ..Default::default()
        },
    );
}
