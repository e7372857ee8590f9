//! Per-key permissions and the audit log, for every API route, in one place: both
//! ways into the routes (the authentication middleware and [`crate::call_as`], the
//! console's way) call [`authorize`] before the handler and [`audit`] after it.
//!
//! [`targets`] says what a request does (its IAM action, the resources it acts on,
//! the guardrail it applies, whether it changes anything); here the resources become
//! ARNs and the key's policy ([`basalt_core::policy`]) decides. A refusal is Bedrock's
//! `AccessDeniedException` (403) worded as AWS words it, naming the action and the
//! resource; the OpenAI and Anthropic dialects answer their own 403 shapes. A request
//! no route matches is refused for a key with a policy (nothing is allowed by
//! accident) and left to the router's 404 otherwise.

pub mod targets;

use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use basalt_core::audit::AuditRecord;
use basalt_core::keys::Principal;
use basalt_core::policy::{Denial, Request as PolicyRequest};

use crate::auth::Dialect;
use crate::error::{BedrockError, OpenAiError};
use crate::AppState;
use targets::{Resource, Target};

/// A request that may go on: what to write to the audit log once it is answered.
#[derive(Debug, Clone)]
pub struct Authorized {
    pub action: &'static str,
    /// The resources as ARNs, comma-separated (`*` for none in particular).
    pub resources: String,
    pub mutates: bool,
}

/// The ARN of a resource in this server's region and account.
pub fn arn(resource: &Resource, region: &str, account: &str) -> String {
    let scoped = |kind: &str, id: &str| {
        if id.starts_with("arn:") {
            id.to_owned()
        } else {
            format!("arn:aws:bedrock:{region}:{account}:{kind}/{id}")
        }
    };
    match resource {
        Resource::Model(id) if id.starts_with("arn:") => id.clone(),
        Resource::Model(id) => format!("arn:aws:bedrock:{region}::foundation-model/{id}"),
        Resource::Guardrail(id) => scoped("guardrail", id),
        Resource::KnowledgeBase(id) => scoped("knowledge-base", id),
        Resource::Agent(id) => scoped("agent", id),
        Resource::AgentAlias { agent, alias } => {
            format!("arn:aws:bedrock:{region}:{account}:agent-alias/{agent}/{alias}")
        }
        Resource::BatchJob(id) => scoped("model-invocation-job", id),
        Resource::CustomizationJob(id) => scoped("model-customization-job", id),
        Resource::ImportJob(id) => scoped("model-import-job", id),
        Resource::CustomModel(id) => scoped("custom-model", id),
        Resource::ImportedModel(id) => scoped("imported-model", id),
        Resource::Deployment(id) => scoped("custom-model-deployment", id),
        Resource::InferenceProfile(id) => scoped("application-inference-profile", id),
        Resource::ProvisionedModel(id) => scoped("provisioned-model", id),
        Resource::Basalt(name) => format!("arn:basalt:{region}:{account}:{name}"),
        Resource::Any => "*".to_owned(),
    }
}

/// The guardrail an invocation applies as the `bedrock:GuardrailIdentifier` condition
/// key holds it: `<guardrail ARN>:<version>`.
fn guardrail_key(applied: &str, region: &str, account: &str) -> String {
    // `<identifier>:<version>`, the identifier an ID or an ARN (which has colons).
    let (identifier, version) = applied.rsplit_once(':').unwrap_or((applied, "DRAFT"));
    format!(
        "{}:{version}",
        arn(&Resource::Guardrail(identifier.to_owned()), region, account)
    )
}

fn denied(dialect: Dialect, message: String) -> Response {
    let e = basalt_core::CoreError::AccessDenied(message);
    match dialect {
        Dialect::Bedrock => BedrockError::from(e).into_response(),
        Dialect::OpenAi => OpenAiError::from(e).into_response(),
        Dialect::Anthropic => crate::AnthropicError::from(e).into_response(),
    }
}

