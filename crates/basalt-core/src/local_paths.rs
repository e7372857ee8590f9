//! `file:///absolute/path/` URIs in the fields that take `s3://` URIs, allowed only
//! under the directories the server permits (`allowed_local_paths` in the config and
//! `BASALT_ALLOWED_PATHS`, colon-separated). Paths are resolved with symlinks
//! followed before the check, so neither `..` nor a symlink can leave a permitted
//! directory.

use std::path::{Component, Path, PathBuf};

use crate::CoreError;

/// The directories local URIs may point under (canonical paths).
#[derive(Debug, Clone, Default)]
pub struct AllowedPaths {
    roots: Vec<PathBuf>,
}

/// The environment variable with more permitted directories.
pub const ALLOWED_PATHS_ENV: &str = "BASALT_ALLOWED_PATHS";

impl AllowedPaths {
    /// The configured directories plus those in `BASALT_ALLOWED_PATHS`. One that does
    /// not exist stops the start with an error naming it (skipping it would only
    /// surface later as an AccessDenied on a data source or batch job).
    pub fn from_config(configured: &[String]) -> Result<Self, CoreError> {
        let from_env = std::env::var(ALLOWED_PATHS_ENV).unwrap_or_default();
        let roots = configured
            .iter()
            .map(String::as_str)
            .chain(from_env.split(':'))
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                std::fs::canonicalize(p).map_err(|e| {
                    CoreError::Validation(format!(
                        "the allowed local path {p} (allowed_local_paths or {ALLOWED_PATHS_ENV}) cannot be used: {e}; create it or remove it"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { roots })
    }

    pub fn new(roots: Vec<PathBuf>) -> Self {
        Self { roots }
    }

    /// Resolves a path found on the server's side — a file listed in a permitted
    /// directory — with every symlink followed, and checks the result is still under
    /// a permitted directory. Every file opened on a user's behalf goes through this
    /// (or [`Self::existing`]) and is opened by the path it returns.
    pub fn resolve(&self, path: &Path) -> Result<PathBuf, CoreError> {
        let shown = format!("file://{}", path.display());
        let resolved = std::fs::canonicalize(path)
            .map_err(|e| CoreError::Validation(format!("{shown} cannot be read: {e}")))?;
        self.check(&shown, &resolved)?;
        Ok(resolved)
    }

    fn check(&self, uri: &str, resolved: &Path) -> Result<(), CoreError> {
        if self.roots.iter().any(|root| resolved.starts_with(root)) {
            Ok(())
        } else {
            Err(CoreError::AccessDenied(format!(
                "{uri} is outside the directories this server allows (allowed_local_paths, {ALLOWED_PATHS_ENV})"
            )))
        }
    }

    /// An existing file or directory named by a `file://` URI.
    pub fn existing(&self, uri: &str) -> Result<PathBuf, CoreError> {
        let path = path_of(uri)?;
        let resolved = std::fs::canonicalize(&path)
            .map_err(|e| CoreError::Validation(format!("{uri} cannot be read: {e}")))?;
        self.check(uri, &resolved)?;
        Ok(resolved)
    }

    /// A directory named by a `file://` URI that may not exist yet: its nearest
    /// existing ancestor is resolved (symlinks followed) and the rest appended; `..`
    /// is refused outright.
    pub fn writable_dir(&self, uri: &str) -> Result<PathBuf, CoreError> {
        let path = path_of(uri)?;
        let mut existing = path.as_path();
        let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
        let resolved = loop {
            match std::fs::canonicalize(existing) {
                Ok(c) => break c,
                Err(_) => {
                    let (Some(parent), Some(name)) = (existing.parent(), existing.file_name())
                    else {
                        return Err(CoreError::Validation(format!(
                            "{uri} has no existing parent directory"
                        )));
                    };
                    rest.push(name);
                    existing = parent;
                }
            }
        };
        let full = rest.iter().rev().fold(resolved, |p, name| p.join(name));
        self.check(uri, &full)?;
        Ok(full)
    }
}

/// The absolute path of a `file:///…` URI (percent-escapes decoded); `..` segments
/// and relative paths are refused.
pub fn path_of(uri: &str) -> Result<PathBuf, CoreError> {
    let Some(rest) = uri.strip_prefix("file://") else {
        return Err(CoreError::Validation(format!("{uri} is not a file:// URI")));
    };
    if !rest.starts_with('/') {
        return Err(CoreError::Validation(format!(
            "{uri} must name an absolute path: file:///absolute/path/"
        )));
    }
    let decoded = percent_decode(rest)
        .ok_or_else(|| CoreError::Validation(format!("{uri} has a malformed percent-escape")))?;
    let path = PathBuf::from(decoded);
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(CoreError::AccessDenied(format!(
            "{uri} contains `..`; name the directory directly"
        )));
    }
    Ok(path)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_under_the_roots_pass() {
        let root = tempfile::tempdir().expect("root");
        let outside = tempfile::tempdir().expect("outside");
        std::fs::write(root.path().join("in.jsonl"), "{}\n").expect("write");
        std::fs::write(outside.path().join("secret.jsonl"), "{}\n").expect("write");
        let allowed = AllowedPaths::new(vec![std::fs::canonicalize(root.path()).expect("canon")]);
        let uri = |p: &Path| format!("file://{}", p.display());
        assert!(allowed
            .existing(&uri(&root.path().join("in.jsonl")))
            .is_ok());
        assert!(matches!(
            allowed.existing(&uri(&outside.path().join("secret.jsonl"))),
            Err(CoreError::AccessDenied(_))
        ));
        // A symlink inside the root that points outside is followed, then refused.
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).expect("symlink");
        assert!(matches!(
            allowed.existing(&uri(&root.path().join("link/secret.jsonl"))),
            Err(CoreError::AccessDenied(_))
        ));
        assert!(matches!(
            allowed.writable_dir(&uri(&root.path().join("link/new/out"))),
            Err(CoreError::AccessDenied(_))
        ));
        assert!(matches!(
            allowed.existing(&format!("{}/../x", uri(root.path()))),
            Err(CoreError::AccessDenied(_))
        ));
        assert!(allowed
            .writable_dir(&uri(&root.path().join("new/out/")))
            .is_ok());
        assert!(matches!(
            allowed.existing("s3://bucket/x"),
            Err(CoreError::Validation(_))
        ));
        assert!(matches!(
            allowed.existing("file://relative/x"),
            Err(CoreError::Validation(_))
        ));
    }

    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(
            path_of("file:///a%20b/c").expect("ok"),
            PathBuf::from("/a b/c")
        );
        assert!(path_of("file:///a%2").is_err());
    }
}
