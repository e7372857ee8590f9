//! Parsing and validation of a customization job's `hyperParameters`
//! (a string → string map, as Bedrock sends them).

use std::collections::BTreeMap;

/// Every accepted `hyperParameters` key.
pub const HYPER_PARAMETER_NAMES: &[&str] = &[
    "epochCount",
    "batchSize",
    "learningRate",
    "learningRateWarmupSteps",
    "loraRank",
    "loraAlpha",
    "loraTargetModules",
    "loraLayers",
    "maxSequenceLength",
    "seed",
    "weightDecay",
];

/// Modules `LoRA` may adapt, in their normalised order.
pub const LORA_TARGET_MODULES: &[&str] = &[
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// Validated training hyperparameters.
#[derive(Debug, Clone, PartialEq)]
pub struct HyperParameters {
    /// `epochCount`, 1..=10.
    pub epoch_count: u32,
    /// `batchSize`, 1..=64.
    pub batch_size: u32,
    /// `learningRate`, 1e-6..=0.1.
    pub learning_rate: f64,
    /// `learningRateWarmupSteps`, 0..=250.
    pub warmup_steps: u32,
    /// `loraRank`, 1..=64.
    pub lora_rank: u32,
    /// `loraAlpha`, greater than 0 and at most 1024.
    pub lora_alpha: f32,
    /// `loraTargetModules`, a comma-separated subset of [`LORA_TARGET_MODULES`].
    pub lora_target_modules: Vec<String>,
    /// `loraLayers`: adapt only the top N layers; 0 means all. 0..=1000.
    pub lora_layers: u32,
    /// `maxSequenceLength`, 16..=4096.
    pub max_sequence_length: u32,
    /// `seed`, `0..=u32::MAX`.
    pub seed: u64,
    /// `weightDecay`, 0..=1.
    pub weight_decay: f64,
}

impl Default for HyperParameters {
    fn default() -> Self {
        HyperParameters {
            epoch_count: 2,
            batch_size: 1,
            learning_rate: 1e-4,
            warmup_steps: 0,
            lora_rank: 8,
            lora_alpha: 16.0,
            lora_target_modules: vec!["q_proj".to_string(), "v_proj".to_string()],
            lora_layers: 0,
            max_sequence_length: 512,
            seed: 42,
            weight_decay: 0.0,
        }
    }
}

/// Parses `hyperParameters`, filling in defaults for absent keys.
///
/// # Errors
/// The first problem found: an unknown key (checked first), then a badly formed or
/// out-of-range value, in key order.
pub fn parse_hyper_parameters(map: &BTreeMap<String, String>) -> Result<HyperParameters, String> {
    if let Some(key) = map
        .keys()
        .find(|k| !HYPER_PARAMETER_NAMES.contains(&k.as_str()))
    {
        return Err(format!(
            "unknown hyperParameters key {key:?} (accepted: {})",
            HYPER_PARAMETER_NAMES.join(", ")
        ));
    }
    let mut hp = HyperParameters::default();
    for (key, raw) in map {
        let raw = raw.as_str();
        match key.as_str() {
            "epochCount" => hp.epoch_count = int_in(key, raw, 1, 10)?,
            "batchSize" => hp.batch_size = int_in(key, raw, 1, 64)?,
            "learningRate" => hp.learning_rate = float_in(key, raw, 1e-6, 0.1)?,
            "learningRateWarmupSteps" => hp.warmup_steps = int_in(key, raw, 0, 250)?,
            "loraRank" => hp.lora_rank = int_in(key, raw, 1, 64)?,
            "loraAlpha" => hp.lora_alpha = lora_alpha(raw)?,
            "loraTargetModules" => hp.lora_target_modules = target_modules(raw)?,
            "loraLayers" => hp.lora_layers = int_in(key, raw, 0, 1000)?,
            "maxSequenceLength" => hp.max_sequence_length = int_in(key, raw, 16, 4096)?,
            "seed" => hp.seed = int_in(key, raw, 0, u64::from(u32::MAX))?,
            "weightDecay" => hp.weight_decay = float_in(key, raw, 0.0, 1.0)?,
            _ => {} // unreachable: unknown keys were rejected above
        }
    }
    Ok(hp)
}

/// Parses a plain decimal integer (optional leading '-', no '+', no whitespace) within `min..=max`.
fn int_in<T: TryFrom<u64>>(key: &str, raw: &str, min: u64, max: u64) -> Result<T, String> {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "hyperParameters.{key} must be an integer (got {raw:?})"
        ));
    }
    let out_of_range =
        || format!("hyperParameters.{key} must be between {min} and {max} (got {raw:?})");
    if raw.starts_with('-') {
        return Err(out_of_range());
    }
    let value: u64 = digits.parse().map_err(|_| out_of_range())?;
    if value < min || value > max {
        return Err(out_of_range());
    }
    T::try_from(value).map_err(|_| out_of_range())
}

