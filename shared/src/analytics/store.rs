//! Where the sink's files go: an object store through the `object_store` crate — a local
//! directory (the default, and what the embedded mode uses) or any S3-compatible store.
//!
//! Every write is a *create-if-absent* put ([`PutMode::Create`]): on S3 an `If-None-Match: *`
//! PUT, on a local directory a hard link from a staged file. Both are atomic — a reader sees the
//! whole object or nothing, never a partial file — and neither can replace an object that is
//! there, so a replayed range can never produce a second copy.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

/// An object store and where it is, for messages.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    location: String,
    /// The local directory, for a local store.
    local: Option<PathBuf>,
}

/// How to reach an S3-compatible store (Kafka Connect S3 sink's property names in brackets).
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// The bucket (`s3.bucket.name`).
    pub bucket: String,
    /// An S3-compatible endpoint such as `http://127.0.0.1:9000` (`store.url`); none for AWS.
    pub endpoint: Option<String>,
    /// `s3.region` (default `us-east-1`).
    pub region: Option<String>,
    /// `aws.access.key.id` / `aws.secret.access.key`; else the `AWS_*` environment.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// What a create-if-absent put found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Written,
    /// An object was already there (left as it was).
    AlreadyThere,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.location)
    }
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.location)
    }
}

impl Store {
    /// A local directory (created if missing). Writes are fsynced: a file the sink committed
    /// survives a power cut, not only a crash.
    pub fn local(dir: impl Into<PathBuf>) -> anyhow::Result<Store> {
        let dir: PathBuf = dir.into();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        let inner = LocalFileSystem::new_with_prefix(&dir)
            .with_context(|| format!("opening {}", dir.display()))?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        Ok(Store {
            inner: Arc::new(inner),
            location: format!("file://{}", dir.display()),
            local: Some(dir),
        })
    }

    /// An S3 bucket.
    pub fn s3(options: &S3Options) -> anyhow::Result<Store> {
        anyhow::ensure!(!options.bucket.is_empty(), "no bucket (s3.bucket.name)");
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&options.bucket)
            .with_region(options.region.as_deref().unwrap_or("us-east-1"));
        if let Some(endpoint) = &options.endpoint {
            // S3-compatible servers answer on paths (`<endpoint>/<bucket>/<key>`), often over
            // plain HTTP on a private network.
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(id) = &options.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &options.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let inner = builder
            .build()
            .with_context(|| format!("configuring the S3 bucket {}", options.bucket))?;
        let location = match &options.endpoint {
            Some(endpoint) => format!("{}/{}", endpoint.trim_end_matches('/'), options.bucket),
            None => format!("s3://{}", options.bucket),
        };
        Ok(Store {
            inner: Arc::new(inner),
            location,
            local: None,
        })
    }

    /// A store from one URL: `s3://<bucket>` (AWS, credentials from the `AWS_*` environment),
    /// `file:///<dir>`, or a plain directory path.
    pub fn from_url(url: &str) -> anyhow::Result<Store> {
        if let Some(bucket) = url.strip_prefix("s3://") {
            anyhow::ensure!(
                !bucket.trim_matches('/').contains('/'),
                "{url}: a bucket only (the sink's `topics.dir` says where under it)"
            );
            return Store::s3(&S3Options {
                bucket: bucket.trim_matches('/').to_owned(),
                ..S3Options::default()
            });
        }
        let dir = url.strip_prefix("file://").unwrap_or(url);
        anyhow::ensure!(
            !dir.contains("://"),
            "{url}: expected a directory, file:///<dir> or s3://<bucket>"
        );
        Store::local(dir)
    }

    /// The local directory, for a local store.
    pub fn local_dir(&self) -> Option<&std::path::Path> {
        self.local.as_deref()
    }

    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// Writes `bytes` at `path` unless an object is there.
    pub async fn create(&self, path: &ObjectPath, bytes: Bytes) -> anyhow::Result<Created> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .inner
            .put_opts(path, PutPayload::from_bytes(bytes), options)
            .await
        {
            Ok(_) => Ok(Created::Written),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Created::AlreadyThere),
            Err(err) => Err(err).with_context(|| format!("writing {self}/{path}")),
        }
    }

    /// Writes `bytes` at `path`, replacing what is there.
    pub async fn overwrite(&self, path: &ObjectPath, bytes: Bytes) -> anyhow::Result<()> {
        self.inner
            .put(path, PutPayload::from_bytes(bytes))
            .await
            .with_context(|| format!("writing {self}/{path}"))?;
        Ok(())
    }

    /// The object at `path`, or `None`.
    pub async fn read(&self, path: &ObjectPath) -> anyhow::Result<Option<Bytes>> {
        match self.inner.get(path).await {
            Ok(result) => Ok(Some(
                result
                    .bytes()
                    .await
                    .with_context(|| format!("reading {self}/{path}"))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err).with_context(|| format!("reading {self}/{path}")),
        }
    }

    /// Every object below `prefix` (recursively), sorted by path.
    pub async fn list(&self, prefix: &ObjectPath) -> anyhow::Result<Vec<ObjectPath>> {
        let mut paths: Vec<ObjectPath> = self
            .inner
            .list(Some(prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .with_context(|| format!("listing {self}/{prefix}"))?;
        paths.sort();
        Ok(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_store_creates_once_and_lists_recursively() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::from_url(&format!("file://{}", dir.path().display())).unwrap();
        let path = ObjectPath::from("topics/t/date=2026-12-04/t+0+0000000000+0000000009.parquet");
        assert_eq!(
            store
                .create(&path, Bytes::from_static(b"first"))
                .await
                .unwrap(),
            Created::Written
        );
        assert_eq!(
            store
                .create(&path, Bytes::from_static(b"second"))
                .await
                .unwrap(),
            Created::AlreadyThere
        );
        assert_eq!(store.read(&path).await.unwrap().unwrap(), &b"first"[..]);
        assert_eq!(
            store.list(&"topics/t".into()).await.unwrap(),
            std::slice::from_ref(&path)
        );
        assert!(store.list(&"topics/u".into()).await.unwrap().is_empty());
        assert!(store.read(&"absent".into()).await.unwrap().is_none());
        assert!(dir.path().join(path.as_ref()).is_file());
    }

    #[test]
    fn urls_name_a_directory_or_a_bucket() {
        assert!(Store::from_url("s3://bucket/with/a/path").is_err());
        assert!(Store::from_url("gs://bucket").is_err());
        let store = Store::from_url("s3://bucket").unwrap();
        assert_eq!(store.to_string(), "s3://bucket");
        assert!(store.local_dir().is_none());
    }
}
