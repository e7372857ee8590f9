//! The files of custom and imported models (a LoRA adapter, an imported GGUF) across
//! a fleet. A model is made on one node (its job's), which writes the file under its
//! data directory; every node reads the model's record from the shared store. With
//! `[customization] artifacts = "s3://bucket/prefix/"`, the node that made a model
//! copies its file to `<prefix><model id>/<file name>` before the record exists, and a
//! node that is asked for a model whose file it does not have copies it into its own
//! data directory (`<data dir>/models/<id>/`) in the background, checks it against the
//! SHA-256 on the record, and answers `ModelNotReadyException` until it is there (as
//! while an engine loads). Deleting the model deletes the object. Without `artifacts`,
//! only the node that made a model serves it; another node answers that it cannot.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use basalt_store::CustomModelRecord;
use sha2::Digest as _;

use crate::background::{BackgroundWork, Progress};
use crate::config::S3Config;
use crate::s3::{S3Locations, S3Uri};
use crate::CoreError;

/// Where model files are shared, and this node's copies.
pub struct ModelArtifacts {
    location: Option<S3Uri>,
    s3: Arc<S3Locations>,
    /// `<customization data dir>/models`: where this node keeps models' files.
    local_root: PathBuf,
    /// Copies under way or failed, by model ID.
    fetching: BackgroundWork,
}

impl std::fmt::Debug for ModelArtifacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelArtifacts")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl ModelArtifacts {
    /// `artifacts`: `[customization] artifacts` (empty: not shared).
    pub fn new(
        artifacts: &str,
        s3: &S3Config,
        region: &str,
        local_root: PathBuf,
    ) -> Result<Self, CoreError> {
        let location = if artifacts.is_empty() {
            None
        } else {
            let uri = S3Uri::parse(artifacts)
                .map_err(|e| CoreError::Validation(format!("[customization] artifacts: {e}")))?;
            Some(uri)
        };
        Ok(Self {
            location,
            s3: Arc::new(S3Locations::new(s3, region)),
            local_root,
            fetching: BackgroundWork::default(),
        })
    }

    /// Whether model files are shared through object storage.
    pub fn is_shared(&self) -> bool {
        self.location.is_some()
    }

    fn key(location: &S3Uri, id: &str, file: &Path) -> String {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{}{id}/{name}", location.dir_prefix())
    }

    /// Copies a new model's file to the shared location (nothing when not shared).
    pub async fn publish(&self, id: &str, file: &Path) -> Result<(), CoreError> {
        let Some(location) = &self.location else {
            return Ok(());
        };
        let key = Self::key(location, id, file);
        self.s3
            .upload(file, &location.bucket, &key)
            .await
            .map_err(|e| {
                CoreError::ServiceUnavailable(format!(
                    "cannot share the model's file through [customization] artifacts: {e}"
                ))
            })
    }

    /// Deletes a deleted model's shared file (nothing when not shared).
    pub async fn remove(&self, record: &CustomModelRecord) {
        let Some(location) = &self.location else {
            return;
        };
        let key = Self::key(location, &record.id, Path::new(&record.adapter_path));
        if let Err(e) = self.s3.delete(&location.bucket, &key).await {
            tracing::warn!(model = %record.id, error = %e, "cannot delete a deleted model's shared file");
        }
    }

    /// The model's file on this node: `<data dir>/models/<id>/<file>` (where the node
    /// that made it wrote it, and where other nodes keep their copies). When it is not
    /// there: with a shared location, the copy starts and the answer is
    /// `ModelNotReady`; without one, the file the record names if this node can read
    /// it (a data directory that moved), else `ServiceUnavailable` naming the setting.
    pub fn local_file(&self, record: &CustomModelRecord) -> Result<PathBuf, CoreError> {
        let copy = self.local_copy(record);
        if copy.is_file() {
            return Ok(copy);
        }
        let own = PathBuf::from(&record.adapter_path);
        let Some(location) = &self.location else {
            if own.is_file() {
                return Ok(own);
            }
            return Err(CoreError::ServiceUnavailable(format!(
                "model {}'s file is on the node that made it, not on this one; set [customization] artifacts to share model files across a fleet",
                record.name
            )));
        };
        let not_ready = |progress: Option<Progress>| {
            match progress {
            Some(Progress::Failed(reason)) => CoreError::ModelNotReady(format!(
                "model {}'s file could not be copied to this node ({reason}); the next request tries again",
                record.name
            )),
            _ => CoreError::ModelNotReady(format!(
                "model {}'s file is being copied to this node; retry shortly",
                record.name
            )),
        }
        };
        let job = Fetch {
            s3: Arc::clone(&self.s3),
            bucket: location.bucket.clone(),
            key: Self::key(location, &record.id, &own),
            dest: copy,
            sha256: record.adapter_sha256.clone(),
        };
        let name = record.name.clone();
        let progress = self
            .fetching
            .start(&record.id, "basalt-model-copy", move || {
                tracing::info!(model = %name, "copying a model's file to this node");
                job.run().map_err(|e| {
                    tracing::warn!(model = %name, error = %e, "cannot copy a model's file");
                    e.to_string()
                })
            })?;
        Err(not_ready(progress))
    }

    fn local_copy(&self, record: &CustomModelRecord) -> PathBuf {
        let name = Path::new(&record.adapter_path)
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "model".into());
        self.local_root.join(&record.id).join(name)
    }

    /// Removes this node's files of a deleted model (`id`), if it has any.
    pub fn forget(&self, id: &str) {
        if !crate::common::is_resource_id(id) {
            return;
        }
        let dir = self.local_root.join(id);
        if dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a deleted model's files");
            }
        }
    }
}

