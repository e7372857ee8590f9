//! The tenant rule at the edge: a tenant key (one with a mandatory retrieval filter)
//! cannot change shared resources. One route layer over the Bedrock routes refuses
//! those changes, by method and route, before any handler runs; what a tenant key
//! may read or write inside its tenant (documents, sessions, its batch jobs) is
//! decided where those resources are handled.

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use basalt_core::keys::Principal;

use crate::error::BedrockError;

/// Changes to shared resources: (method, route) and what the error calls them.
const SHARED_WRITES: &[(Method, &str, &str)] = &[
    (Method::POST, "/guardrails", "creating a guardrail"),
    (
        Method::PUT,
        "/guardrails/{guardrail_id}",
        "updating a guardrail",
    ),
    (
        Method::POST,
        "/guardrails/{guardrail_id}",
        "creating a guardrail version",
    ),
    (
        Method::DELETE,
        "/guardrails/{guardrail_id}",
        "deleting a guardrail",
    ),
    (
        Method::POST,
        "/provisioned-model-throughput",
        "buying provisioned throughput",
    ),
    (
        Method::PATCH,
        "/provisioned-model-throughput/{provisioned_id}",
        "changing provisioned throughput",
    ),
    (
        Method::DELETE,
        "/provisioned-model-throughput/{provisioned_id}",
        "deleting provisioned throughput",
    ),
    (
        Method::POST,
        "/inference-profiles",
        "creating an inference profile",
    ),
    (
        Method::DELETE,
        "/inference-profiles/{profile_id}",
        "deleting an inference profile",
    ),
    (Method::PUT, "/knowledgebases/", "creating a knowledge base"),
    (
        Method::PUT,
        "/knowledgebases/{kb}",
        "updating a knowledge base",
    ),
    (
        Method::DELETE,
        "/knowledgebases/{kb}",
        "deleting a knowledge base",
    ),
    (
        Method::PUT,
        "/knowledgebases/{kb}/datasources/",
        "creating a data source",
    ),
    (
        Method::PUT,
        "/knowledgebases/{kb}/datasources/{ds}",
        "updating a data source",
    ),
    (
        Method::DELETE,
        "/knowledgebases/{kb}/datasources/{ds}",
        "deleting a data source",
    ),
    (
        Method::PUT,
        "/knowledgebases/{kb}/datasources/{ds}/ingestionjobs/",
        "starting an ingestion job",
    ),
    (
        Method::POST,
        "/knowledgebases/{kb}/datasources/{ds}/ingestionjobs/{job}/stop",
        "stopping an ingestion job",
    ),
    (Method::PUT, "/agents/", "creating an agent"),
    (Method::PUT, "/agents/{agent_id}/", "updating an agent"),
    (Method::DELETE, "/agents/{agent_id}/", "deleting an agent"),
    (Method::POST, "/agents/{agent_id}/", "preparing an agent"),
    (
        Method::PUT,
        "/agents/{agent_id}/agentversions/{version}/actiongroups/",
        "creating an action group",
    ),
    (
        Method::PUT,
        "/agents/{agent_id}/agentversions/{version}/actiongroups/{group_id}/",
        "updating an action group",
    ),
    (
        Method::DELETE,
        "/agents/{agent_id}/agentversions/{version}/actiongroups/{group_id}/",
        "deleting an action group",
    ),
    (
        Method::PUT,
        "/agents/{agent_id}/agentversions/{version}/knowledgebases/",
        "associating a knowledge base with an agent",
    ),
    (
        Method::PUT,
        "/agents/{agent_id}/agentversions/{version}/knowledgebases/{kb_id}/",
        "updating an agent's knowledge base",
    ),
    (
        Method::DELETE,
        "/agents/{agent_id}/agentversions/{version}/knowledgebases/{kb_id}/",
        "disassociating a knowledge base from an agent",
    ),
    (
        Method::PUT,
        "/agents/{agent_id}/agentversions/{version}/agentcollaborators/",
        "associating a collaborator with an agent",
    ),
    (
        Method::PUT,
        "/agents/{agent_id}/agentversions/{version}/agentcollaborators/{collaborator_id}/",
        "updating an agent's collaborator",
    ),
    (
        Method::DELETE,
        "/agents/{agent_id}/agentversions/{version}/agentcollaborators/{collaborator_id}/",
        "disassociating a collaborator from an agent",
    ),
    (
        Method::DELETE,
        "/agents/{agent_id}/agentversions/{version}/",
        "deleting an agent version",
    ),
    (
        Method::PUT,
        "/agents/{agent_id}/agentaliases/",
        "creating an agent alias",
    ),
    (
        Method::PUT,
        "/agents/{agent_id}/agentaliases/{alias_id}/",
        "updating an agent alias",
    ),
    (
        Method::DELETE,
        "/agents/{agent_id}/agentaliases/{alias_id}/",
        "deleting an agent alias",
    ),
];

/// What a request changes, when it changes a shared resource.
fn shared_write(method: &Method, route: &str) -> Option<&'static str> {
    SHARED_WRITES
        .iter()
        .find(|(m, r, _)| m == method && *r == route)
        .map(|(_, _, what)| *what)
}

/// The route layer: a tenant key's change to a shared resource is AccessDenied.
pub async fn refuse_tenant_shared_writes(request: Request, next: Next) -> Response {
    let what = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|route| shared_write(request.method(), route.as_str()));
    if let (Some(what), Some(principal)) = (what, request.extensions().get::<Principal>()) {
        if let Err(e) = principal.require_shared_write(what) {
            return BedrockError::agent(e).into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_to_shared_resources_are_named_and_reads_are_not() {
        assert_eq!(
            shared_write(&Method::DELETE, "/knowledgebases/{kb}"),
            Some("deleting a knowledge base")
        );
        assert_eq!(shared_write(&Method::GET, "/knowledgebases/{kb}"), None);
        assert_eq!(
            shared_write(&Method::POST, "/knowledgebases/"),
            None,
            "listing"
        );
        assert_eq!(
            shared_write(
                &Method::PUT,
                "/knowledgebases/{kb}/datasources/{ds}/documents"
            ),
            None,
            "direct ingestion is checked against the tenant's filter instead"
        );
    }
}
