//! Custom models on the calling path: a catalog model plus a LoRA adapter, named by
//! their ARN (`arn:aws:bedrock:<region>:<account>:custom-model/<base>/<id>`).
//!
//! A custom model resolves to its base model's catalog entry with its own ID, marked
//! `custom` (so, as on Bedrock, it is served only through provisioned throughput).
//! Its engine is loaded on first use: the base GGUF file (memory-mapped, so its pages
//! are shared with the base model's engine) with the adapter applied on a context of
//! its own — a custom model never reuses a KV prefix computed under another adapter.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use basalt_engine::chat::{ChatEngine, ChatEngineConfig};
use basalt_store::{CustomModelRecord, CustomModelStore, StoreError};

use crate::background::{BackgroundWork, Progress};
use crate::catalog::{Catalog, ModelEntry};
use crate::model_artifacts::ModelArtifacts;
use crate::provider::{ChatProvider, LocalChat};
use crate::types::InferenceType;
use crate::CoreError;

/// The ID inside a custom-model ARN (`…:custom-model/<base>/<id>`), if `model_id` is one.
pub fn custom_model_id(model_id: &str) -> Option<&str> {
    let (_, rest) = model_id.split_once(":custom-model/")?;
    let id = rest.rsplit('/').next()?;
    crate::common::is_resource_id(id).then_some(id)
}

/// The ID inside an imported model's ARN (`…:imported-model/<id>`), if `model_id` is one.
pub fn imported_model_id(model_id: &str) -> Option<&str> {
    let (_, id) = model_id.split_once(":imported-model/")?;
    crate::common::is_resource_id(id).then_some(id)
}

/// The `customization_type` of an imported model's record.
pub const IMPORTED: &str = "IMPORTED";

/// The ID inside a custom-model deployment's ARN
/// (`…:custom-model-deployment/<id>`), if `model_id` is one.
pub fn deployment_id(model_id: &str) -> Option<&str> {
    let (_, id) = model_id.split_once(":custom-model-deployment/")?;
    crate::common::is_resource_id(id).then_some(id)
}

/// Custom models' entries and engines.
pub struct CustomModels {
    store: Arc<dyn CustomModelStore>,
    region: String,
    account_id: String,
    /// The base engine's settings by weights name (GGUF file, threads, context).
    base_engines: HashMap<String, ChatEngineConfig>,
    /// Slots of each custom model's engine.
    adapter_slots: u32,
    engines: Mutex<HashMap<String, Arc<dyn ChatProvider>>>,
    /// Imported models whose engine is loading, or failed to load.
    loading: BackgroundWork,
    /// Finished loads of imported models, taken into `engines` by the next call.
    loaded: Arc<Mutex<HashMap<String, Arc<dyn ChatProvider>>>>,
    /// Models' files across a fleet.
    artifacts: ModelArtifacts,
}

impl std::fmt::Debug for CustomModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomModels").finish_non_exhaustive()
    }
}

fn store_error(e: StoreError) -> CoreError {
    crate::common::store_error("custom model")(e)
}

impl CustomModels {
    pub(crate) fn new(
        store: Arc<dyn CustomModelStore>,
        region: &str,
        account_id: &str,
        base_engines: HashMap<String, ChatEngineConfig>,
        adapter_slots: u32,
        artifacts: ModelArtifacts,
    ) -> Self {
        Self {
            store,
            artifacts,
            region: region.to_owned(),
            account_id: account_id.to_owned(),
            base_engines,
            adapter_slots: adapter_slots.max(1),
            engines: Mutex::new(HashMap::new()),
            loading: BackgroundWork::default(),
            loaded: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Models' files across a fleet.
    pub fn artifacts(&self) -> &ModelArtifacts {
        &self.artifacts
    }

    pub fn arn(&self, base_model_id: &str, id: &str) -> String {
        format!(
            "arn:aws:bedrock:{}:{}:custom-model/{base_model_id}/{id}",
            self.region, self.account_id
        )
    }

    /// The settings of the engine serving weights `weights`.
    pub(crate) fn base_engine(&self, weights: &str) -> Option<&ChatEngineConfig> {
        self.base_engines.get(weights)
    }

    pub fn store(&self) -> &Arc<dyn CustomModelStore> {
        &self.store
    }

    pub fn record(&self, id: &str) -> Result<Option<CustomModelRecord>, CoreError> {
        let record = self.store.custom_model(id).map_err(store_error)?;
        if record.is_none() {
            // Deleted, perhaps on another node: this node's engine and copy go too.
            self.unload(id);
            self.artifacts.forget(id);
        }
        Ok(record)
    }

    /// The catalog entry a custom model is served under.
    pub(crate) fn entry<'c>(
        &self,
        catalog: &'c Catalog,
        id: &str,
    ) -> Result<Cow<'c, ModelEntry>, CoreError> {
        let record = self
            .record(id)?
            .ok_or_else(|| CoreError::NotFound(format!("custom model {id} does not exist")))?;
        let base = catalog.lookup(&record.base_model_id).ok_or_else(|| {
            CoreError::ModelNotReady(format!(
                "custom model {}: its base model {} is no longer in the catalog",
                record.name, record.base_model_id
            ))
        })?;
        Ok(Cow::Owned(ModelEntry {
            id: self.arn(&record.base_model_id, &record.id),
            name: record.name,
            customizations: Vec::new(),
            inference_types: vec![InferenceType::Provisioned],
            custom: true,
            ..base.clone()
        }))
    }

