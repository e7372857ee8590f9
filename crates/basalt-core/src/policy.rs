//! Per-key permissions: an IAM-style identity policy attached to a key.
//!
//! The policy language is IAM's, reduced to what Basalt can evaluate exactly:
//! statements with `Effect` (`Allow` / `Deny`), `Action` and `Resource` (a string or a
//! list; `*` and `?` wildcards; actions match without regard to case, resources with
//! it) and an optional `Condition` on `bedrock:GuardrailIdentifier` (operators
//! `StringEquals`, `StringNotEquals`, `StringLike`, `StringNotLike`, `Null`). A request
//! is allowed when a statement allows its action on every resource it names and no
//! statement denies it (an explicit deny wins); a key without a policy may do
//! everything (as before policies existed). Anything else in a policy (`NotAction`,
//! `NotResource`, `Principal`, other condition keys or operators) is refused when the
//! policy is set, naming what is not supported — never silently ignored.

use serde_json::Value;

use crate::CoreError;

/// The condition key naming the guardrail an invocation applies (`<guardrail ARN>:<version>`).
pub const GUARDRAIL_KEY: &str = "bedrock:GuardrailIdentifier";

/// The largest policy accepted, in bytes (IAM allows 6,144 characters for an inline user
/// policy; Basalt a little more).
pub const MAX_POLICY_BYTES: usize = 10_240;
/// The most statements in one policy.
pub const MAX_STATEMENTS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    StringEquals,
    StringNotEquals,
    StringLike,
    StringNotLike,
    Null,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Condition {
    operator: Operator,
    values: Vec<String>,
}

impl Condition {
    /// IAM's rule: a key absent from the request matches no value, so only the negated
    /// operators (and `Null: true`) hold for it.
    fn holds(&self, value: Option<&str>) -> bool {
        match (self.operator, value) {
            (Operator::Null, v) => self
                .values
                .iter()
                .any(|want| (want == "true") == v.is_none()),
            (Operator::StringEquals, Some(v)) => self.values.iter().any(|w| w == v),
            (Operator::StringLike, Some(v)) => self.values.iter().any(|w| glob(w, v, false)),
            (Operator::StringNotEquals, Some(v)) => self.values.iter().all(|w| w != v),
            (Operator::StringNotLike, Some(v)) => self.values.iter().all(|w| !glob(w, v, false)),
            (Operator::StringEquals | Operator::StringLike, None) => false,
            (Operator::StringNotEquals | Operator::StringNotLike, None) => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Statement {
    effect: Effect,
    actions: Vec<String>,
    resources: Vec<String>,
    /// Conditions on the guardrail (all must hold).
    guardrail: Vec<Condition>,
}

impl Statement {
    fn applies(&self, action: &str, resource: &str, guardrail: Option<&str>) -> bool {
        self.actions.iter().any(|a| glob(a, action, true))
            && self.resources.iter().any(|r| glob(r, resource, false))
            && self.guardrail.iter().all(|c| c.holds(guardrail))
    }
}

/// A key's policy, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    statements: Vec<Statement>,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// A statement denies it.
    Explicit { resource: String },
    /// No statement allows it on this resource.
    NotAllowed { resource: String },
}

/// A request as the policy sees it: its action, the ARNs it acts on (`*` for none in
/// particular) and, for an invocation, the guardrail it applies.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub action: &'a str,
    pub resources: &'a [String],
    pub guardrail: Option<&'a str>,
}

impl KeyPolicy {
    /// A policy that allows nothing.
    pub fn deny_all() -> Self {
        Self {
            statements: Vec::new(),
        }
    }

