//! Provisioned throughput: capacity reserved on one model, in model units.
//!
//! What a unit buys: on a local model, `local_slots_per_unit` engine slots
//! (sequences decoded together) that on-demand traffic cannot take — on-demand calls
//! to that model are admitted only while fewer than `slots − reserved` of them are in
//! flight, so a provisioned call always finds a free slot and starts at the next
//! decode step; on a remote model, `remote_concurrency_per_unit` concurrent calls.
//! A purchase the node cannot honour (fewer than `on_demand_min_slots` left to
//! on-demand traffic) is refused with the capacity left. Calls through the provisioned
//! model's ARN skip on-demand quotas and are metered as `PROVISIONED` (tokens counted,
//! cost by the hour per unit).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basalt_store::StoreError;
use basalt_store::{ProvisionedRecord, ProvisionedStore};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::catalog::{EngineKind, ModelEntry};
use crate::config::ProvisionedConfig;
use crate::{Basalt, CoreError};

crate::types::named_values! {
    /// Where a provisioned model is (Bedrock's names, as stored).
    pub enum ProvisionedStatus {
        Creating => "Creating",
        InService => "InService",
        Updating => "Updating",
        Failed => "Failed",
    }
}

/// A stored record's status; a name this server does not know reads as `Failed`.
pub fn status_of(record: &ProvisionedRecord) -> ProvisionedStatus {
    ProvisionedStatus::parse(&record.status).unwrap_or(ProvisionedStatus::Failed)
}

/// A provisioned model as the service gives it out (the store's row with its values
/// typed); the edge writes its wire form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedModel {
    /// 12 lowercase letters and digits.
    pub id: String,
    pub name: String,
    pub model_id: String,
    pub desired_model_id: String,
    pub model_units: u32,
    pub status: ProvisionedStatus,
    pub failure_message: Option<String>,
    /// `OneMonth`, `SixMonths`, or none (no commitment).
    pub commitment: Option<String>,
    pub commitment_expires_ms: Option<i64>,
    pub client_token: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl From<ProvisionedRecord> for ProvisionedModel {
    fn from(r: ProvisionedRecord) -> Self {
        Self {
            status: status_of(&r),
            id: r.id,
            name: r.name,
            model_id: r.model_id,
            desired_model_id: r.desired_model_id,
            model_units: r.model_units,
            failure_message: r.failure_message,
            commitment: r.commitment,
            commitment_expires_ms: r.commitment_expires_ms,
            client_token: r.client_token,
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
        }
    }
}

/// How long an on-demand call waits for one of the slots left to on-demand traffic
/// before it is throttled.
const ON_DEMAND_WAIT: Duration = Duration::from_secs(120);

/// How long a batch call waits for left-over capacity before it is throttled (the
/// batch runner then retries it with back-off).
const BACKGROUND_WAIT: Duration = Duration::from_secs(600);

#[derive(Default)]
struct ModelCapacity {
    /// Units reserved on this model.
    reserved_units: u32,
    /// On-demand calls in flight (local models with reservations only).
    on_demand: Option<Arc<Semaphore>>,
}

/// The capacity state of a running server.
pub struct Capacity {
    config: ProvisionedConfig,
    /// Engine slots of each local chat engine, by weights name (models that share
    /// weights share one engine, so they share its capacity).
    local_slots: HashMap<String, u32>,
    models: Mutex<HashMap<String, ModelCapacity>>,
    /// The reservation this node holds for each provisioned model.
    provisioned: Mutex<HashMap<String, Held>>,
    /// Held while a reservation made on first use is checked and taken.
    reserving: Mutex<()>,
}

impl std::fmt::Debug for Capacity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capacity")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A provisioned model's reservation on this node.
struct Held {
    /// Its concurrency.
    semaphore: Arc<Semaphore>,
    entry: ModelEntry,
    units: u32,
    since: std::time::Instant,
}

/// What capacity a model draws on: its engine (weights) when local, itself when remote.
fn capacity_key(entry: &ModelEntry) -> String {
    match (&entry.engine, &entry.weights) {
        (EngineKind::LlamaCpp, Some(weights)) => format!("weights:{weights}"),
        _ => format!("model:{}", entry.id),
    }
}