/// Decides whether `principal` may make this request. `Ok(Some)`: it may, and this is
/// what to audit if it changes something; `Ok(None)`: it may (a key without a policy)
/// and there is nothing to audit, or no route matches (the router answers). `Err`: the
/// refusal to send.
pub fn authorize(
    state: &AppState,
    principal: &Principal,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<Authorized>, Response> {
    let dialect = Dialect::of(path);
    let (region, account) = (state.core.region(), state.core.account_id());
    if principal.policy.is_none() && targets::mutates(method, path) != Some(true) {
        // Nothing to check and nothing to audit: an invocation's body is not read again.
        return Ok(None);
    }
    let Some(target) = targets::target_of(method, path, headers, body) else {
        return match &principal.policy {
            None => Ok(None),
            Some(_) => Err(denied(
                dialect,
                format!(
                    "User: {} is not authorized to perform: {method} {path} because no identity-based policy allows it",
                    principal.key_name
                ),
            )),
        };
    };
    let Target {
        action,
        resources,
        guardrail,
        mutates,
    } = target;
    let arns: Vec<String> = resources.iter().map(|r| arn(r, region, account)).collect();
    let authorized = Authorized {
        action,
        resources: if arns.is_empty() {
            "*".to_owned()
        } else {
            arns.join(",")
        },
        mutates,
    };
    let Some(policy) = &principal.policy else {
        return Ok(Some(authorized));
    };
    let guardrail = guardrail.map(|g| guardrail_key(&g, region, account));
    let verdict = policy.check(&PolicyRequest {
        action,
        resources: &arns,
        guardrail: guardrail.as_deref(),
    });
    match verdict {
        Ok(()) => Ok(Some(authorized)),
        Err(denial) => {
            let (resource, why) = match denial {
                Denial::Explicit { resource } => (
                    resource,
                    "with an explicit deny in an identity-based policy",
                ),
                Denial::NotAllowed { resource } => (
                    resource,
                    "because no identity-based policy allows the action",
                ),
            };
            let condition = match &guardrail {
                Some(g) => format!(" (guardrail {g})"),
                None if action.starts_with("bedrock:InvokeModel") => " (no guardrail)".to_owned(),
                None => String::new(),
            };
            metrics::counter!("basalt_permission_denials_total", "action" => action).increment(1);
            Err(denied(
                dialect,
                format!(
                    "User: {} is not authorized to perform: {action} on resource: {resource}{condition} {why}",
                    principal.key_name
                ),
            ))
        }
    }
}

/// Writes a changing request (or a refused attempt at one) to the audit log.
pub async fn audit(
    state: &AppState,
    principal: &Principal,
    request_id: &str,
    source: &str,
    entry: (&'static str, String),
    status: u16,
) {
    let (action, resources) = entry;
    let record = AuditRecord {
        at_ms: basalt_core::common::now_ms(),
        request_id: request_id.to_owned(),
        key_id: Some(principal.key_id.clone()),
        key_name: principal.key_name.clone(),
        action: action.to_owned(),
        resource: resources,
        status,
        source: source.to_owned(),
    };
    let log = std::sync::Arc::clone(&state.services.audit);
    // The store may block (a database round trip): not on the serving thread.
    if tokio::task::spawn_blocking(move || log.record(&record))
        .await
        .is_err()
    {
        tracing::error!("the audit writer panicked");
    }
}

/// What to audit of a refused request: the action and resources it asked for, when it
/// would have changed something.
pub fn attempted(
    state: &AppState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<(&'static str, String)> {
    let target = targets::target_of(method, path, headers, body)?;
    if !target.mutates {
        return None;
    }
    let (region, account) = (state.core.region(), state.core.account_id());
    let arns: Vec<String> = target
        .resources
        .iter()
        .map(|r| arn(r, region, account))
        .collect();
    Some((
        target.action,
        if arns.is_empty() {
            "*".to_owned()
        } else {
            arns.join(",")
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_render_as_bedrock_arns() {
        let (r, a) = ("us-east-1", "000000000000");
        assert_eq!(
            arn(&Resource::Model("m.x-v1:0".into()), r, a),
            "arn:aws:bedrock:us-east-1::foundation-model/m.x-v1:0"
        );
        let given = "arn:aws:bedrock:us-east-1:000000000000:custom-model/abc";
        assert_eq!(arn(&Resource::Model(given.into()), r, a), given);
        assert_eq!(
            arn(&Resource::Guardrail("g1".into()), r, a),
            "arn:aws:bedrock:us-east-1:000000000000:guardrail/g1"
        );
        assert_eq!(
            arn(
                &Resource::AgentAlias {
                    agent: "A".into(),
                    alias: "TSTALIASID".into()
                },
                r,
                a
            ),
            "arn:aws:bedrock:us-east-1:000000000000:agent-alias/A/TSTALIASID"
        );
        assert_eq!(arn(&Resource::Any, r, a), "*");
        assert_eq!(
            guardrail_key("g1:2", r, a),
            "arn:aws:bedrock:us-east-1:000000000000:guardrail/g1:2"
        );
        assert_eq!(
            guardrail_key(
                "arn:aws:bedrock:us-east-1:000000000000:guardrail/g1:DRAFT",
                r,
                a
            ),
            "arn:aws:bedrock:us-east-1:000000000000:guardrail/g1:DRAFT"
        );
    }
}