/// One copy of a model's file from the shared location.
struct Fetch {
    s3: Arc<S3Locations>,
    bucket: String,
    key: String,
    dest: PathBuf,
    sha256: String,
}

impl Fetch {
    fn run(self) -> Result<(), CoreError> {
        let dir = self
            .dest
            .parent()
            .ok_or_else(|| CoreError::Internal("a model copy has no folder".into()))?;
        std::fs::create_dir_all(dir)
            .map_err(|e| CoreError::Internal(format!("cannot create {}: {e}", dir.display())))?;
        let partial = self.dest.with_extension("download");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CoreError::Internal(format!("cannot start a runtime: {e}")))?;
        runtime.block_on(self.s3.download_key(&self.bucket, &self.key, &partial))?;
        let found = file_sha256(&partial)?;
        if found != self.sha256 {
            let _ = std::fs::remove_file(&partial);
            return Err(CoreError::Internal(format!(
                "s3://{}/{} has SHA-256 {found}, not the model's {}",
                self.bucket, self.key, self.sha256
            )));
        }
        std::fs::rename(&partial, &self.dest)
            .map_err(|e| CoreError::Internal(format!("cannot keep {}: {e}", self.dest.display())))
    }
}

/// A file's SHA-256 (hex), read in blocks (a model may be larger than memory).
pub(crate) fn file_sha256(path: &Path) -> Result<String, CoreError> {
    use std::io::Read;
    let io =
        |e: std::io::Error| CoreError::Internal(format!("cannot read {}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, path: &Path) -> CustomModelRecord {
        CustomModelRecord {
            id: id.into(),
            name: "m".into(),
            key_id: None,
            base_model_id: String::new(),
            job_id: "j".into(),
            customization_type: "IMPORTED".into(),
            adapter_path: path.to_string_lossy().into_owned(),
            adapter_sha256: String::new(),
            details_json: "{}".into(),
            created_ms: 0,
        }
    }

    fn artifacts(location: &str, root: &Path) -> ModelArtifacts {
        ModelArtifacts::new(
            location,
            &S3Config::default(),
            "us-east-1",
            root.to_path_buf(),
        )
        .expect("artifacts")
    }

    #[test]
    fn a_file_on_another_node_is_refused_without_a_shared_location() {
        let dir = tempfile::tempdir().expect("dir");
        let unshared = artifacts("", &dir.path().join("models"));
        let elsewhere = record(
            "abcdef123456",
            Path::new("/elsewhere/models/abcdef123456/model.gguf"),
        );
        match unshared.local_file(&elsewhere) {
            Err(CoreError::ServiceUnavailable(m)) => {
                assert!(m.contains("[customization] artifacts"), "{m}")
            }
            other => panic!("expected ServiceUnavailable, got {other:?}"),
        }
        // This node's own file, where its data directory keeps models, is used.
        let mine = dir.path().join("models/abcdef123456/model.gguf");
        std::fs::create_dir_all(mine.parent().expect("parent")).expect("dir");
        std::fs::write(&mine, b"GGUF").expect("file");
        assert_eq!(unshared.local_file(&elsewhere).expect("found"), mine);
        // Deleting forgets it; an ID that is not a resource ID touches nothing.
        unshared.forget("../../etc");
        unshared.forget("abcdef123456");
        assert!(!mine.exists());
    }

    #[test]
    fn a_shared_location_must_be_an_s3_uri() {
        let dir = tempfile::tempdir().expect("dir");
        let err = ModelArtifacts::new(
            "/shared/models",
            &S3Config::default(),
            "us-east-1",
            dir.path().into(),
        )
        .expect_err("not s3");
        assert!(
            err.to_string().contains("[customization] artifacts"),
            "{err}"
        );
        assert!(artifacts("s3://models-bucket/fleet/", dir.path()).is_shared());
    }
}