    /// Parses and checks a policy document.
    pub fn parse(text: &str) -> Result<Self, CoreError> {
        let invalid = |m: String| CoreError::Validation(format!("invalid key policy: {m}"));
        if text.len() > MAX_POLICY_BYTES {
            return Err(invalid(format!(
                "it has {} bytes; at most {MAX_POLICY_BYTES} are accepted",
                text.len()
            )));
        }
        let doc: Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let Value::Object(doc) = doc else {
            return Err(invalid("a policy is a JSON object".into()));
        };
        for key in doc.keys() {
            if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
                return Err(invalid(format!(
                    "{key:?} is not supported (Version, Id, Statement are)"
                )));
            }
        }
        let statements = match doc.get("Statement") {
            Some(Value::Array(list)) => list.clone(),
            Some(one @ Value::Object(_)) => vec![one.clone()],
            _ => {
                return Err(invalid(
                    "Statement must be an object or a list of them".into(),
                ))
            }
        };
        if statements.len() > MAX_STATEMENTS {
            return Err(invalid(format!(
                "{} statements; at most {MAX_STATEMENTS}",
                statements.len()
            )));
        }
        let statements = statements
            .iter()
            .enumerate()
            .map(|(i, s)| statement(s).map_err(|m| invalid(format!("Statement[{i}]: {m}"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { statements })
    }

    /// Whether the policy lets `request` through; the first denied resource otherwise.
    pub fn check(&self, request: &Request<'_>) -> Result<(), Denial> {
        let any = ["*".to_string()];
        let resources = if request.resources.is_empty() {
            &any[..]
        } else {
            request.resources
        };
        for resource in resources {
            let applying = |effect: Effect| {
                self.statements.iter().any(|s| {
                    s.effect == effect && s.applies(request.action, resource, request.guardrail)
                })
            };
            if applying(Effect::Deny) {
                return Err(Denial::Explicit {
                    resource: resource.clone(),
                });
            }
            if !applying(Effect::Allow) {
                return Err(Denial::NotAllowed {
                    resource: resource.clone(),
                });
            }
        }
        Ok(())
    }
}

fn strings(value: &Value, what: &str) -> Result<Vec<String>, String> {
    let list = match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{what} must hold strings"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(format!("{what} must be a string or a list of strings")),
    };
    if list.is_empty() {
        return Err(format!("{what} is empty"));
    }
    Ok(list)
}

fn statement(value: &Value) -> Result<Statement, String> {
    let Value::Object(s) = value else {
        return Err("a statement is a JSON object".into());
    };
    for key in s.keys() {
        if !matches!(
            key.as_str(),
            "Sid" | "Effect" | "Action" | "Resource" | "Condition"
        ) {
            return Err(format!(
                "{key:?} is not supported (Sid, Effect, Action, Resource and Condition are)"
            ));
        }
    }
    let effect = match s.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        _ => return Err("Effect must be \"Allow\" or \"Deny\"".into()),
    };
    let actions = strings(s.get("Action").ok_or("Action is required")?, "Action")?;
    for action in &actions {
        let valid = action == "*"
            || action.split_once(':').is_some_and(|(service, name)| {
                !service.is_empty()
                    && !name.is_empty()
                    && service
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '*')
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?')
            });
        if !valid {
            return Err(format!(
                "action {action:?} is not of the form service:Name (wildcards * and ? allowed)"
            ));
        }
    }
    let resources = strings(s.get("Resource").ok_or("Resource is required")?, "Resource")?;
    let mut guardrail = Vec::new();
    if let Some(conditions) = s.get("Condition") {
        let Value::Object(conditions) = conditions else {
            return Err("Condition must be an object".into());
        };
        for (operator, keys) in conditions {
            let operator = match operator.as_str() {
                "StringEquals" => Operator::StringEquals,
                "StringNotEquals" => Operator::StringNotEquals,
                "StringLike" => Operator::StringLike,
                "StringNotLike" => Operator::StringNotLike,
                "Null" => Operator::Null,
                other => {
                    return Err(format!(
                        "condition operator {other:?} is not supported (StringEquals, StringNotEquals, StringLike, StringNotLike, Null are)"
                    ))
                }
            };
            let Value::Object(keys) = keys else {
                return Err("a condition operator maps condition keys to values".into());
            };
            for (key, values) in keys {
                if key != GUARDRAIL_KEY {
                    return Err(format!(
                        "condition key {key:?} is not supported ({GUARDRAIL_KEY} is)"
                    ));
                }
                let values = strings(values, key)?;
                if operator == Operator::Null && values.iter().any(|v| v != "true" && v != "false")
                {
                    return Err("Null takes \"true\" or \"false\"".into());
                }
                guardrail.push(Condition { operator, values });
            }
        }
    }
    Ok(Statement {
        effect,
        actions,
        resources,
        guardrail,
    })
}

