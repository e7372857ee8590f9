//! The running platform: the calling path ([`Basalt`]) and one service per feature,
//! each owning its store and holding a handle to the calling path. The edge holds a
//! [`Services`]; a new feature adds a service here and its routes in the edge,
//! touching no other service.

use std::path::Path;
use std::sync::Arc;

use crate::agents::AgentService;
use crate::audit::AuditLog;
use crate::batch::runner::{BatchRunner, RecordInvoker};
use crate::batch::BatchService;
use crate::config::{ConfigFile, KnowledgeBasesConfig};
use crate::customization::{CustomizationJobs, CustomizationService, ImportJobs};
use crate::guardrails::GuardrailService;
use crate::jobs::{JobRunner, RunnerTask};
use crate::keys::KeyService;
use crate::knowledge::{IngestionJobs, KnowledgeService};
use crate::metering::Meter;
use crate::profiles::InferenceProfileService;
use crate::provisioned::ProvisionedService;
use crate::responses::ResponseService;
use crate::{Basalt, CoreError};

/// Every service of a running server.
#[derive(Debug, Clone)]
pub struct Services {
    /// Resolve, place, admit, run and meter a model call (chat, stream, embed).
    pub core: Arc<Basalt>,
    /// Long work of every kind, claimed under leases.
    pub jobs: Arc<JobRunner>,
    pub provisioned: Arc<ProvisionedService>,
    pub profiles: Arc<InferenceProfileService>,
    pub guardrails: Arc<GuardrailService>,
    pub batch: Arc<BatchService>,
    pub knowledge: Arc<KnowledgeService>,
    pub agents: Arc<AgentService>,
    pub customization: Arc<CustomizationService>,
    /// Stored responses of OpenAI's Responses API.
    pub responses: Arc<ResponseService>,
    /// Control-plane changes: who, what, when.
    pub audit: Arc<AuditLog>,
    /// Whether the store answers (readiness).
    pub store_health: Arc<dyn basalt_store::StoreHealth>,
}

impl Services {
    /// Loads the models and starts every service on `store`.
    pub fn start(
        config: &ConfigFile,
        models_dir: &Path,
        meter: Meter,
        keys: Arc<KeyService>,
        store: Arc<dyn basalt_store::CoreStore>,
    ) -> Result<Self, CoreError> {
        let core = Arc::new(Basalt::start(
            config,
            models_dir,
            meter,
            keys,
            store.clone(),
        )?);
        let jobs = Arc::new(JobRunner::new(store.clone(), &config.jobs));
        let provisioned = Arc::new(ProvisionedService::start(Arc::clone(&core), store.clone())?);
        let profiles = Arc::new(InferenceProfileService::new(
            Arc::clone(&core),
            store.clone(),
        ));
        let guardrails = Arc::new(GuardrailService::new(
            Arc::clone(&core),
            store.clone(),
            config.guardrails.clone(),
        ));
        let batch = Arc::new(BatchService::new(
            Arc::clone(&core),
            store.clone(),
            Arc::clone(&jobs),
            config.batch.clone(),
        ));
        let knowledge = Arc::new(KnowledgeService::start(
            Arc::clone(&core),
            Arc::clone(&guardrails),
            Arc::clone(&jobs),
            store.clone(),
            KnowledgeBasesConfig {
                shared_store: config.store.effective_url().is_some(),
                ..config.knowledge_bases.clone()
            },
        )?);
        let audit = Arc::new(AuditLog::new(store.clone()));
        let store_health: Arc<dyn basalt_store::StoreHealth> = store.clone();
        let responses = Arc::new(ResponseService::new(
            store.clone(),
            config.responses.clone(),
        ));
        let agents = Arc::new(AgentService::new(
            Arc::clone(&core),
            Arc::clone(&knowledge),
            Arc::clone(&guardrails),
            store,
            config.agents.clone(),
        )?);
        let customization = Arc::new(CustomizationService::new(
            Arc::clone(&core),
            Arc::clone(&jobs),
            config.customization.clone(),
        ));
        Ok(Self {
            audit,
            store_health,
            customization,
            responses,
            core,
            jobs,
            provisioned,
            profiles,
            guardrails,
            batch,
            knowledge,
            agents,
        })
    }

    /// Registers the handler of every job kind and starts the job runner; call once,
    /// inside the runtime. `records` reads batch records (the dialect's part).
    pub fn start_jobs(&self, records: Arc<dyn RecordInvoker>) -> RunnerTask {
        self.jobs
            .register(Arc::new(BatchRunner::new(Arc::clone(&self.batch), records)));
        self.jobs
            .register(Arc::new(IngestionJobs::new(Arc::clone(&self.knowledge))));
        self.jobs
            .register(Arc::new(CustomizationJobs::new(Arc::clone(
                &self.customization,
            ))));
        self.jobs
            .register(Arc::new(ImportJobs::new(Arc::clone(&self.customization))));
        self.jobs.start()
    }
}