    pub fn deployment_arn(&self, id: &str) -> String {
        format!(
            "arn:aws:bedrock:{}:{}:custom-model-deployment/{id}",
            self.region, self.account_id
        )
    }

    /// The entry a deployment serves: its custom model's, invocable on demand.
    pub(crate) fn deployment_entry<'c>(
        &self,
        catalog: &'c Catalog,
        id: &str,
    ) -> Result<Cow<'c, ModelEntry>, CoreError> {
        let deployment = self
            .store
            .deployment(id)
            .map_err(store_error)?
            .ok_or_else(|| {
                CoreError::NotFound(format!("custom model deployment {id} does not exist"))
            })?;
        let mut entry = self.entry(catalog, &deployment.model_id)?.into_owned();
        entry.custom = false;
        entry.inference_types = vec![InferenceType::OnDemand];
        Ok(Cow::Owned(entry))
    }

    pub fn imported_arn(&self, id: &str) -> String {
        format!(
            "arn:aws:bedrock:{}:{}:imported-model/{id}",
            self.region, self.account_id
        )
    }

    /// The entry of an imported model, invocable on demand: a GGUF model of its own,
    /// or an adapter imported onto a catalog base (that base's entry).
    pub(crate) fn imported_entry<'c>(
        &self,
        catalog: &'c Catalog,
        id: &str,
    ) -> Result<Cow<'c, ModelEntry>, CoreError> {
        let record = self
            .record(id)?
            .filter(|r| r.customization_type == IMPORTED)
            .ok_or_else(|| CoreError::NotFound(format!("imported model {id} does not exist")))?;
        let arn = self.imported_arn(&record.id);
        if !record.base_model_id.is_empty() {
            let base = catalog.lookup(&record.base_model_id).ok_or_else(|| {
                CoreError::ModelNotReady(format!(
                    "imported model {}: its base model {} is no longer in the catalog",
                    record.name, record.base_model_id
                ))
            })?;
            return Ok(Cow::Owned(ModelEntry {
                id: arn,
                name: record.name,
                customizations: Vec::new(),
                inference_types: vec![InferenceType::OnDemand],
                custom: false,
                ..base.clone()
            }));
        }
        let template = catalog
            .models()
            .find(|m| m.engine == crate::catalog::EngineKind::LlamaCpp)
            .ok_or_else(|| {
                CoreError::ModelNotReady(
                    "imported models are served by the local engine, and this server runs none"
                        .into(),
                )
            })?;
        Ok(Cow::Owned(ModelEntry {
            id: arn,
            name: record.name,
            provider: "Imported".into(),
            weights: None,
            customizations: Vec::new(),
            inference_types: vec![InferenceType::OnDemand],
            fallbacks: Vec::new(),
            custom: false,
            input_price_per_1k: 0.0,
            output_price_per_1k: 0.0,
            cache_read_price_per_1k: 0.0,
            provisioned_unit_hour_price: 0.0,
            ..template.clone()
        }))
    }

    /// An imported model's engine: ready, or loading in the background (the call is
    /// answered ModelNotReady meanwhile, as Bedrock answers a cold imported model).
    fn imported_provider(
        &self,
        entry: &ModelEntry,
        id: &str,
        engines: &mut HashMap<String, Arc<dyn ChatProvider>>,
    ) -> Result<Arc<dyn ChatProvider>, CoreError> {
        let lock = |e| CoreError::Internal(format!("imported model engines lock poisoned: {e}"));
        if let Some(provider) = self
            .loaded
            .lock()
            .map_err(|e| lock(e.to_string()))?
            .remove(id)
        {
            engines.insert(id.to_owned(), Arc::clone(&provider));
            return Ok(provider);
        }
        let not_ready = |progress: Option<Progress>, name: &str| match progress {
            Some(Progress::Failed(reason)) => {
                CoreError::ModelNotReady(format!("imported model {name} failed to load: {reason}"))
            }
            _ => {
                CoreError::ModelNotReady(format!("imported model {name} is loading; retry shortly"))
            }
        };
        if let Some(progress) = self.loading.pending(id) {
            return Err(not_ready(Some(progress), id));
        }
        let record = self
            .record(id)?
            .ok_or_else(|| CoreError::NotFound(format!("imported model {id} does not exist")))?;
        let template = if record.base_model_id.is_empty() {
            self.base_engines.values().next()
        } else {
            None
        };
        let config = match template {
            Some(t) => ChatEngineConfig {
                model_path: self.artifacts.local_file(&record)?,
                slots: self.adapter_slots,
                lora_adapter: None,
                ..t.clone()
            },
            None => self.adapter_engine_config(entry, &record)?,
        };
        let (loaded, key, name) = (Arc::clone(&self.loaded), id.to_owned(), record.name.clone());
        let progress = self.loading.start(id, "basalt-model-load", move || {
            tracing::info!(model = %name, "loading imported model");
            let engine = ChatEngine::load(config).map_err(|e| {
                tracing::warn!(model = %name, error = %e, "imported model failed to load");
                e.to_string()
            })?;
            let provider: Arc<dyn ChatProvider> = Arc::new(LocalChat::new(Arc::new(engine)));
            if let Ok(mut l) = loaded.lock() {
                l.insert(key, provider);
            }
            Ok(())
        })?;
        Err(not_ready(progress, &record.name))
    }

    /// The engine settings of a model that is `entry`'s base plus `record`'s adapter:
    /// the base engine's, with the adapter and this registry's slot count.
    fn adapter_engine_config(
        &self,
        entry: &ModelEntry,
        record: &CustomModelRecord,
    ) -> Result<ChatEngineConfig, CoreError> {
        let base = entry
            .weights
            .as_ref()
            .and_then(|w| self.base_engines.get(w))
            .ok_or_else(|| {
                CoreError::ModelNotReady(format!(
                    "model {}: its base model is not served by a local engine",
                    record.name
                ))
            })?;
        Ok(ChatEngineConfig {
            slots: self.adapter_slots,
            lora_adapter: Some(self.artifacts.local_file(record)?),
            ..base.clone()
        })
    }

    /// The engine of a custom or imported model's entry, loaded on first use.
    pub(crate) fn provider(&self, entry: &ModelEntry) -> Result<Arc<dyn ChatProvider>, CoreError> {
        if let Some(id) = imported_model_id(&entry.id) {
            let mut engines = self
                .engines
                .lock()
                .map_err(|_| CoreError::Internal("custom model engines lock poisoned".into()))?;
            if let Some(engine) = engines.get(id) {
                return Ok(Arc::clone(engine));
            }
            return self.imported_provider(entry, id, &mut engines);
        }
        let Some(id) = custom_model_id(&entry.id) else {
            return Err(CoreError::Internal(format!(
                "{} is not a custom model",
                entry.id
            )));
        };
        let mut engines = self
            .engines
            .lock()
            .map_err(|_| CoreError::Internal("custom model engines lock poisoned".into()))?;
        if let Some(engine) = engines.get(id) {
            return Ok(Arc::clone(engine));
        }
        let record = self
            .record(id)?
            .ok_or_else(|| CoreError::NotFound(format!("custom model {id} does not exist")))?;
        let config = self.adapter_engine_config(entry, &record)?;
        tracing::info!(model = %record.name, adapter = %record.adapter_path, "loading custom model");
        let engine = ChatEngine::load(config)
            .map_err(|e| CoreError::ModelNotReady(format!("custom model {}: {e}", record.name)))?;
        let provider: Arc<dyn ChatProvider> = Arc::new(LocalChat::new(Arc::new(engine)));
        engines.insert(id.to_owned(), Arc::clone(&provider));
        Ok(provider)
    }

    /// Forgets a deleted custom model's engine (its requests in flight finish).
    pub(crate) fn unload(&self, id: &str) {
        if let Ok(mut engines) = self.engines.lock() {
            engines.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_model_ids_come_from_their_arns() {
        assert_eq!(
            custom_model_id(
                "arn:aws:bedrock:us-east-1:000000000000:custom-model/huggingfacetb.smollm2-135m-instruct-v1:0/abcdef123456"
            ),
            Some("abcdef123456")
        );
        assert_eq!(
            custom_model_id("arn:aws:bedrock:us-east-1:0:custom-model/x/ABC"),
            None
        );
        assert_eq!(
            custom_model_id("huggingfacetb.smollm2-135m-instruct-v1:0"),
            None
        );
        assert_eq!(
            deployment_id("arn:aws:bedrock:us-east-1:0:custom-model-deployment/abcdef123456"),
            Some("abcdef123456")
        );
        assert_eq!(
            custom_model_id("arn:aws:bedrock:us-east-1:0:custom-model-deployment/abcdef123456"),
            None
        );
    }
}
