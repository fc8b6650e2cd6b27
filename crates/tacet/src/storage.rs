//! Where the lake lives (`[storage]`, and `[tenant.storage]` for a tenant pinned elsewhere): local disk
//! under the data directory by default, or S3 and S3-compatible stores through object_store's AWS backend.
//!
//! S3 credentials are never in the file: object_store reads the standard AWS environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT`, …) and
//! otherwise asks the platform (EKS web identity, ECS task role, EC2 instance metadata).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::prefix::PrefixStore;
use serde::Deserialize;

/// Which object store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A directory on local disk (`path`, default `<data_dir>/lake`); writes are fsynced.
    #[default]
    Local,
    /// An S3 bucket (AWS, or any S3-compatible server through `endpoint`).
    S3,
}

/// `[storage]` or `[tenant.storage]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub backend: Backend,
    /// Local only: the lake directory; default `<data_dir>/lake`.
    pub path: Option<PathBuf>,
    /// S3 only: the bucket (required).
    pub bucket: Option<String>,
    /// S3 only: a key prefix inside the bucket (`prod/tacet`); the lake layout starts below it.
    pub prefix: Option<String>,
    /// S3 only: the bucket's region; default from `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// S3 only: an S3-compatible server (`http://127.0.0.1:9000`); default AWS.
    pub endpoint: Option<String>,
    /// S3 only: allow plain-HTTP endpoints (a local test server). Off: TLS required.
    pub allow_http: bool,
    /// S3 only: how long one request is retried (with backoff) before it fails; default 60 s. A failed
    /// flush is retried whole at the next flusher tick, and `/readyz` says so meanwhile.
    #[serde(with = "humantime_serde")]
    pub retry_timeout: Option<std::time::Duration>,
}

/// How long an S3 request is retried when `retry_timeout` is not set.
const DEFAULT_RETRY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl StorageConfig {
    /// Refuses settings that do not fit the backend, naming the section (`storage` or
    /// `tenant "a" storage`).
    pub fn validate(&self, section: &str) -> anyhow::Result<()> {
        match self.backend {
            Backend::Local => {
                let s3_only = [
                    ("bucket", self.bucket.is_some()),
                    ("prefix", self.prefix.is_some()),
                    ("region", self.region.is_some()),
                    ("endpoint", self.endpoint.is_some()),
                    ("allow_http", self.allow_http),
                    ("retry_timeout", self.retry_timeout.is_some()),
                ];
                if let Some((key, _)) = s3_only.iter().find(|(_, set)| *set) {
                    bail!(
                        "[{section}] {key} is an S3 setting, but backend is \"local\"; set backend = \"s3\" or remove {key}"
                    );
                }
            }
            Backend::S3 => {
                if self.path.is_some() {
                    bail!(
                        "[{section}] path is a local setting, but backend is \"s3\"; use bucket and prefix"
                    );
                }
                if self.bucket.as_deref().is_none_or(str::is_empty) {
                    bail!("[{section}] backend = \"s3\" needs bucket = \"<name>\"");
                }
            }
        }
        Ok(())
    }

    pub(crate) fn s3(&self) -> anyhow::Result<Arc<dyn ObjectStore>> {
        let bucket = self.bucket.as_deref().unwrap_or_default();
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(region) = &self.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if self.allow_http {
            builder = builder.with_allow_http(true);
        }
        builder = builder.with_retry(object_store::RetryConfig {
            retry_timeout: self.retry_timeout.unwrap_or(DEFAULT_RETRY_TIMEOUT),
            ..Default::default()
        });
        let store = builder
            .build()
            .with_context(|| format!("cannot set up the S3 bucket {bucket:?}"))?;
        Ok(match self.prefix.as_deref().map(|p| p.trim_matches('/')) {
            Some(p) if !p.is_empty() => Arc::new(PrefixStore::new(store, p)),
            _ => Arc::new(store),
        })
    }

    /// A short description for the start-up banner (no credentials); a local lake without `path` is
    /// `<data_dir>/lake`.
    pub fn describe(&self, data_dir: &std::path::Path) -> String {
        match self.backend {
            Backend::Local => self
                .path
                .clone()
                .unwrap_or_else(|| data_dir.join("lake"))
                .display()
                .to_string(),
            Backend::S3 => format!(
                "s3://{}/{}{}",
                self.bucket.as_deref().unwrap_or_default(),
                self.prefix.as_deref().unwrap_or_default(),
                self.endpoint
                    .as_deref()
                    .map(|e| format!(" at {e}"))
                    .unwrap_or_default()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_must_fit_the_backend() {
        let parse = |t: &str| -> StorageConfig { toml::from_str(t).unwrap() };
        assert!(parse("").validate("storage").is_ok());
        let e = parse("bucket = \"b\"").validate("storage").unwrap_err();
        assert!(e.to_string().contains("bucket is an S3 setting"), "{e}");
        let e = parse("backend = \"s3\"").validate("storage").unwrap_err();
        assert!(e.to_string().contains("needs bucket"), "{e}");
        let e = parse("backend = \"s3\"\nbucket = \"b\"\npath = \"/x\"")
            .validate("storage")
            .unwrap_err();
        assert!(e.to_string().contains("path is a local setting"), "{e}");
        assert!(
            parse("backend = \"s3\"\nbucket = \"b\"\nprefix = \"p\"\nendpoint = \"http://127.0.0.1:1\"\nallow_http = true")
                .validate("storage")
                .is_ok()
        );
        assert!(toml::from_str::<StorageConfig>("backend = \"gcs\"").is_err());
    }
}