impl Capacity {
    /// `local_slots`: each local chat engine's slots, by weights name.
    pub fn new(config: ProvisionedConfig, local_slots: HashMap<String, u32>) -> Self {
        let local_slots = local_slots
            .into_iter()
            .map(|(weights, slots)| (format!("weights:{weights}"), slots))
            .collect();
        Self {
            config,
            local_slots,
            models: Mutex::new(HashMap::new()),
            provisioned: Mutex::new(HashMap::new()),
            reserving: Mutex::new(()),
        }
    }

    fn concurrency(&self, entry: &ModelEntry, units: u32) -> usize {
        let per_unit = if entry.engine == EngineKind::Remote {
            self.config.remote_concurrency_per_unit
        } else {
            self.config.local_slots_per_unit
        };
        (units.saturating_mul(per_unit.max(1))) as usize
    }

    /// Units still purchasable on a model (None: no limit, a remote model).
    pub fn units_left(&self, entry: &ModelEntry) -> Option<u32> {
        let key = capacity_key(entry);
        let slots = *self.local_slots.get(&key)?;
        let reserved = self
            .models
            .lock()
            .map(|m| m.get(&key).map_or(0, |c| c.reserved_units))
            .unwrap_or(0);
        let per_unit = self.config.local_slots_per_unit.max(1);
        let usable = slots.saturating_sub(self.config.on_demand_min_slots);
        Some((usable / per_unit).saturating_sub(reserved))
    }

    /// Reserves `units` on a model for provisioned model `pm_id`.
    pub fn reserve(&self, entry: &ModelEntry, pm_id: &str, units: u32) -> Result<(), CoreError> {
        if let Some(left) = self.units_left(entry) {
            if units > left {
                return Err(CoreError::QuotaExceeded(format!(
                    "model {} has capacity for {left} more model unit(s) on this node ({} engine slots, {} kept for on-demand traffic, {} per unit); {units} were asked for",
                    entry.id,
                    self.local_slots.get(&capacity_key(entry)).copied().unwrap_or(0),
                    self.config.on_demand_min_slots,
                    self.config.local_slots_per_unit.max(1)
                )));
            }
        }
        let mut models = self
            .models
            .lock()
            .map_err(|_| CoreError::Internal("capacity lock poisoned".into()))?;
        let key = capacity_key(entry);
        let model = models.entry(key.clone()).or_default();
        model.reserved_units += units;
        self.resize_on_demand(entry, model);
        reserved_gauge(&key, model.reserved_units);
        if let Ok(mut p) = self.provisioned.lock() {
            p.insert(
                pm_id.to_string(),
                Held {
                    semaphore: Arc::new(Semaphore::new(self.concurrency(entry, units).max(1))),
                    entry: entry.clone(),
                    units,
                    since: std::time::Instant::now(),
                },
            );
        }
        Ok(())
    }