/// Parses a finite decimal number such as `0.0001` or `1e-4` (no '+', whitespace, NaN or inf).
fn parse_float(key: &str, raw: &str) -> Result<f64, String> {
    let well_formed = !raw.starts_with('+')
        && raw.bytes().any(|b| b.is_ascii_digit())
        && raw
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
    match raw.parse::<f64>() {
        Ok(value) if well_formed && value.is_finite() => Ok(value),
        _ => Err(format!(
            "hyperParameters.{key} must be a finite number (got {raw:?})"
        )),
    }
}

fn float_in(key: &str, raw: &str, min: f64, max: f64) -> Result<f64, String> {
    let value = parse_float(key, raw)?;
    if value < min || value > max {
        return Err(format!(
            "hyperParameters.{key} must be between {min} and {max} (got {raw:?})"
        ));
    }
    Ok(value)
}

fn lora_alpha(raw: &str) -> Result<f32, String> {
    let value = parse_float("loraAlpha", raw)?;
    if value <= 0.0 || value > 1024.0 {
        return Err(format!(
            "hyperParameters.loraAlpha must be greater than 0 and at most 1024 (got {raw:?})"
        ));
    }
    #[allow(clippy::cast_possible_truncation)] // 0 < value <= 1024: only precision is lost
    Ok(value as f32)
}

