//! Object stores (S3, Google Cloud Storage, Azure Blob Storage) as places
//! files are read from and written to, through `object_store`.
//!
//! Credentials and endpoints come from the usual environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`,
//! `AZURE_STORAGE_ACCOUNT_NAME`…). Reads stream the object; writes go to a
//! local part file first and are uploaded in parts when the file is
//! finished, so an interrupted run never leaves a half object behind.

use std::io::{self, Read};
use std::path::Path as FsPath;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use sluice_core::{Error, Result};

/// Size of the parts of a multipart upload.
const PART_BYTES: usize = 8 << 20;

/// The store holding `url` and the object's path in it.
fn store(url: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let parsed = url::Url::parse(url).map_err(|e| Error::config("path", format!("`{url}` is not a URL: {e}")))?;
    let bad = |e: object_store::Error| {
        Error::config(
            "path",
            format!("{url}: {e} (credentials and endpoint come from AWS_*, GOOGLE_* or AZURE_* variables)"),
        )
    };
    let store: Arc<dyn ObjectStore> = match parsed.scheme() {
        "s3" | "s3a" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .build()
                .map_err(bad)?,
        ),
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url)
                .build()
                .map_err(bad)?,
        ),
        _ => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url)
                .build()
                .map_err(bad)?,
        ),
    };
    let path = Path::from_url_path(parsed.path()).map_err(|e| Error::config("path", format!("{url}: {e}")))?;
    Ok((store, path))
}

fn failed(url: &str, e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => {
            Error::io(url, io::Error::new(io::ErrorKind::NotFound, "no such object"))
        }
        other => Error::retryable(url, other.to_string()),
    }
}

/// The objects a URL names, sorted: the object itself, every object under
/// a prefix ending in `/`, or those matching a glob in the last part.
pub(crate) async fn expand(url: &str) -> Result<Vec<(String, u64)>> {
    let (store, path) = store(url)?;
    let base = &url[..url.len() - path.as_ref().len()];
    let base = base.trim_end_matches('/');
    let text = path.as_ref();
    let (prefix, pattern) = if url.ends_with('/') {
        (Some(path.clone()), None)
    } else if text.contains(['*', '?', '[']) {
        let dir = text.rsplit_once('/').map_or("", |(d, _)| d);
        let glob =
            glob::Pattern::new(text).map_err(|e| Error::config("source.path", format!("bad glob `{url}`: {e}")))?;
        (Some(Path::from(dir)), Some(glob))
    } else {
        let meta = store.head(&path).await.map_err(|e| failed(url, e))?;
        return Ok(vec![(url.to_string(), meta.size)]);
    };
    let listed: Vec<_> = store
        .list(prefix.as_ref())
        .try_collect()
        .await
        .map_err(|e| failed(url, e))?;
    let mut out: Vec<(String, u64)> = listed
        .into_iter()
        .filter(|m| pattern.as_ref().is_none_or(|g| g.matches(m.location.as_ref())))
        .map(|m| (format!("{base}/{}", m.location), m.size))
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(Error::io(
            url,
            io::Error::new(io::ErrorKind::NotFound, "no object matches"),
        ));
    }
    Ok(out)
}

/// A blocking reader of an object, for the decoding threads; the object
/// is fetched when first read.
pub(crate) fn reader(url: &str) -> Result<Box<dyn Read + Send>> {
    let (store, path) = store(url)?;
    let handle = tokio::runtime::Handle::current();
    Ok(Box::new(ObjectReader {
        url: url.to_string(),
        store,
        path,
        handle,
        inner: None,
    }))
}

type Bridge = tokio_util::io::SyncIoBridge<Box<dyn tokio::io::AsyncRead + Send + Unpin>>;

struct ObjectReader {
    url: String,
    store: Arc<dyn ObjectStore>,
    path: Path,
    handle: tokio::runtime::Handle,
    inner: Option<Bridge>,
}

impl ObjectReader {
    /// Starts the download: the object's bytes as a blocking reader.
    fn open(&self) -> io::Result<Bridge> {
        let got = self
            .handle
            .block_on(self.store.get(&self.path))
            .map_err(|e| io::Error::other(format!("{}: {e}", self.url)))?;
        let stream = got.into_stream().map_err(io::Error::other);
        let reader: Box<dyn tokio::io::AsyncRead + Send + Unpin> = Box::new(tokio_util::io::StreamReader::new(stream));
        Ok(tokio_util::io::SyncIoBridge::new_with_handle(
            reader,
            self.handle.clone(),
        ))
    }
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let inner = match self.inner.take() {
            Some(inner) => inner,
            None => self.open()?,
        };
        self.inner.insert(inner).read(buf)
    }
}

/// Copies an object to a local file (formats that need to seek: Parquet).
pub(crate) fn download(url: &str, to: &FsPath) -> Result<()> {
    let mut input = reader(url)?;
    let mut file = std::fs::File::create(to).map_err(|e| Error::io(to, e))?;
    io::copy(&mut input, &mut file).map_err(|e| Error::io(url, e))?;
    Ok(())
}

/// Uploads a finished local file to `url` in parts. Blocking; call it off
/// the runtime's worker threads, or through [`sluice_core::blocking`].
pub(crate) fn upload(from: &FsPath, url: &str) -> Result<()> {
    let (store, path) = store(url)?;
    let work = async {
        let upload = store.put_multipart(&path).await.map_err(|e| failed(url, e))?;
        let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut file = std::fs::File::open(from).map_err(|e| Error::io(from, e))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(from, e))?;
            if n == 0 {
                break;
            }
            parts.wait_for_capacity(4).await.map_err(|e| failed(url, e))?;
            parts.write(&buf[..n]);
        }
        parts.finish().await.map_err(|e| failed(url, e))?;
        Ok(())
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => h.block_on(work),
        // A current-thread runtime cannot drive the upload while its one
        // thread waits here: the upload gets a runtime and a thread of its own.
        _ => std::thread::scope(|s| {
            s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::io(url, e))?
                    .block_on(work)
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }),
    }
}

/// A local file next to nothing of the user's, for staging objects.
pub(crate) fn staging_path(url: &str, suffix: &str) -> std::path::PathBuf {
    let hash = url.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    std::env::temp_dir().join(format!("sluice-{}-{hash:016x}{suffix}", std::process::id()))
}
