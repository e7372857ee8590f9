//! The Bedrock dialect: runtime (`bedrock-runtime`), control plane (`bedrock`), and
//! the knowledge-base parts of `bedrock-agent` and `bedrock-agent-runtime`.

mod agent_runtime;
mod agents;
mod batch;
mod control;
mod customization;
mod documents;
mod guardrail_policy;
mod guardrails;
mod knowledge;
pub mod knowledge_wire;
mod paging;
mod profiles;
mod provisioned;
mod rerank;
mod retrieval;
mod runtime;
mod tenancy;
pub use batch::BedrockRecords;
pub(crate) use runtime::{answered_by, guardrail_trace};
pub mod wire;

use axum::routing::{get, post, put};
use axum::Router;

use crate::AppState;

/// Routes of both Bedrock services (they share one listener; none collide).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/model/{model_id}/converse", post(runtime::converse))
        .route(
            "/model/{model_id}/converse-stream",
            post(runtime::converse_stream),
        )
        .route("/model/{model_id}/invoke", post(runtime::invoke_model))
        .route(
            "/model/{model_id}/invoke-with-response-stream",
            post(runtime::invoke_model_stream),
        )
        .route(
            "/model/{model_id}/count-tokens",
            post(runtime::count_tokens),
        )
        .route(
            "/guardrail/{guardrail_id}/version/{guardrail_version}/apply",
            post(guardrails::apply_guardrail),
        )
        .route(
            "/guardrails",
            post(guardrails::create_guardrail).get(guardrails::list_guardrails),
        )
        .route(
            "/guardrails/{guardrail_id}",
            get(guardrails::get_guardrail)
                .put(guardrails::update_guardrail)
                .post(guardrails::create_guardrail_version)
                .delete(guardrails::delete_guardrail),
        )
        .route("/model-invocation-job", post(batch::create_job))
        .route("/model-invocation-job/{job_id}", get(batch::get_job))
        .route("/model-invocation-job/{job_id}/stop", post(batch::stop_job))
        .route("/model-invocation-jobs", get(batch::list_jobs))
        .route(
            "/model-customization-jobs",
            post(customization::create_job).get(customization::list_jobs),
        )
        .route(
            "/model-customization-jobs/{job_id}",
            get(customization::get_job),
        )
        .route(
            "/model-customization-jobs/{job_id}/stop",
            post(customization::stop_job),
        )
        .route("/custom-models", get(customization::list_custom_models))
        .route(
            "/model-import-jobs",
            post(customization::create_import_job).get(customization::list_import_jobs),
        )
        .route(
            "/model-import-jobs/{job_id}",
            get(customization::get_import_job),
        )
        .route("/imported-models", get(customization::list_imported_models))
        .route(
            "/imported-models/{model_id}",
            get(customization::get_imported_model).delete(customization::delete_imported_model),
        )
        .route(
            "/model-customization/custom-model-deployments",
            post(customization::create_deployment).get(customization::list_deployments),
        )
        .route(
            "/model-customization/custom-model-deployments/{deployment_id}",
            get(customization::get_deployment)
                .patch(customization::update_deployment)
                .delete(customization::delete_deployment),
        )
        .route(
            "/custom-models/{model_id}",
            get(customization::get_custom_model).delete(customization::delete_custom_model),
        )
        .route(
            "/inference-profiles",
            post(profiles::create).get(profiles::list),
        )
        .route(
            "/inference-profiles/{profile_id}",
            get(profiles::get).delete(profiles::delete),
        )
        .route("/provisioned-model-throughput", post(provisioned::create))
        .route(
            "/provisioned-model-throughput/{provisioned_id}",
            get(provisioned::get)
                .patch(provisioned::update)
                .delete(provisioned::delete),
        )
        .route("/provisioned-model-throughputs", get(provisioned::list))
        .route(
            "/knowledgebases/",
            put(knowledge::create_knowledge_base).post(knowledge::list_knowledge_bases),
        )
        .route(
            "/knowledgebases/{kb}",
            get(knowledge::get_knowledge_base)
                .put(knowledge::update_knowledge_base)
                .delete(knowledge::delete_knowledge_base),
        )
        .route(
            "/knowledgebases/{kb}/datasources/",
            put(knowledge::create_data_source).post(knowledge::list_data_sources),
        )
        .route(
            "/knowledgebases/{kb}/datasources/{ds}",
            get(knowledge::get_data_source)
                .put(knowledge::update_data_source)
                .delete(knowledge::delete_data_source),
        )
        .route(
            "/knowledgebases/{kb}/datasources/{ds}/ingestionjobs/",
            put(knowledge::start_ingestion_job).post(knowledge::list_ingestion_jobs),
        )
        .route(
            "/knowledgebases/{kb}/datasources/{ds}/ingestionjobs/{job}",
            get(knowledge::get_ingestion_job),
        )
        .route(
            "/knowledgebases/{kb}/datasources/{ds}/ingestionjobs/{job}/stop",
            post(knowledge::stop_ingestion_job),
        )
        .route(
            "/knowledgebases/{kb}/datasources/{ds}/documents",
            put(knowledge::ingest_documents).post(knowledge::list_documents),
        )
        .route(
            "/knowledgebases/{kb}/datasources/{ds}/documents/deleteDocuments",
            post(knowledge::delete_documents),
        )
        .route(
            "/knowledgebases/{kb}/datasources/{ds}/documents/getDocuments",
            post(knowledge::get_documents),
        )
        .route("/knowledgebases/{kb}/retrieve", post(retrieval::retrieve))
        .route("/rerank", post(rerank::rerank))
        .route(
            "/retrieveAndGenerate",
            post(retrieval::retrieve_and_generate),
        )
        .route(
            "/retrieveAndGenerateStream",
            post(retrieval::retrieve_and_generate_stream),
        )
        .route(
            "/agents/",
            put(agents::create_agent).post(agents::list_agents),
        )
        .route(
            "/agents/{agent_id}/",
            get(agents::get_agent)
                .put(agents::update_agent)
                .delete(agents::delete_agent)
                .post(agents::prepare_agent),
        )
        // InvokeInlineAgent: `POST /agents/{sessionId}` (no trailing slash).
        .route(
            "/agents/{agent_id}",
            post(agent_runtime::invoke_inline_agent),
        )
        .route(
            "/agents/{agent_id}/agentversions/{version}/actiongroups/",
            put(agents::create_action_group).post(agents::list_action_groups),
        )
        .route(
            "/agents/{agent_id}/agentversions/{version}/actiongroups/{group_id}/",
            get(agents::get_action_group)
                .put(agents::update_action_group)
                .delete(agents::delete_action_group),
        )
        .route(
            "/agents/{agent_id}/agentversions/{version}/knowledgebases/",
            put(agents::associate_knowledge_base).post(agents::list_knowledge_bases),
        )
        .route(
            "/agents/{agent_id}/agentversions/{version}/knowledgebases/{kb_id}/",
            get(agents::get_knowledge_base)
                .put(agents::update_knowledge_base)
                .delete(agents::disassociate_knowledge_base),
        )
        .route(
            "/agents/{agent_id}/agentversions/{version}/agentcollaborators/",
            put(agents::associate_collaborator).post(agents::list_collaborators),
        )
        .route(
            "/agents/{agent_id}/agentversions/{version}/agentcollaborators/{collaborator_id}/",
            get(agents::get_collaborator)
                .put(agents::update_collaborator)
                .delete(agents::disassociate_collaborator),
        )
        .route(
            "/agents/{agent_id}/agentversions/",
            post(agents::list_versions),
        )
        .route(
            "/agents/{agent_id}/agentversions/{version}/",
            get(agents::get_version).delete(agents::delete_version),
        )
        .route(
            "/agents/{agent_id}/agentaliases/",
            put(agents::create_alias).post(agents::list_aliases),
        )
        .route(
            "/agents/{agent_id}/agentaliases/{alias_id}/",
            get(agents::get_alias)
                .put(agents::update_alias)
                .delete(agents::delete_alias),
        )
        .route(
            "/agents/{agent_id}/agentAliases/{alias_id}/memories",
            get(agent_runtime::get_agent_memory).delete(agent_runtime::delete_agent_memory),
        )
        .route(
            "/agents/{agent_id}/agentAliases/{alias_id}/sessions/{session_id}/text",
            post(agent_runtime::invoke_agent),
        )
        .route("/foundation-models", get(control::list_foundation_models))
        .route(
            "/foundation-models/{model_id}",
            get(control::get_foundation_model),
        )
        .route_layer(axum::middleware::from_fn(
            tenancy::refuse_tenant_shared_writes,
        ))
}