    /// The provisioned models this node holds a reservation for, and how long it has
    /// held each.
    pub fn held(&self) -> Vec<(String, Duration)> {
        self.provisioned
            .lock()
            .map(|p| {
                p.iter()
                    .map(|(id, h)| (id.clone(), h.since.elapsed()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Gives back the units this node holds for `pm_id` (whatever model they are on).
    pub fn release_held(&self, pm_id: &str) {
        let held = self
            .provisioned
            .lock()
            .ok()
            .and_then(|p| p.get(pm_id).map(|h| (h.entry.clone(), h.units)));
        if let Some((entry, units)) = held {
            self.release(&entry, pm_id, units);
        }
    }

    /// Gives back a provisioned model's units.
    pub fn release(&self, entry: &ModelEntry, pm_id: &str, units: u32) {
        if let Ok(mut models) = self.models.lock() {
            let key = capacity_key(entry);
            if let Some(model) = models.get_mut(&key) {
                model.reserved_units = model.reserved_units.saturating_sub(units);
                self.resize_on_demand(entry, model);
                reserved_gauge(&key, model.reserved_units);
            }
        }
        if let Ok(mut p) = self.provisioned.lock() {
            p.remove(pm_id);
        }
    }

    fn resize_on_demand(&self, entry: &ModelEntry, model: &mut ModelCapacity) {
        let Some(&slots) = self.local_slots.get(&capacity_key(entry)) else {
            return;
        };
        let reserved = model.reserved_units * self.config.local_slots_per_unit.max(1);
        // A new semaphore: calls holding permits of the old one finish on it.
        model.on_demand = (reserved > 0).then(|| {
            Arc::new(Semaphore::new(
                slots.saturating_sub(reserved).max(1) as usize
            ))
        });
    }

    /// Waits for one of the slots left to on-demand traffic, when the model has
    /// reservations.
    pub async fn admit_on_demand(
        &self,
        entry: &ModelEntry,
    ) -> Result<Option<OwnedSemaphorePermit>, CoreError> {
        let model_id = &entry.id;
        let semaphore = self.models.lock().ok().and_then(|m| {
            m.get(&capacity_key(entry))
                .and_then(|c| c.on_demand.clone())
        });
        let Some(semaphore) = semaphore else {
            return Ok(None);
        };
        match tokio::time::timeout(ON_DEMAND_WAIT, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            _ => Err(CoreError::Throttled(format!(
                "model {model_id}: the capacity left to on-demand traffic is busy; retry later or use provisioned throughput"
            ))),
        }
    }

    /// Batch work on a model with reservations: takes one of the on-demand share's
    /// slots only when it is free and no on-demand call is waiting for it (the
    /// semaphore hands released permits to waiters first), checking every 50 ms.
    pub async fn admit_background(
        &self,
        entry: &ModelEntry,
    ) -> Result<Option<OwnedSemaphorePermit>, CoreError> {
        let semaphore = self.models.lock().ok().and_then(|m| {
            m.get(&capacity_key(entry))
                .and_then(|c| c.on_demand.clone())
        });
        let Some(semaphore) = semaphore else {
            return Ok(None);
        };
        let deadline = tokio::time::Instant::now() + BACKGROUND_WAIT;
        loop {
            match Arc::clone(&semaphore).try_acquire_owned() {
                Ok(permit) => return Ok(Some(permit)),
                Err(tokio::sync::TryAcquireError::Closed) => {
                    return Err(CoreError::ModelNotReady(format!(
                        "model {}: its capacity was reconfigured",
                        entry.id
                    )))
                }
                Err(tokio::sync::TryAcquireError::NoPermits) => {}
            }
            if tokio::time::Instant::now() > deadline {
                return Err(CoreError::Throttled(format!(
                    "model {}: on-demand traffic has used all its capacity for {} s",
                    entry.id,
                    BACKGROUND_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for one of a provisioned model's reserved slots.
    /// Whether this node holds a reservation for provisioned model `pm_id`.
    pub fn is_reserved(&self, pm_id: &str) -> bool {
        self.provisioned
            .lock()
            .map(|p| p.contains_key(pm_id))
            .unwrap_or(false)
    }

    /// Reserves `units` for `pm_id` unless this node holds its reservation already (a
    /// provisioned model made on another node of a fleet, first asked for here). True
    /// when it reserved now.
    pub fn reserve_missing(
        &self,
        entry: &ModelEntry,
        pm_id: &str,
        units: u32,
    ) -> Result<bool, CoreError> {
        let _one_at_a_time = self
            .reserving
            .lock()
            .map_err(|_| CoreError::Internal("capacity lock poisoned".into()))?;
        if self.is_reserved(pm_id) {
            return Ok(false);
        }
        self.reserve(entry, pm_id, units)?;
        Ok(true)
    }

    pub async fn admit_provisioned(&self, pm_id: &str) -> Result<OwnedSemaphorePermit, CoreError> {
        let semaphore = self
            .provisioned
            .lock()
            .ok()
            .and_then(|p| p.get(pm_id).map(|h| Arc::clone(&h.semaphore)))
            .ok_or_else(|| {
                CoreError::ModelNotReady(format!(
                    "provisioned model {pm_id} has no capacity reserved"
                ))
            })?;
        semaphore
            .acquire_owned()
            .await
            .map_err(|_| CoreError::ModelNotReady(format!("provisioned model {pm_id} was deleted")))
    }
}

/// Releases this node's reservations whose provisioned model is gone from the store
/// or failed (those older than [`RECONCILE_GRACE`]).
fn reconcile(core: &Basalt, store: &dyn ProvisionedStore) -> Result<(), CoreError> {
    let held = core.capacity().held();
    if held.is_empty() {
        return Ok(());
    }
    let stored: std::collections::HashSet<String> = store
        .list_provisioned()
        .map_err(store_error)?
        .into_iter()
        .filter(|r| status_of(r) != ProvisionedStatus::Failed)
        .map(|r| r.id)
        .collect();
    for (pm_id, age) in held {
        if age < RECONCILE_GRACE || stored.contains(&pm_id) {
            continue;
        }
        core.capacity().release_held(&pm_id);
        tracing::info!(provisioned = %pm_id, "released the units of a provisioned model deleted on another node");
    }
    Ok(())
}

/// What CreateProvisionedModelThroughput asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedSpec {
    pub name: String,
    pub model_id: String,
    pub model_units: u32,
    pub commitment: Option<String>,
    pub client_token: Option<String>,
}

/// `basalt_provisioned_units_reserved{capacity}`: the units this node holds on a
/// model (local models by their engine's weights, remote ones by ID).
fn reserved_gauge(key: &str, units: u32) {
    metrics::gauge!("basalt_provisioned_units_reserved", "capacity" => key.to_string())
        .set(f64::from(units));
}

/// How often a node compares its reservations with the shared store, and how long a
/// new reservation is left alone (its record is written just after it).
const RECONCILE_EVERY: Duration = Duration::from_secs(2);
const RECONCILE_GRACE: Duration = Duration::from_secs(5);

fn store_error(e: StoreError) -> CoreError {
    crate::common::store_error("provisioned model")(e)
}

use crate::common::now_ms;

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.contains("__")
        && !name.contains("--")
}

/// The provisioned model ID in an ARN, or None when `model_id` is no provisioned ARN.
pub fn provisioned_id(model_id: &str) -> Option<&str> {
    model_id
        .split_once(":provisioned-model/")
        .filter(|(prefix, _)| prefix.starts_with("arn:"))
        .map(|(_, id)| id)
}

/// Provisioned throughput: reserved capacity per provisioned model, its records, and
/// their restoration at start. Calls run through the calling path ([`Basalt`]), which
/// places a call with a provisioned model's ARN on its reservation.
pub struct ProvisionedService {
    core: Arc<Basalt>,
    store: Arc<dyn ProvisionedStore>,
}

impl std::fmt::Debug for ProvisionedService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvisionedService").finish_non_exhaustive()
    }
}

/// A provisioned model by ID, ARN or name.
pub(crate) fn find(
    store: &dyn ProvisionedStore,
    identifier: &str,
) -> Result<ProvisionedRecord, CoreError> {
    let key = provisioned_id(identifier).unwrap_or(identifier);
    store.provisioned(key).map_err(store_error)?.ok_or_else(|| {
        CoreError::NotFound(format!("provisioned model {identifier} does not exist"))
    })
}

impl ProvisionedService {
    /// The service, with the stored provisioned models' capacity reserved again.
    pub fn start(core: Arc<Basalt>, store: Arc<dyn ProvisionedStore>) -> Result<Self, CoreError> {
        let service = Self { core, store };
        service.restore_provisioned()?;
        service.start_reconciler();
        Ok(service)
    }

    /// Every [`RECONCILE_EVERY`], gives back the reservations of provisioned models
    /// deleted by another node of a fleet, so their units
    /// return to this node's on-demand traffic within seconds rather than at restart.
    fn start_reconciler(&self) {
        let core = Arc::downgrade(&self.core);
        let store = Arc::clone(&self.store);
        let spawned = std::thread::Builder::new()
            .name("basalt-provisioned".into())
            .spawn(move || loop {
                std::thread::sleep(RECONCILE_EVERY);
                let Some(core) = core.upgrade() else {
                    return;
                };
                if let Err(e) = reconcile(&core, &*store) {
                    tracing::debug!(error = %e, "provisioned reservations not reconciled this time");
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the provisioned reconciler; units of models deleted on other nodes come back at restart");
        }
    }

    pub fn provisioned_arn(&self, id: &str) -> String {
        format!(
            "arn:aws:bedrock:{}:{}:provisioned-model/{id}",
            self.core.region(),
            self.core.account_id()
        )
    }

    /// The entry a provisioned model reserves on: its catalog entry whatever its
    /// lifecycle, or a custom model's (its base model's weights).
    fn entry_of(&self, model_id: &str) -> Result<std::borrow::Cow<'_, ModelEntry>, CoreError> {
        if crate::custom_models::custom_model_id(model_id).is_some() {
            return self.core.resolve(model_id);
        }
        self.core
            .catalog()
            .get(model_id)
            .map(std::borrow::Cow::Borrowed)
            .ok_or_else(|| CoreError::NotFound(format!("model {model_id} is not in the catalog")))
    }

    /// Re-reserves the capacity of the stored provisioned models (at start); one that
    /// no longer fits is marked `Failed` with the reason.
    fn restore_provisioned(&self) -> Result<(), CoreError> {
        for mut record in self.store.list_provisioned().map_err(store_error)? {
            if status_of(&record) == ProvisionedStatus::Failed {
                continue;
            }
            let reserved = self.entry_of(&record.model_id).and_then(|entry| {
                self.core
                    .capacity()
                    .reserve(&entry, &record.id, record.model_units)
            });
            if let Err(e) = reserved {
                record.status = ProvisionedStatus::Failed.as_str().into();
                record.failure_message = Some(e.to_string());
                record.updated_ms = now_ms();
                self.store
                    .update_provisioned(&record)
                    .map_err(store_error)?;
                tracing::error!(provisioned = %record.id, error = %e, "provisioned model could not be restored");
            } else if status_of(&record) != ProvisionedStatus::InService {
                record.status = ProvisionedStatus::InService.as_str().into();
                record.updated_ms = now_ms();
                self.store
                    .update_provisioned(&record)
                    .map_err(store_error)?;
            }
        }
        Ok(())
    }

    /// CreateProvisionedModelThroughput: reserves the capacity or refuses with what
    /// is left.
    pub fn create_provisioned(&self, spec: ProvisionedSpec) -> Result<ProvisionedModel, CoreError> {
        let store = self.store.as_ref();
        if let Some(token) = &spec.client_token {
            if let Some(existing) = store
                .provisioned_by_client_token(token)
                .map_err(store_error)?
            {
                return Ok(existing.into());
            }
        }
        if !valid_name(&spec.name) {
            return Err(CoreError::Validation(format!(
                "provisionedModelName {:?} must be 1 to 63 letters, digits, single _ or -, starting with a letter or digit",
                spec.name
            )));
        }
        if spec.model_units == 0 {
            return Err(CoreError::Validation(
                "modelUnits must be at least 1".into(),
            ));
        }
        let commitment_ms = match spec.commitment.as_deref() {
            None => None,
            Some("OneMonth") => Some(30 * 86_400_000),
            Some("SixMonths") => Some(182 * 86_400_000),
            Some(other) => {
                return Err(CoreError::Validation(format!(
                    "commitmentDuration {other:?} is not one of OneMonth, SixMonths"
                )))
            }
        };
        let model_id = spec
            .model_id
            .rsplit_once(":foundation-model/")
            .map_or(spec.model_id.as_str(), |(_, id)| id);
        let entry = self.core.resolve(model_id)?;
        if entry.is_embedding() {
            return Err(CoreError::Validation(format!(
                "model {} is an embedding model; provisioned throughput is for chat models",
                entry.id
            )));
        }
        if !entry
            .inference_types
            .contains(&crate::types::InferenceType::Provisioned)
            && !entry.custom
        {
            return Err(CoreError::Validation(format!(
                "model {} does not support provisioned throughput (its catalog entry's inference_types)",
                entry.id
            )));
        }
        if store
            .provisioned(&spec.name)
            .map_err(store_error)?
            .is_some()
        {
            return Err(CoreError::Conflict(format!(
                "a provisioned model named {:?} already exists",
                spec.name
            )));
        }
        let id = crate::common::random_id(12, crate::common::LOWER_ALNUM);
        let at = now_ms();
        self.core
            .capacity()
            .reserve(&entry, &id, spec.model_units)?;
        let record = ProvisionedRecord {
            id: id.clone(),
            name: spec.name,
            model_id: entry.id.clone(),
            desired_model_id: entry.id.clone(),
            model_units: spec.model_units,
            status: ProvisionedStatus::InService.as_str().into(),
            failure_message: None,
            commitment: spec.commitment,
            commitment_expires_ms: commitment_ms.map(|d| at + d),
            client_token: spec.client_token,
            created_ms: at,
            updated_ms: at,
        };
        if let Err(e) = store.insert_provisioned(&record) {
            self.core.capacity().release(&entry, &id, spec.model_units);
            return Err(match e {
                StoreError::Duplicate(what) => CoreError::Conflict(format!(
                    "a provisioned model with this {what} already exists"
                )),
                other => store_error(other),
            });
        }
        Ok(record.into())
    }

    /// GetProvisionedModelThroughput (by ID, ARN or name).
    pub fn provisioned_model(&self, identifier: &str) -> Result<ProvisionedModel, CoreError> {
        self.record(identifier).map(ProvisionedModel::from)
    }

    fn record(&self, identifier: &str) -> Result<ProvisionedRecord, CoreError> {
        find(self.store.as_ref(), identifier)
    }

    /// Every provisioned model, oldest first.
    pub fn list_provisioned(&self) -> Result<Vec<ProvisionedModel>, CoreError> {
        Ok(self
            .store
            .list_provisioned()
            .map_err(store_error)?
            .into_iter()
            .map(ProvisionedModel::from)
            .collect())
    }

    /// UpdateProvisionedModelThroughput: a new name and/or a new model (the capacity
    /// moves to it, or the update is refused and nothing changes).
    pub fn update_provisioned(
        &self,
        identifier: &str,
        name: Option<String>,
        model_id: Option<String>,
    ) -> Result<(), CoreError> {
        let mut record = self.record(identifier)?;
        if let Some(name) = name {
            if !valid_name(&name) {
                return Err(CoreError::Validation(format!(
                    "desiredProvisionedModelName {name:?} is not a valid name"
                )));
            }
            if name != record.name
                && self
                    .store
                    .provisioned(&name)
                    .map_err(store_error)?
                    .is_some()
            {
                return Err(CoreError::Conflict(format!(
                    "a provisioned model named {name:?} already exists"
                )));
            }
            record.name = name;
        }
        if let Some(model_id) = model_id {
            let new = self.core.resolve(&model_id)?.into_owned();
            if new.id != record.model_id {
                let old = self.core.resolve(&record.model_id)?.into_owned();
                self.core
                    .capacity()
                    .release(&old, &record.id, record.model_units);
                if let Err(e) = self
                    .core
                    .capacity()
                    .reserve(&new, &record.id, record.model_units)
                {
                    // Put the old reservation back; the update is refused.
                    self.core
                        .capacity()
                        .reserve(&old, &record.id, record.model_units)?;
                    return Err(e);
                }
                record.model_id = new.id.clone();
                record.desired_model_id = new.id;
            }
        }
        record.status = ProvisionedStatus::InService.as_str().into();
        record.updated_ms = now_ms();
        self.store.update_provisioned(&record).map_err(|e| match e {
            StoreError::Duplicate(_) => CoreError::Conflict("that name is taken".into()),
            other => store_error(other),
        })
    }

    /// DeleteProvisionedModelThroughput: releases the capacity.
    pub fn delete_provisioned(&self, identifier: &str) -> Result<(), CoreError> {
        let record = self.record(identifier)?;
        if let Ok(entry) = self.entry_of(&record.model_id) {
            self.core
                .capacity()
                .release(&entry, &record.id, record.model_units);
        }
        self.store
            .delete_provisioned(&record.id)
            .map_err(store_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_arns() {
        assert!(
            valid_name("my-model_1") && !valid_name("-x") && !valid_name("a__b") && !valid_name("")
        );
        assert_eq!(
            provisioned_id("arn:aws:bedrock:us-east-1:000000000000:provisioned-model/abc123def456"),
            Some("abc123def456")
        );
        assert_eq!(
            provisioned_id("huggingfacetb.smollm2-135m-instruct-v1:0"),
            None
        );
    }
}
