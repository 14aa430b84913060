//! Rejected rows: counted, written to the dead-letter file, or the end of
//! the run, according to `on_error` and `max_errors`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sluice_core::{Error, Rejection, Result};

use crate::config::OnError;

/// Applies the error policy to rejections from any stage or task.
pub struct Rejections {
    policy: OnError,
    max: Option<u64>,
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    count: u64,
    /// Rejections per stream, whichever part refused them.
    by_stream: HashMap<Arc<str>, u64>,
    file: Option<BufWriter<File>>,
    /// Lines written since the last flush.
    dirty: bool,
    /// Add to an existing file instead of replacing it (a resumed run).
    append: bool,
    first: Option<String>,
}

impl Rejections {
    pub fn new(policy: OnError, max: Option<u64>, path: PathBuf) -> Self {
        Rejections {
            policy,
            max,
            path,
            inner: Mutex::new(Inner {
                count: 0,
                by_stream: HashMap::new(),
                file: None,
                dirty: false,
                append: false,
                first: None,
            }),
        }
    }

    /// Handles one rejection; `Err` means the run must stop.
    pub fn reject(&self, r: &Rejection) -> Result<()> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| Error::Internal("rejection log poisoned".into()))?;
        inner.count += 1;
        *inner.by_stream.entry(r.stream.clone()).or_default() += 1;
        if inner.first.is_none() {
            inner.first = Some(r.describe());
        }
        match self.policy {
            OnError::Stop => {
                return Err(Error::Rejected(format!(
                    "{} (on_error = \"stop\"; use --on-error skip|dlq to go on)",
                    r.describe()
                )));
            }
            OnError::Skip => tracing::debug!(rejection = %r.describe(), "skipped row"),
            OnError::Dlq => {
                if inner.file.is_none() {
                    if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                    }
                    // A resumed run adds to what the interrupted one wrote.
                    let f = std::fs::OpenOptions::new()
                        .create(true)
                        .write(true)
                        .append(inner.append)
                        .truncate(!inner.append)
                        .open(&self.path)
                        .map_err(|e| Error::io(&self.path, e))?;
                    inner.file = Some(BufWriter::with_capacity(1 << 20, f));
                }
                if let Some(f) = inner.file.as_mut() {
                    // Straight into the buffer: at volume, a string per line costs.
                    serde_json::to_writer(&mut *f, r).map_err(|e| Error::io(&self.path, std::io::Error::other(e)))?;
                    f.write_all(b"\n").map_err(|e| Error::io(&self.path, e))?;
                }
                inner.dirty = true;
            }
        }
        if let Some(max) = self.max
            && inner.count > max
        {
            return Err(Error::Rejected(format!(
                "more than max_errors = {max} rows rejected; the first was {}",
                inner.first.as_deref().unwrap_or("?")
            )));
        }
        Ok(())
    }

    /// Rows rejected so far.
    pub fn count(&self) -> u64 {
        self.inner.lock().map(|i| i.count).unwrap_or(0)
    }

    /// Rows of `stream` rejected so far by the source, a transform or a sink.
    pub fn count_for(&self, stream: &str) -> u64 {
        self.inner
            .lock()
            .map(|i| i.by_stream.get(stream).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Flushes the dead-letter file to disk.
    /// Makes the dead-letter file continue an earlier run's instead of
    /// replacing it; call before the first rejection.
    pub fn continue_file(&self, yes: bool) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.append = yes;
        }
    }

    /// Puts every line written so far on disk (fsync), if there is any new.
    pub fn flush(&self) -> Result<()> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| Error::Internal("rejection log poisoned".into()))?;
        if !inner.dirty {
            return Ok(());
        }
        if let Some(f) = inner.file.as_mut() {
            f.flush().map_err(|e| Error::io(&self.path, e))?;
            f.get_ref().sync_data().map_err(|e| Error::io(&self.path, e))?;
        }
        inner.dirty = false;
        Ok(())
    }

    /// The dead-letter file, if one was written.
    pub fn written_path(&self) -> Option<PathBuf> {
        self.inner
            .lock()
            .ok()
            .and_then(|i| i.file.as_ref().map(|_| self.path.clone()))
    }
}
