//! `s3://bucket/key` locations on an S3-compatible object store (AWS S3, MinIO,
//! Ceph, …) through the `object_store` crate. The server reads and writes with its
//! own credentials (`[s3]` in the config), so a location is allowed only in the
//! buckets the configuration names (`allowed_buckets`; `"*"` allows any bucket the
//! credentials reach). Anything else is an AccessDeniedException, as a local path
//! outside `allowed_local_paths` is.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use tokio::io::AsyncWriteExt;

use crate::config::S3Config;
use crate::CoreError;

/// A parsed `s3://bucket/key` URI (the key may be empty or end in `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Uri {
    pub bucket: String,
    pub key: String,
}

impl S3Uri {
    /// Parses an `s3://` URI; the bucket name must be a valid S3 bucket name.
    pub fn parse(uri: &str) -> Result<Self, CoreError> {
        let rest = uri
            .strip_prefix("s3://")
            .ok_or_else(|| CoreError::Validation(format!("{uri} is not an s3:// URI")))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && bucket
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && bucket
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric());
        if !valid_bucket {
            return Err(CoreError::Validation(format!(
                "{uri}: {bucket:?} is not a valid S3 bucket name"
            )));
        }
        if key
            .split('/')
            .any(|segment| segment == "." || segment == "..")
        {
            return Err(CoreError::Validation(format!(
                "{uri}: a key may not contain . or .. segments"
            )));
        }
        Ok(Self {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// The key as a "directory" prefix: empty, or ending in `/`.
    pub fn dir_prefix(&self) -> String {
        if self.key.is_empty() || self.key.ends_with('/') {
            self.key.clone()
        } else {
            format!("{}/", self.key)
        }
    }

    /// `s3://bucket/key`.
    pub fn uri_of(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

/// An object found under a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Object {
    /// The last segment of its key.
    pub name: String,
    pub key: String,
    pub size: u64,
    /// The store's own path of it (kept so the key is never re-encoded).
    path: ObjectPath,
}

/// The server's S3 access: one client per bucket, made on first use.
pub struct S3Locations {
    config: S3Config,
    region: String,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl std::fmt::Debug for S3Locations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Locations")
            .field("endpoint", &self.config.endpoint)
            .field("allowed_buckets", &self.config.allowed_buckets)
            .finish_non_exhaustive()
    }
}

fn object_error(uri: &str, e: object_store::Error) -> CoreError {
    match e {
        object_store::Error::NotFound { .. } => {
            CoreError::Validation(format!("{uri} does not exist"))
        }
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => CoreError::AccessDenied(format!(
            "the server's S3 credentials may not access {uri}: {e}"
        )),
        other => CoreError::ServiceUnavailable(format!("S3 request for {uri} failed: {other}")),
    }
}

impl S3Locations {
    /// From `[s3]`; `region` is the server's region, used when `[s3] region` is empty.
    pub fn new(config: &S3Config, region: &str) -> Self {
        Self {
            config: config.clone(),
            region: region.to_string(),
            stores: Mutex::new(HashMap::new()),
        }
    }

    /// Parses `uri` and checks its bucket is one the server may use.
    pub fn check(&self, uri: &str) -> Result<S3Uri, CoreError> {
        let parsed = S3Uri::parse(uri)?;
        let allowed = &self.config.allowed_buckets;
        if allowed.iter().any(|b| b == "*" || *b == parsed.bucket) {
            Ok(parsed)
        } else if allowed.is_empty() {
            Err(CoreError::AccessDenied(format!(
                "{uri}: this server allows no S3 buckets (set [s3] allowed_buckets in its configuration)"
            )))
        } else {
            Err(CoreError::AccessDenied(format!(
                "{uri}: bucket {} is not one this server allows ([s3] allowed_buckets)",
                parsed.bucket
            )))
        }
    }

    fn store(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, CoreError> {
        let mut stores = self
            .stores
            .lock()
            .map_err(|_| CoreError::Internal("S3 client cache poisoned".into()))?;
        if let Some(s) = stores.get(bucket) {
            return Ok(Arc::clone(s));
        }
        let c = &self.config;
        let env = |name: &str| {
            (!name.is_empty())
                .then(|| std::env::var(name).ok())
                .flatten()
                .filter(|v| !v.is_empty())
        };
        let region = if c.region.is_empty() {
            self.region.as_str()
        } else {
            c.region.as_str()
        };
        let endpoint = if c.endpoint.is_empty() {
            env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL"))
        } else {
            Some(c.endpoint.clone())
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(region)
            .with_virtual_hosted_style_request(!c.path_style)
            .with_retry(RetryConfig {
                max_retries: c.max_retries,
                retry_timeout: Duration::from_secs(c.timeout_secs.max(1)),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(Duration::from_secs(c.timeout_secs.max(1)))
                    .with_connect_timeout(Duration::from_secs(5)),
            );
        if let Some(endpoint) = endpoint {
            builder = builder
                .with_allow_http(endpoint.starts_with("http://"))
                .with_endpoint(endpoint);
        }
        if let Some(id) = env(&c.access_key_id_env) {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = env(&c.secret_access_key_env) {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(token) = env(&c.session_token_env) {
            builder = builder.with_token(token);
        }
        let store: Arc<dyn ObjectStore> = Arc::new(builder.build().map_err(|e| {
            CoreError::Internal(format!("the [s3] configuration is not usable: {e}"))
        })?);
        stores.insert(bucket.to_string(), Arc::clone(&store));
        Ok(store)
    }

    /// The input objects a location names: the object itself when the key names one,
    /// otherwise the objects directly under it (as a folder) whose names end in
    /// `suffix`, sorted by name. None found is a ValidationException.
    pub async fn objects(
        &self,
        location: &S3Uri,
        suffix: &str,
    ) -> Result<Vec<S3Object>, CoreError> {
        let store = self.store(&location.bucket)?;
        let uri = location.uri_of(&location.key);
        if !location.key.is_empty() && !location.key.ends_with('/') {
            match store.head(&ObjectPath::from(location.key.as_str())).await {
                Ok(meta) => {
                    return Ok(vec![S3Object {
                        name: meta.location.filename().unwrap_or_default().to_string(),
                        key: meta.location.to_string(),
                        size: meta.size,
                        path: meta.location,
                    }])
                }
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(object_error(&uri, e)),
            }
        }
        let prefix = location.dir_prefix();
        let prefix_path =
            (!prefix.is_empty()).then(|| ObjectPath::from(prefix.trim_end_matches('/')));
        let listing = store
            .list_with_delimiter(prefix_path.as_ref())
            .await
            .map_err(|e| object_error(&uri, e))?;
        let mut found: Vec<S3Object> = listing
            .objects
            .into_iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?.to_string();
                name.ends_with(suffix).then(|| S3Object {
                    name,
                    key: meta.location.to_string(),
                    size: meta.size,
                    path: meta.location,
                })
            })
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        if found.is_empty() {
            return Err(CoreError::Validation(format!(
                "{uri} names no object and has no {suffix} objects under it"
            )));
        }
        Ok(found)
    }

    /// Every object under a location's key prefix, at any depth, sorted by key (a
    /// knowledge-base data source). A bucket that does not exist is an error; an empty
    /// prefix is an empty list.
    pub async fn objects_under(&self, location: &S3Uri) -> Result<Vec<S3Object>, CoreError> {
        let store = self.store(&location.bucket)?;
        let uri = location.uri_of(&location.key);
        let prefix = location.key.trim_end_matches('/');
        let prefix_path = (!prefix.is_empty()).then(|| ObjectPath::from(prefix));
        let mut listing = store.list(prefix_path.as_ref());
        let mut found = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| object_error(&uri, e))?;
            let key = meta.location.to_string();
            if !key.starts_with(location.key.as_str()) {
                continue;
            }
            found.push(S3Object {
                name: meta.location.filename().unwrap_or_default().to_string(),
                key,
                size: meta.size,
                path: meta.location,
            });
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    /// An object's bytes (at most `limit`; a larger object is a ValidationException).
    pub async fn read(
        &self,
        bucket: &str,
        object: &S3Object,
        limit: u64,
    ) -> Result<Vec<u8>, CoreError> {
        let uri = format!("s3://{bucket}/{}", object.key);
        if object.size > limit {
            return Err(CoreError::Validation(format!(
                "{uri} is {} bytes; the limit is {limit}",
                object.size
            )));
        }
        let store = self.store(bucket)?;
        let result = store
            .get(&object.path)
            .await
            .map_err(|e| object_error(&uri, e))?;
        let bytes = result.bytes().await.map_err(|e| object_error(&uri, e))?;
        Ok(bytes.to_vec())
    }

    /// Copies an object found by [`Self::objects`] to a local file (written to a
    /// temporary name, then renamed).
    pub async fn download(
        &self,
        bucket: &str,
        object: &S3Object,
        dest: &Path,
    ) -> Result<(), CoreError> {
        let uri = format!("s3://{bucket}/{}", object.key);
        self.copy_to_file(bucket, &object.path, &uri, dest).await
    }

    /// Copies `s3://bucket/key` to a local file (written to a temporary name, then
    /// renamed).
    pub async fn download_key(
        &self,
        bucket: &str,
        key: &str,
        dest: &Path,
    ) -> Result<(), CoreError> {
        let uri = format!("s3://{bucket}/{key}");
        self.copy_to_file(bucket, &ObjectPath::from(key), &uri, dest)
            .await
    }

    async fn copy_to_file(
        &self,
        bucket: &str,
        path: &ObjectPath,
        uri: &str,
        dest: &Path,
    ) -> Result<(), CoreError> {
        let store = self.store(bucket)?;
        let result = store.get(path).await.map_err(|e| object_error(uri, e))?;
        let partial = dest.with_extension("partial");
        let io =
            |e: std::io::Error| CoreError::Internal(format!("cannot stage {uri} locally: {e}"));
        let mut file = tokio::fs::File::create(&partial).await.map_err(io)?;
        let mut body = result.into_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| object_error(&uri, e))?;
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        drop(file);
        tokio::fs::rename(&partial, dest).await.map_err(io)?;
        Ok(())
    }

    /// Deletes `s3://bucket/key` (an object already gone is no error).
    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), CoreError> {
        let uri = format!("s3://{bucket}/{key}");
        let store = self.store(bucket)?;
        match store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(object_error(&uri, e)),
        }
    }

    /// Writes a local file to `s3://bucket/key` (multipart for large files).
    pub async fn upload(&self, src: &Path, bucket: &str, key: &str) -> Result<(), CoreError> {
        let uri = format!("s3://{bucket}/{key}");
        let store = self.store(bucket)?;
        let io = |e: std::io::Error| {
            CoreError::Internal(format!("cannot read {} for {uri}: {e}", src.display()))
        };
        let mut file = tokio::fs::File::open(src).await.map_err(io)?;
        let mut writer = object_store::buffered::BufWriter::new(store, ObjectPath::from(key));
        tokio::io::copy(&mut file, &mut writer)
            .await
            .map_err(|e| CoreError::ServiceUnavailable(format!("cannot write {uri}: {e}")))?;
        writer
            .shutdown()
            .await
            .map_err(|e| CoreError::ServiceUnavailable(format!("cannot write {uri}: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locations(allowed: &[&str]) -> S3Locations {
        S3Locations::new(
            &S3Config {
                allowed_buckets: allowed.iter().map(|s| s.to_string()).collect(),
                ..S3Config::default()
            },
            "us-east-1",
        )
    }

    #[test]
    fn uris_parse_into_bucket_and_key() {
        assert_eq!(
            S3Uri::parse("s3://my-bucket/in/records.jsonl").expect("uri"),
            S3Uri {
                bucket: "my-bucket".into(),
                key: "in/records.jsonl".into()
            }
        );
        assert_eq!(S3Uri::parse("s3://my-bucket").expect("uri").key, "");
        assert_eq!(
            S3Uri::parse("s3://my-bucket/out")
                .expect("uri")
                .dir_prefix(),
            "out/"
        );
        assert_eq!(
            S3Uri::parse("s3://my-bucket/out/")
                .expect("uri")
                .dir_prefix(),
            "out/"
        );
        for bad in [
            "s3://",
            "s3://ab/x",
            "s3://Upper/x",
            "s3://-dash/x",
            "s3://b_u/x",
            "file:///x",
            "s3://bucket/a/../b",
        ] {
            assert!(
                matches!(S3Uri::parse(bad), Err(CoreError::Validation(_))),
                "{bad} parsed"
            );
        }
    }

    #[test]
    fn only_allowed_buckets_pass() {
        assert!(locations(&["data"]).check("s3://data/x").is_ok());
        assert!(
            matches!(locations(&["data"]).check("s3://other/x"), Err(CoreError::AccessDenied(m)) if m.contains("other"))
        );
        assert!(
            matches!(locations(&[]).check("s3://data/x"), Err(CoreError::AccessDenied(m)) if m.contains("allows no S3 buckets"))
        );
        assert!(locations(&["*"]).check("s3://anything/x").is_ok());
    }
}
