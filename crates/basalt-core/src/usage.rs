//! The usage report: calls, errors, throttles, tokens, cost and p50/p99 latency by
//! key, model and inference mode (optionally per hour or per day), and
//! recommendations: on-demand traffic that would be cheaper or steadier on
//! provisioned throughput, and provisioned units that sit idle.

use std::collections::BTreeMap;

use basalt_store::{InvocationSample, ProvisionedRecord};
use serde::Serialize;

use crate::catalog::Catalog;
use crate::config::ProvisionedConfig;
use crate::types::{InferenceType, Outcome};

/// Time buckets of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Whole,
    Minute,
    Hour,
    Day,
}

impl Bucket {
    fn ms(self) -> Option<i64> {
        match self {
            Self::Whole => None,
            Self::Minute => Some(60_000),
            Self::Hour => Some(3_600_000),
            Self::Day => Some(86_400_000),
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageGroup {
    /// Start of the hour or day (unix ms); absent for a whole-period report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_start_ms: Option<i64>,
    pub key_name: String,
    pub model_id: String,
    pub inference_type: String,
    /// The application inference profile the calls were made through (Bedrock's way
    /// of tagging spend per application); absent for calls that named a model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference_profile: Option<String>,
    /// The alias the calls named (`model_id` is the model that answered them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_alias: Option<String>,
    /// The agent whose turns made the calls (InvokeAgent), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The node that served the calls, in a report split per node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub invocations: u64,
    pub errors: u64,
    pub throttles: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    /// Latency percentiles of the successful calls (None when there were none).
    pub p50_latency_ms: Option<u64>,
    pub p99_latency_ms: Option<u64>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageReport {
    pub groups: Vec<UsageGroup>,
    pub recommendations: Vec<String>,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

#[derive(Default)]
struct Acc {
    group: Option<UsageGroup>,
    latencies: Vec<u64>,
}

/// Builds the report over `[since_ms, until_ms)`; `per_node` splits each group by
/// the node that served the calls (a fleet on one store).
#[allow(clippy::too_many_arguments)]
pub fn report(
    samples: &[InvocationSample],
    provisioned: &[ProvisionedRecord],
    catalog: &Catalog,
    provisioned_config: &ProvisionedConfig,
    since_ms: i64,
    until_ms: i64,
    bucket: Bucket,
    per_node: bool,
) -> UsageReport {
    type GroupKey = (
        i64,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let mut groups: BTreeMap<GroupKey, Acc> = BTreeMap::new();
    for s in samples {
        let start = bucket.ms().map(|b| s.at_ms - s.at_ms.rem_euclid(b));
        let agent = s
            .agent_session
            .as_deref()
            .map(|a| a.split('/').next().unwrap_or(a).to_string());
        let node = if per_node {
            Some(s.node.clone().unwrap_or_else(|| "(unrecorded)".into()))
        } else {
            None
        };
        let acc = groups
            .entry((
                start.unwrap_or(0),
                s.key_name.clone(),
                s.model_id.clone(),
                s.inference_type.clone(),
                s.inference_profile.clone(),
                s.model_alias.clone(),
                agent.clone(),
                node.clone(),
            ))
            .or_default();
        let g = acc.group.get_or_insert_with(|| UsageGroup {
            bucket_start_ms: start,
            key_name: s.key_name.clone(),
            model_id: s.model_id.clone(),
            inference_type: s.inference_type.clone(),
            inference_profile: s.inference_profile.clone(),
            model_alias: s.model_alias.clone(),
            agent,
            node,
            invocations: 0,
            errors: 0,
            throttles: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: 0.0,
            p50_latency_ms: None,
            p99_latency_ms: None,
        });
        g.invocations += 1;
        let outcome = Outcome::parse(&s.outcome);
        if outcome != Some(Outcome::Success) {
            g.errors += 1;
        }
        if outcome == Some(Outcome::Throttled) {
            g.throttles += 1;
        }
        g.input_tokens += s.input_tokens;
        g.output_tokens += s.output_tokens;
        g.cost_usd += s.cost_usd;
        if outcome == Some(Outcome::Success) {
            acc.latencies.push(s.latency_ms);
        }
    }
    let groups: Vec<UsageGroup> = groups
        .into_values()
        .filter_map(|mut acc| {
            acc.latencies.sort_unstable();
            let mut g = acc.group?;
            g.p50_latency_ms = percentile(&acc.latencies, 0.50);
            g.p99_latency_ms = percentile(&acc.latencies, 0.99);
            Some(g)
        })
        .collect();
    let recommendations = recommend(
        samples,
        provisioned,
        catalog,
        provisioned_config,
        since_ms,
        until_ms,
    );
    UsageReport {
        groups,
        recommendations,
    }
}

fn recommend(
    samples: &[InvocationSample],
    provisioned: &[ProvisionedRecord],
    catalog: &Catalog,
    config: &ProvisionedConfig,
    since_ms: i64,
    until_ms: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    let hours = ((until_ms - since_ms).max(1) as f64) / 3_600_000.0;
    for entry in catalog.models() {
        let on_demand: Vec<&InvocationSample> = samples
            .iter()
            .filter(|s| {
                s.model_id == entry.id
                    && InferenceType::parse(&s.inference_type) == Some(InferenceType::OnDemand)
            })
            .collect();
        if on_demand.is_empty() || !entry.inference_types.contains(&InferenceType::Provisioned) {
            continue;
        }
        let cost_per_hour = on_demand.iter().map(|s| s.cost_usd).sum::<f64>() / hours;
        let unit_price = entry.provisioned_unit_hour_price;
        if unit_price > 0.0 && cost_per_hour >= unit_price {
            out.push(format!(
                "{}: on-demand spend averaged ${cost_per_hour:.4}/h over the period, at least one provisioned unit (${unit_price:.4}/h): provisioned throughput would be cheaper",
                entry.id
            ));
        }
        let throttles = on_demand
            .iter()
            .filter(|s| Outcome::parse(&s.outcome) == Some(Outcome::Throttled))
            .count();
        let mut latencies: Vec<u64> = on_demand
            .iter()
            .filter(|s| Outcome::parse(&s.outcome) == Some(Outcome::Success))
            .map(|s| s.latency_ms)
            .collect();
        latencies.sort_unstable();
        let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        let spiky =
            matches!((p50, p99), (Some(a), Some(b)) if latencies.len() >= 20 && b > 4 * a.max(1));
        if throttles * 20 > on_demand.len() || spiky {
            out.push(format!(
                "{}: {throttles} of {} on-demand calls were throttled{}: provisioned throughput would be steadier",
                entry.id,
                on_demand.len(),
                match (p50, p99) {
                    (Some(a), Some(b)) if spiky => format!(" and p99 latency was {b} ms against a p50 of {a} ms"),
                    _ => String::new(),
                }
            ));
        }
    }
    for p in provisioned {
        let start = p.created_ms.max(since_ms);
        let reserved_ms = (until_ms - start).max(0) as f64
            * f64::from(p.model_units)
            * f64::from(config.local_slots_per_unit.max(1));
        if reserved_ms < 60_000.0 {
            continue;
        }
        let busy_ms: f64 = samples
            .iter()
            .filter(|s| {
                s.model_id == p.model_id
                    && InferenceType::parse(&s.inference_type) == Some(InferenceType::Provisioned)
                    && s.at_ms >= start
            })
            .map(|s| s.latency_ms as f64)
            .sum();
        let utilisation = busy_ms / reserved_ms;
        if utilisation < 0.10 {
            out.push(format!(
                "provisioned model {} ({} unit(s) on {}) was busy {:.1} % of its reserved time: the units sit idle; delete it or buy fewer",
                p.name,
                p.model_units,
                p.model_id,
                utilisation * 100.0
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(
        at_ms: i64,
        kind: &str,
        outcome: &str,
        latency_ms: u64,
        cost: f64,
    ) -> InvocationSample {
        InvocationSample {
            at_ms,
            key_name: "k".into(),
            model_id: "huggingfacetb.smollm2-135m-instruct-v1:0".into(),
            inference_type: kind.into(),
            outcome: outcome.into(),
            input_tokens: 10,
            output_tokens: 5,
            latency_ms,
            cost_usd: cost,
            inference_profile: None,
            model_alias: None,
            agent_session: None,
            node: None,
        }
    }

    fn catalog() -> Catalog {
        let config = crate::config::ConfigFile::parse(crate::config::DEFAULT_CONFIG)
            .expect("default config");
        Catalog::from_config(&config).expect("catalog")
    }

    #[test]
    fn groups_by_hour_with_percentiles() {
        let hour = 3_600_000;
        let samples: Vec<InvocationSample> = (1..=100)
            .map(|i| sample(i * 1000, "ON_DEMAND", "success", i as u64, 0.0))
            .chain([sample(hour + 5, "ON_DEMAND", "throttled", 0, 0.0)])
            .collect();
        let r = report(
            &samples,
            &[],
            &catalog(),
            &ProvisionedConfig::default(),
            0,
            2 * hour,
            Bucket::Hour,
            false,
        );
        assert_eq!(r.groups.len(), 2);
        assert_eq!(
            (r.groups[0].p50_latency_ms, r.groups[0].p99_latency_ms),
            (Some(50), Some(99))
        );
        assert_eq!(
            (
                r.groups[1].invocations,
                r.groups[1].throttles,
                r.groups[1].p50_latency_ms
            ),
            (1, 1, None)
        );
    }

    #[test]
    fn a_report_per_node_splits_each_group_by_the_serving_node() {
        let on = |node: Option<&str>, at_ms| InvocationSample {
            node: node.map(str::to_owned),
            ..sample(at_ms, "ON_DEMAND", "success", 10, 0.0)
        };
        let samples = vec![
            on(Some("n1"), 1),
            on(Some("n2"), 2),
            on(Some("n1"), 3),
            on(None, 4),
        ];
        let config = ProvisionedConfig::default();
        let whole = report(
            &samples,
            &[],
            &catalog(),
            &config,
            0,
            10,
            Bucket::Whole,
            false,
        );
        assert_eq!(whole.groups.len(), 1);
        assert_eq!(
            (whole.groups[0].invocations, whole.groups[0].node.as_deref()),
            (4, None)
        );
        let split = report(
            &samples,
            &[],
            &catalog(),
            &config,
            0,
            10,
            Bucket::Whole,
            true,
        );
        let by_node: Vec<(Option<&str>, u64)> = split
            .groups
            .iter()
            .map(|g| (g.node.as_deref(), g.invocations))
            .collect();
        assert_eq!(
            by_node,
            vec![(Some("(unrecorded)"), 1), (Some("n1"), 2), (Some("n2"), 1)]
        );
    }

    #[test]
    fn recommends_provisioned_when_on_demand_costs_more_and_flags_idle_units() {
        let hour = 3_600_000;
        // $1 of on-demand calls in one hour against a $0.5/h unit.
        let samples = vec![sample(10, "ON_DEMAND", "success", 100, 1.0)];
        let idle = ProvisionedRecord {
            id: "p".into(),
            name: "idle-one".into(),
            model_id: "huggingfacetb.smollm2-135m-instruct-v1:0".into(),
            desired_model_id: "huggingfacetb.smollm2-135m-instruct-v1:0".into(),
            model_units: 1,
            status: "InService".into(),
            failure_message: None,
            commitment: None,
            commitment_expires_ms: None,
            client_token: None,
            created_ms: 0,
            updated_ms: 0,
        };
        let r = report(
            &samples,
            &[idle],
            &catalog(),
            &ProvisionedConfig::default(),
            0,
            hour,
            Bucket::Whole,
            false,
        );
        assert!(
            r.recommendations
                .iter()
                .any(|m| m.contains("would be cheaper")),
            "{:?}",
            r.recommendations
        );
        assert!(
            r.recommendations
                .iter()
                .any(|m| m.contains("idle-one") && m.contains("idle")),
            "{:?}",
            r.recommendations
        );
    }
}