/// IAM's wildcard match: `*` any run of characters, `?` one character.
pub fn glob(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let fold = |c: char| {
        if ignore_case {
            c.to_ascii_lowercase()
        } else {
            c
        }
    };
    let p: Vec<char> = pattern.chars().map(fold).collect();
    let t: Vec<char> = text.chars().map(fold).collect();
    // Iterative matching with one backtrack point: linear in practice, never exponential.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(
        action: &'a str,
        resources: &'a [String],
        guardrail: Option<&'a str>,
    ) -> Request<'a> {
        Request {
            action,
            resources,
            guardrail,
        }
    }

    const MODEL: &str =
        "arn:aws:bedrock:us-east-1::foundation-model/huggingfacetb.smollm2-135m-instruct-v1:0";
    const OTHER: &str = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-v2";

    #[test]
    fn globs_match_like_iam() {
        assert!(glob(
            "bedrock:Invoke*",
            "bedrock:InvokeModelWithResponseStream",
            true
        ));
        assert!(glob("BEDROCK:invokemodel", "bedrock:InvokeModel", true));
        assert!(!glob("bedrock:InvokeModel", "bedrock:InvokeModelX", true));
        assert!(glob("arn:*:foundation-model/hugging*", MODEL, false));
        assert!(
            !glob("arn:*:foundation-model/Hugging*", MODEL, false),
            "resources keep case"
        );
        assert!(glob("a?c", "abc", false) && !glob("a?c", "ac", false));
        assert!(glob("*", "", false) && glob("**", "x", false));
        let long = "a".repeat(5_000);
        let pattern = "*a".repeat(50) + "b";
        assert!(
            !glob(&pattern, &long, false),
            "a hostile pattern ends (no backtracking blow-up)"
        );
    }

    #[test]
    fn an_allow_lets_through_only_what_it_names_and_a_deny_wins() {
        let policy = KeyPolicy::parse(&format!(
            r#"{{"Version": "2012-10-17", "Statement": [
                {{"Effect": "Allow", "Action": ["bedrock:InvokeModel*", "bedrock:Get*"], "Resource": "arn:aws:bedrock:*::foundation-model/huggingfacetb.*"}},
                {{"Effect": "Allow", "Action": "bedrock:ListGuardrails", "Resource": "*"}},
                {{"Effect": "Deny", "Action": "bedrock:InvokeModelWithResponseStream", "Resource": "{MODEL}"}}
            ]}}"#
        ))
        .expect("valid");
        let model = [MODEL.to_string()];
        let other = [OTHER.to_string()];
        assert_eq!(
            policy.check(&request("bedrock:InvokeModel", &model, None)),
            Ok(())
        );
        assert_eq!(
            policy.check(&request("bedrock:InvokeModel", &other, None)),
            Err(Denial::NotAllowed {
                resource: OTHER.into()
            })
        );
        assert_eq!(
            policy.check(&request(
                "bedrock:InvokeModelWithResponseStream",
                &model,
                None
            )),
            Err(Denial::Explicit {
                resource: MODEL.into()
            })
        );
        assert_eq!(
            policy.check(&request("bedrock:ListGuardrails", &[], None)),
            Ok(())
        );
        assert!(
            policy
                .check(&request("bedrock:CreateGuardrail", &[], None))
                .is_err(),
            "an action no statement names is refused"
        );
        let both = [MODEL.to_string(), OTHER.to_string()];
        assert!(
            policy
                .check(&request("bedrock:InvokeModel", &both, None))
                .is_err(),
            "every resource of a request must be allowed"
        );
    }

    #[test]
    fn a_guardrail_condition_requires_that_guardrail() {
        let g = "arn:aws:bedrock:us-east-1:000000000000:guardrail/abc123";
        let policy = KeyPolicy::parse(&format!(
            r#"{{"Statement": [{{"Effect": "Allow", "Action": "bedrock:InvokeModel", "Resource": "*",
                "Condition": {{"StringEquals": {{"bedrock:GuardrailIdentifier": "{g}:1"}}}}}},
              {{"Effect": "Deny", "Action": "bedrock:InvokeModel", "Resource": "*",
                "Condition": {{"Null": {{"bedrock:GuardrailIdentifier": "true"}}}}}}]}}"#
        ))
        .expect("valid");
        let model = [MODEL.to_string()];
        assert_eq!(
            policy.check(&request(
                "bedrock:InvokeModel",
                &model,
                Some(&format!("{g}:1"))
            )),
            Ok(())
        );
        assert_eq!(
            policy.check(&request("bedrock:InvokeModel", &model, None)),
            Err(Denial::Explicit {
                resource: MODEL.into()
            }),
            "no guardrail: the Null condition's deny applies"
        );
        assert_eq!(
            policy.check(&request(
                "bedrock:InvokeModel",
                &model,
                Some(&format!("{g}:2"))
            )),
            Err(Denial::NotAllowed {
                resource: MODEL.into()
            }),
            "another version of the guardrail is not the one required"
        );
    }

    #[test]
    fn what_cannot_be_evaluated_is_refused_with_its_name() {
        for (policy, named) in [
            (
                r#"{"Statement": {"Effect": "Allow", "NotAction": "x:y", "Resource": "*"}}"#,
                "NotAction",
            ),
            (
                r#"{"Statement": [{"Effect": "Permit", "Action": "x:y", "Resource": "*"}]}"#,
                "Effect",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Action": "InvokeModel", "Resource": "*"}]}"#,
                "service:Name",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Action": "x:y"}]}"#,
                "Resource is required",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Action": "x:y", "Resource": "*", "Condition": {"IpAddress": {"aws:SourceIp": "1.2.3.4"}}}]}"#,
                "IpAddress",
            ),
            (
                r#"{"Statement": [{"Effect": "Allow", "Action": "x:y", "Resource": "*", "Condition": {"StringEquals": {"aws:username": "a"}}}]}"#,
                "aws:username",
            ),
            (r#"{"Statement": [], "Principal": "*"}"#, "Principal"),
            (r#"[1, 2]"#, "JSON object"),
            ("not json", "invalid key policy"),
        ] {
            match KeyPolicy::parse(policy) {
                Err(CoreError::Validation(m)) => assert!(m.contains(named), "{policy}: {m}"),
                other => panic!("{policy} must be refused, got {other:?}"),
            }
        }
        let huge = format!(
            r#"{{"Statement": [{{"Effect": "Allow", "Action": "x:y", "Resource": "{}"}}]}}"#,
            "a".repeat(MAX_POLICY_BYTES)
        );
        assert!(
            KeyPolicy::parse(&huge).is_err(),
            "an oversized policy is refused"
        );
    }
}
