//! The blob store for post images, through the `object_store` crate: a local directory by
//! default (`IMAGES_DIR`, `<data dir>/images`); any `ObjectStore` (S3, GCS, Azure) fits the same
//! [`ImageStore`]. Images are content-addressed: `images/<sha256>.<ext>`, so a re-upload of the
//! same bytes is stored once and the event's reference never dangles after a retry.
//!
//! The type is detected from the bytes (PNG, JPEG, GIF and WebP signatures), never taken from
//! the client's `Content-Type`.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};

use crate::events::ImageRef;

/// The largest image accepted (bigger → 413).
pub const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;

/// The image types accepted and their file extensions.
const TYPES: &[(&str, &str)] = &[
    ("image/png", "png"),
    ("image/jpeg", "jpg"),
    ("image/gif", "gif"),
    ("image/webp", "webp"),
];

/// The file extension of an accepted content type.
pub fn extension(content_type: &str) -> Option<&'static str> {
    TYPES
        .iter()
        .find(|(t, _)| *t == content_type)
        .map(|(_, ext)| *ext)
}

/// The content type of `bytes` by their signature, if an accepted image type.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// A 1×1 GIF of one colour: a valid image, distinct per colour (the simulator's and tests'
/// uploads).
pub fn tiny_gif(rgb: [u8; 3]) -> Vec<u8> {
    let mut gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00".to_vec();
    gif.extend_from_slice(&rgb);
    gif.extend_from_slice(&[0, 0, 0]);
    gif.extend_from_slice(b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;");
    gif
}

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("the image is {0} bytes, more than the {MAX_IMAGE_BYTES} allowed")]
    TooLarge(usize),
    #[error("the image is not a PNG, JPEG, GIF or WebP file (judged by its first bytes)")]
    UnsupportedType,
    #[error("the image is empty")]
    Empty,
    #[error("blob store: {0}")]
    Store(#[from] object_store::Error),
}

/// Post images in an object store.
#[derive(Clone)]
pub struct ImageStore {
    store: Arc<dyn ObjectStore>,
}

impl ImageStore {
    /// A store in the local directory `dir` (created if missing).
    pub fn local(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(ImageStore {
            store: Arc::new(LocalFileSystem::new_with_prefix(dir)?),
        })
    }

    /// Any object store (S3, GCS, Azure, in-memory).
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        ImageStore { store }
    }

    /// Checks `bytes` and stores them under their hash; their reference.
    pub async fn put(&self, bytes: Bytes) -> Result<ImageRef, ImageError> {
        if bytes.is_empty() {
            return Err(ImageError::Empty);
        }
        if bytes.len() > MAX_IMAGE_BYTES {
            return Err(ImageError::TooLarge(bytes.len()));
        }
        let content_type = sniff(&bytes).ok_or(ImageError::UnsupportedType)?;
        let sha256 = format!("{:x}", Sha256::digest(&bytes));
        let ext = extension(content_type).expect("sniffed types have extensions");
        let key = format!("images/{sha256}.{ext}");
        let size = bytes.len() as u64;
        self.store
            .put(&ObjectPath::from(key.as_str()), bytes.into())
            .await?;
        Ok(ImageRef {
            key,
            sha256,
            content_type: content_type.to_owned(),
            bytes: size,
        })
    }

    /// The bytes and content type of `name` (`<sha256>.<ext>`), `None` if absent.
    pub async fn get(&self, name: &str) -> Result<Option<(Bytes, &'static str)>, ImageError> {
        let Some((hash, ext)) = name.split_once('.') else {
            return Ok(None);
        };
        let content_type = TYPES.iter().find(|(_, e)| *e == ext).map(|(t, _)| *t);
        let valid = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        let (Some(content_type), true) = (content_type, valid) else {
            return Ok(None);
        };
        match self
            .store
            .get(&ObjectPath::from(format!("images/{name}").as_str()))
            .await
        {
            Ok(found) => Ok(Some((found.bytes().await?, content_type))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_judged_by_their_bytes() {
        assert_eq!(sniff(&tiny_gif([1, 2, 3])), Some("image/gif"));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff(b"\xff\xd8\xff\xe0"), Some("image/jpeg"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"<svg xmlns=...>"), None);
        assert_eq!(sniff(b"%PDF-1.7"), None);
    }

    #[tokio::test]
    async fn images_are_stored_once_under_their_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::local(dir.path()).unwrap();
        let gif = Bytes::from(tiny_gif([200, 10, 10]));
        let first = store.put(gif.clone()).await.unwrap();
        let second = store.put(gif.clone()).await.unwrap();
        assert_eq!(first, second);
        assert!(first.key.ends_with(".gif") && first.key.contains(&first.sha256));
        let name = first.key.trim_start_matches("images/");
        let (bytes, content_type) = store.get(name).await.unwrap().unwrap();
        assert_eq!((bytes, content_type), (gif, "image/gif"));
        assert!(store.get("../../etc/passwd").await.unwrap().is_none());
        assert!(matches!(
            store.put(Bytes::from_static(b"hello")).await,
            Err(ImageError::UnsupportedType)
        ));
        let big = vec![0u8; MAX_IMAGE_BYTES + 1];
        assert!(matches!(
            store.put(Bytes::from(big)).await,
            Err(ImageError::TooLarge(_))
        ));
    }
}
