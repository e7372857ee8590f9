//! Application inference profiles (CreateInferenceProfile, Get, List, Delete): a named
//! handle on one model, usable as `modelId` by its ARN. Calls through a profile run
//! on its model and are metered under the profile (`InvocationRecord::inference_profile`),
//! so usage and cost can be reported per application.

use std::sync::Arc;

use basalt_store::{InferenceProfileRecord, InferenceProfileStore, StoreError};

use crate::common::{now_ms, random_id, LOWER_ALNUM};
use crate::{Basalt, CoreError};

/// The profile ID in an application inference profile's ARN.
pub fn profile_id(model_id: &str) -> Option<&str> {
    model_id
        .split_once(":application-inference-profile/")
        .filter(|(prefix, _)| prefix.starts_with("arn:"))
        .map(|(_, id)| id)
}

fn store_error(e: StoreError) -> CoreError {
    crate::common::store_error("inference profile")(e)
}

/// A profile by ID or ARN.
pub(crate) fn find(
    store: &dyn InferenceProfileStore,
    identifier: &str,
) -> Result<InferenceProfileRecord, CoreError> {
    let id = profile_id(identifier).unwrap_or(identifier);
    store
        .inference_profile(id)
        .map_err(store_error)?
        .ok_or_else(|| {
            CoreError::NotFound(format!("inference profile {identifier} does not exist"))
        })
}

/// An application inference profile as the service gives it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceProfile {
    /// 12 lowercase letters and digits.
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// The catalog model its calls go to.
    pub model_id: String,
    pub tags: Vec<(String, String)>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl From<InferenceProfileRecord> for InferenceProfile {
    fn from(r: InferenceProfileRecord) -> Self {
        let tags = crate::common::tags_of(r.tags_json.as_deref());
        Self {
            id: r.id,
            name: r.name,
            description: r.description,
            model_id: r.model_id,
            tags,
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
        }
    }
}

/// What CreateInferenceProfile asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InferenceProfileSpec {
    pub name: String,
    pub description: Option<String>,
    /// A foundation-model ARN or a system-defined inference profile's ARN.
    pub copy_from: String,
    pub tags: Vec<(String, String)>,
    pub client_token: Option<String>,
}

/// Bedrock's name rule: letters and digits, each optionally followed by one space,
/// `_` or `-`; at most 64 characters.
fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphanumeric()
        && bytes.windows(2).all(|w| {
            w[1].is_ascii_alphanumeric()
                || (w[0].is_ascii_alphanumeric() && matches!(w[1], b' ' | b'_' | b'-'))
        })
}

/// Application inference profiles.
pub struct InferenceProfileService {
    core: Arc<Basalt>,
    store: Arc<dyn InferenceProfileStore>,
}

impl std::fmt::Debug for InferenceProfileService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferenceProfileService")
            .finish_non_exhaustive()
    }
}

impl InferenceProfileService {
    pub fn new(core: Arc<Basalt>, store: Arc<dyn InferenceProfileStore>) -> Self {
        Self { core, store }
    }

    pub fn arn(&self, id: &str) -> String {
        format!(
            "arn:aws:bedrock:{}:{}:application-inference-profile/{id}",
            self.core.region(),
            self.core.account_id()
        )
    }

    /// The catalog model a `copyFrom` ARN names: a foundation model, or a
    /// system-defined inference profile (`us.<model>`, `eu.<model>`, ...), whose model
    /// this server serves under the ID without the geography prefix (or an alias).
    fn source_model(&self, copy_from: &str) -> Result<String, CoreError> {
        let named = copy_from
            .split_once(":foundation-model/")
            .or_else(|| copy_from.split_once(":inference-profile/"))
            .filter(|(prefix, _)| prefix.starts_with("arn:"))
            .map(|(_, id)| id)
            .ok_or_else(|| {
                CoreError::Validation(format!(
                    "modelSource.copyFrom {copy_from:?} is not a foundation-model or inference-profile ARN"
                ))
            })?;
        let first = match self.core.resolve(named) {
            Ok(entry) => return Ok(entry.id.clone()),
            Err(e) => e,
        };
        let without_geography = named.split_once('.').map(|(_, rest)| rest);
        match without_geography.map(|id| self.core.resolve(id)) {
            Some(Ok(entry)) => Ok(entry.id.clone()),
            _ => Err(first),
        }
    }

    /// CreateInferenceProfile; a repeated client token returns the profile it made.
    pub fn create(&self, spec: InferenceProfileSpec) -> Result<InferenceProfile, CoreError> {
        if let Some(token) = &spec.client_token {
            if let Some(existing) = self
                .store
                .inference_profile_by_client_token(token)
                .map_err(store_error)?
            {
                return Ok(existing.into());
            }
        }
        if !valid_name(&spec.name) {
            return Err(CoreError::Validation(format!(
                "inferenceProfileName {:?} must be 1 to 64 letters and digits, each optionally followed by one space, _ or -",
                spec.name
            )));
        }
        if spec
            .description
            .as_ref()
            .is_some_and(|d| d.is_empty() || d.chars().count() > 200)
        {
            return Err(CoreError::Validation(
                "description must be 1 to 200 characters long".into(),
            ));
        }
        if spec.tags.len() > 200 {
            return Err(CoreError::Validation("at most 200 tags are allowed".into()));
        }
        if let Some((k, _)) = spec
            .tags
            .iter()
            .find(|(k, v)| k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256)
        {
            return Err(CoreError::Validation(format!(
                "tag {k:?}: keys are 1 to 128 characters, values at most 256"
            )));
        }
        let model_id = self.source_model(&spec.copy_from)?;
        let tags_json = crate::common::tags_json(&spec.tags);
        let at = now_ms();
        let record = InferenceProfileRecord {
            id: random_id(12, LOWER_ALNUM),
            name: spec.name,
            description: spec.description,
            model_id,
            tags_json,
            client_token: spec.client_token,
            created_ms: at,
            updated_ms: at,
        };
        self.store
            .insert_inference_profile(&record)
            .map_err(|e| match e {
                StoreError::Duplicate("name") => CoreError::Conflict(format!(
                    "an inference profile named {:?} already exists",
                    record.name
                )),
                other => store_error(other),
            })?;
        Ok(record.into())
    }

    /// GetInferenceProfile (by ID or ARN).
    pub fn get(&self, identifier: &str) -> Result<InferenceProfile, CoreError> {
        find(self.store.as_ref(), identifier).map(InferenceProfile::from)
    }

    /// Every application inference profile, oldest first.
    pub fn list(&self) -> Result<Vec<InferenceProfile>, CoreError> {
        Ok(self
            .store
            .list_inference_profiles()
            .map_err(store_error)?
            .into_iter()
            .map(InferenceProfile::from)
            .collect())
    }

    /// DeleteInferenceProfile.
    pub fn delete(&self, identifier: &str) -> Result<(), CoreError> {
        let record = self.get(identifier)?;
        self.store
            .delete_inference_profile(&record.id)
            .map_err(store_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_arns() {
        assert!(valid_name("team-a chat_1") && valid_name("a"));
        assert!(!valid_name("") && !valid_name("-a") && !valid_name("a--b") && !valid_name("a  b"));
        assert!(!valid_name(&"a".repeat(65)));
        assert_eq!(
            profile_id(
                "arn:aws:bedrock:us-east-1:000000000000:application-inference-profile/abc123"
            ),
            Some("abc123")
        );
        assert_eq!(profile_id("huggingfacetb.smollm2-135m-instruct-v1:0"), None);
    }
}