/// Parses a comma-separated module list; removes duplicates and sorts into [`LORA_TARGET_MODULES`] order.
fn target_modules(raw: &str) -> Result<Vec<String>, String> {
    let allowed = LORA_TARGET_MODULES.join(", ");
    let mut chosen = [false; LORA_TARGET_MODULES.len()];
    for name in raw.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(format!(
                "hyperParameters.loraTargetModules has an empty name (got {raw:?}; allowed: {allowed})"
            ));
        }
        match LORA_TARGET_MODULES.iter().position(|m| *m == name) {
            Some(i) => chosen[i] = true,
            None => {
                return Err(format!(
                "hyperParameters.loraTargetModules: unknown module {name:?} (allowed: {allowed})"
            ))
            }
        }
    }
    Ok(LORA_TARGET_MODULES
        .iter()
        .zip(chosen)
        .filter(|(_, on)| *on)
        .map(|(m, _)| (*m).to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<HyperParameters, String> {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_hyper_parameters(&map)
    }

    fn err(key: &str, value: &str) -> String {
        parse(&[(key, value)]).expect_err("an error")
    }

    #[test]
    fn defaults() {
        let hp = parse(&[]).expect("a value");
        assert_eq!(hp, HyperParameters::default());
        assert_eq!(hp.epoch_count, 2);
        assert_eq!(hp.batch_size, 1);
        assert_eq!(hp.learning_rate, 1e-4);
        assert_eq!(hp.warmup_steps, 0);
        assert_eq!(hp.lora_rank, 8);
        assert_eq!(hp.lora_alpha, 16.0);
        assert_eq!(hp.lora_target_modules, vec!["q_proj", "v_proj"]);
        assert_eq!(hp.lora_layers, 0);
        assert_eq!(hp.max_sequence_length, 512);
        assert_eq!(hp.seed, 42);
        assert_eq!(hp.weight_decay, 0.0);
    }

    #[test]
    fn all_keys_parse() {
        let hp = parse(&[
            ("epochCount", "3"),
            ("batchSize", "8"),
            ("learningRate", "2e-5"),
            ("learningRateWarmupSteps", "10"),
            ("loraRank", "16"),
            ("loraAlpha", "32.5"),
            ("loraTargetModules", "v_proj,q_proj,o_proj"),
            ("loraLayers", "4"),
            ("maxSequenceLength", "1024"),
            ("seed", "4294967295"),
            ("weightDecay", "0.01"),
        ])
        .expect("a value");
        let expected = HyperParameters {
            epoch_count: 3,
            batch_size: 8,
            learning_rate: 2e-5,
            warmup_steps: 10,
            lora_rank: 16,
            lora_alpha: 32.5,
            lora_target_modules: vec!["q_proj".into(), "v_proj".into(), "o_proj".into()],
            lora_layers: 4,
            max_sequence_length: 1024,
            seed: u64::from(u32::MAX),
            weight_decay: 0.01,
        };
        assert_eq!(hp, expected);
        assert_eq!(HYPER_PARAMETER_NAMES.len(), 11);
    }

    #[test]
    fn integer_ranges_inclusive() {
        let cases: &[(&str, u64, u64)] = &[
            ("epochCount", 1, 10),
            ("batchSize", 1, 64),
            ("learningRateWarmupSteps", 0, 250),
            ("loraRank", 1, 64),
            ("loraLayers", 0, 1000),
            ("maxSequenceLength", 16, 4096),
            ("seed", 0, u64::from(u32::MAX)),
        ];
        for &(key, min, max) in cases {
            assert!(parse(&[(key, &min.to_string())]).is_ok(), "{key}={min}");
            assert!(parse(&[(key, &max.to_string())]).is_ok(), "{key}={max}");
            let over = (max + 1).to_string();
            assert_eq!(
                err(key, &over),
                format!("hyperParameters.{key} must be between {min} and {max} (got \"{over}\")")
            );
            if min > 0 {
                assert!(
                    err(key, &(min - 1).to_string()).contains("must be between"),
                    "{key}"
                );
            }
            assert!(err(key, "-1").contains("must be between"), "{key}");
        }
        assert_eq!(
            err("epochCount", "50"),
            "hyperParameters.epochCount must be between 1 and 10 (got \"50\")"
        );
        assert!(err("seed", "99999999999999999999999").contains("must be between 0 and 4294967295"));
        assert_eq!(
            parse(&[("epochCount", "05")]).expect("a value").epoch_count,
            5
        );
    }

    #[test]
    fn integer_formats_rejected() {
        for bad in ["2.0", "+2", " 2", "2 ", "", "two", "1e1", "0x2", "-"] {
            assert_eq!(
                err("epochCount", bad),
                format!("hyperParameters.epochCount must be an integer (got {bad:?})")
            );
        }
    }

    #[test]
    fn float_formats() {
        for (raw, value) in [
            ("0.0001", 1e-4),
            ("1e-4", 1e-4),
            ("1E-4", 1e-4),
            ("0.1", 0.1),
            ("1e-6", 1e-6),
            (".001", 0.001),
        ] {
            assert_eq!(
                parse(&[("learningRate", raw)])
                    .expect("a value")
                    .learning_rate,
                value,
                "{raw}"
            );
        }
        for bad in [
            "NaN", "nan", "inf", "-inf", "infinity", "+0.001", " 0.001", "0.001 ", "", "e", ".",
            "1e999", "0,001",
        ] {
            assert_eq!(
                err("learningRate", bad),
                format!("hyperParameters.learningRate must be a finite number (got {bad:?})"),
                "{bad}"
            );
        }
    }

    #[test]
    fn float_ranges() {
        assert_eq!(
            err("learningRate", "0.5"),
            "hyperParameters.learningRate must be between 0.000001 and 0.1 (got \"0.5\")"
        );
        assert!(err("learningRate", "1e-7").contains("between 0.000001 and 0.1"));
        assert!(err("learningRate", "0").contains("must be between"));
        assert_eq!(
            parse(&[("weightDecay", "1")])
                .expect("a value")
                .weight_decay,
            1.0
        );
        assert_eq!(
            parse(&[("weightDecay", "0")])
                .expect("a value")
                .weight_decay,
            0.0
        );
        assert_eq!(
            err("weightDecay", "1.5"),
            "hyperParameters.weightDecay must be between 0 and 1 (got \"1.5\")"
        );
        assert!(err("weightDecay", "-0.1").contains("between 0 and 1"));
    }

    #[test]
    fn lora_alpha_range() {
        assert_eq!(
            parse(&[("loraAlpha", "1024")]).expect("a value").lora_alpha,
            1024.0
        );
        assert_eq!(
            parse(&[("loraAlpha", "0.5")]).expect("a value").lora_alpha,
            0.5
        );
        assert_eq!(
            parse(&[("loraAlpha", "8")]).expect("a value").lora_alpha,
            8.0
        );
        for bad in ["0", "-1", "1024.5", "2048"] {
            assert_eq!(
                err("loraAlpha", bad),
                format!("hyperParameters.loraAlpha must be greater than 0 and at most 1024 (got {bad:?})")
            );
        }
        assert!(err("loraAlpha", "NaN").contains("must be a finite number"));
    }

    #[test]
    fn target_modules_normalised() {
        let modules =
            |raw: &str| parse(&[("loraTargetModules", raw)]).map(|hp| hp.lora_target_modules);
        assert_eq!(
            modules("down_proj,q_proj,q_proj, k_proj ").expect("a value"),
            vec!["q_proj", "k_proj", "down_proj"]
        );
        let reversed: Vec<&str> = LORA_TARGET_MODULES.iter().rev().copied().collect();
        assert_eq!(
            modules(&reversed.join(",")).expect("a value"),
            LORA_TARGET_MODULES
        );
        assert_eq!(modules("gate_proj").expect("a value"), vec!["gate_proj"]);
        let allowed = "allowed: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj";
        for bad in ["", "q_proj,", "q_proj,,v_proj", " "] {
            let e = modules(bad).expect_err("an error");
            assert!(
                e.starts_with("hyperParameters.loraTargetModules has an empty name")
                    && e.contains(allowed),
                "{e}"
            );
        }
        let e = modules("q_proj,lm_head").expect_err("an error");
        assert_eq!(
            e,
            format!("hyperParameters.loraTargetModules: unknown module \"lm_head\" ({allowed})")
        );
        assert!(modules("Q_PROJ")
            .expect_err("an error")
            .contains("unknown module \"Q_PROJ\""));
    }

    #[test]
    fn unknown_keys_rejected_first() {
        let e = parse(&[("epochCount", "99"), ("epochs", "2")]).expect_err("an error");
        assert!(
            e.starts_with(
                "unknown hyperParameters key \"epochs\" (accepted: epochCount, batchSize, "
            ),
            "{e}"
        );
        assert!(e.ends_with("seed, weightDecay)"), "{e}");
        assert!(err("EpochCount", "2").contains("unknown hyperParameters key \"EpochCount\""));
    }

    #[test]
    fn first_error_returned() {
        let e = parse(&[("batchSize", "0"), ("epochCount", "0")]).expect_err("an error");
        assert!(e.starts_with("hyperParameters.batchSize"), "{e}");
    }
}
