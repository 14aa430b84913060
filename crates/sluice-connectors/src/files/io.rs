//! Opening inputs and outputs: local paths, globs, standard streams, and
//! gzip/zstd (de)compression.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_core::{Error, Result};

use super::config::Compression;

/// Expands a path or glob into the files it names, sorted. `-` stays `-`.
pub(crate) fn expand(pattern: &str) -> Result<Vec<String>> {
    if pattern == "-" {
        return Ok(vec!["-".into()]);
    }
    if !pattern.contains(['*', '?', '[']) {
        if !Path::new(pattern).is_file() {
            return Err(Error::io(
                pattern,
                io::Error::new(io::ErrorKind::NotFound, "no such file"),
            ));
        }
        return Ok(vec![pattern.into()]);
    }
    let paths = glob::glob(pattern).map_err(|e| Error::config("source.path", format!("bad glob `{pattern}`: {e}")))?;
    let mut files: Vec<String> = paths
        .filter_map(|p| p.ok())
        .filter(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::io(
            pattern,
            io::Error::new(io::ErrorKind::NotFound, "the glob matches no file"),
        ));
    }
    Ok(files)
}

/// Opens a file, decompressing as configured.
pub(crate) fn open_read(path: &str, compression: Compression) -> Result<Box<dyn Read + Send>> {
    let raw: Box<dyn Read + Send> = if is_object(path) {
        object_reader(path)?
    } else {
        Box::new(File::open(path).map_err(|e| Error::io(path, e))?)
    };
    decompress(raw, path, compression)
}

/// Whether `path` names an object in a store (`s3://…`).
pub(crate) fn is_object(path: &str) -> bool {
    path.contains("://")
}

#[cfg(feature = "s3")]
fn object_reader(path: &str) -> Result<Box<dyn Read + Send>> {
    super::objects::reader(path)
}

#[cfg(not(feature = "s3"))]
fn object_reader(path: &str) -> Result<Box<dyn Read + Send>> {
    Err(no_object_store(path))
}

/// The error for object URLs in a build without object stores.
#[cfg(not(feature = "s3"))]
pub(crate) fn no_object_store(path: &str) -> Error {
    Error::config(
        "path",
        format!("{path}: this build has no object store support (cargo feature `s3`)"),
    )
}

/// Wraps `raw` in the decompressor `compression` asks for.
pub(crate) fn decompress(
    raw: Box<dyn Read + Send>,
    path: &str,
    compression: Compression,
) -> Result<Box<dyn Read + Send>> {
    Ok(match compression.resolve(path) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::with_capacity(
            1 << 20,
            raw,
        ))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(raw).map_err(|e| Error::io(path, e))?),
        Compression::None | Compression::Auto => raw,
    })
}

/// Standard input read by a thread of its own, so that a quiet pipe never
/// blocks a reader: [`Read::read`] waits at most `timeout` and then answers
/// `ErrorKind::TimedOut`, which readers take as "nothing new yet" (hand over
/// what is framed, look at cancellation, read again).
pub(crate) struct StdinPump {
    rx: Receiver<io::Result<Vec<u8>>>,
    pending: Vec<u8>,
    pos: usize,
    timeout: Duration,
    done: bool,
}

impl StdinPump {
    pub fn start(timeout: Duration) -> StdinPump {
        let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(4);
        std::thread::spawn(move || {
            let mut stdin = io::stdin().lock();
            loop {
                let mut buf = vec![0u8; 1 << 20];
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.send(Ok(buf)).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                }
            }
        });
        StdinPump {
            rx,
            pending: Vec::new(),
            pos: 0,
            timeout,
            done: false,
        }
    }

    /// Reads the start of stdin for inference: until `limit` bytes or
    /// `records` lines, the end of input, or — once a whole line is in —
    /// `quiet` without new data.
    pub fn sample(&mut self, limit: usize, records: usize, quiet: Duration) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        let mut last = Instant::now();
        while buf.len() < limit && memchr::memchr_iter(b'\n', &buf).count() <= records {
            let got = if buf.contains(&b'\n') {
                match self.rx.recv_timeout(quiet.saturating_sub(last.elapsed())) {
                    Ok(r) => Some(r),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => None,
                }
            } else {
                self.rx.recv().ok()
            };
            match got {
                Some(chunk) => {
                    buf.extend_from_slice(&chunk?);
                    last = Instant::now();
                }
                None => {
                    self.done = true;
                    break;
                }
            }
        }
        Ok(buf)
    }
}

impl Read for StdinPump {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.pending.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv_timeout(self.timeout) {
                Ok(chunk) => {
                    self.pending = chunk?;
                    self.pos = 0;
                }
                Err(RecvTimeoutError::Timeout) => return Err(io::Error::new(io::ErrorKind::TimedOut, "no input yet")),
                Err(RecvTimeoutError::Disconnected) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = out.len().min(self.pending.len() - self.pos);
        out[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads up to `limit` bytes from the start of an input, for inference.
pub(crate) fn sample(input: &mut dyn Read, limit: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(limit.min(1 << 20));
    input.take(limit as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// An output stream that is finished explicitly (compression trailers,
/// atomic rename of `PATH.part` to `PATH`).
pub(crate) struct Output {
    inner: Inner,
    path: String,
    part: Option<PathBuf>,
    /// For an object URL: the part file is uploaded there when finished.
    upload: Option<String>,
    /// Set when the reader of standard output went away (`| head`).
    closed: Arc<AtomicBool>,
    /// The first error the file gave while being written (a full disk),
    /// kept because encoders above report it in their own terms.
    failure: WriteFailure,
}

/// The first I/O error an [`Output`] met, shared with the sink that owns the
/// encoder writing into it.
pub(crate) type WriteFailure = Arc<Mutex<Option<(io::ErrorKind, String)>>>;

enum Inner {
    Plain(BufWriter<File>),
    Gzip(flate2::write::GzEncoder<BufWriter<File>>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<File>>),
    Stdout(BufWriter<io::Stdout>),
}

impl Output {
    /// Creates `PATH.part` (or writes to standard output for `-`).
    pub fn create(path: &str, compression: Compression) -> Result<Output> {
        if path == "-" {
            return Ok(Output {
                inner: Inner::Stdout(BufWriter::with_capacity(1 << 20, io::stdout())),
                path: "-".into(),
                part: None,
                upload: None,
                closed: Arc::new(AtomicBool::new(false)),
                failure: WriteFailure::default(),
            });
        }
        let upload = is_object(path).then(|| path.to_string());
        let part = match &upload {
            #[cfg(feature = "s3")]
            Some(url) => super::objects::staging_path(url, ".part"),
            #[cfg(not(feature = "s3"))]
            Some(url) => return Err(no_object_store(url)),
            None => {
                if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                }
                PathBuf::from(format!("{path}.part"))
            }
        };
        let file = BufWriter::with_capacity(1 << 20, File::create(&part).map_err(|e| Error::io(&part, e))?);
        let inner = match compression.resolve(path) {
            Compression::Gzip => Inner::Gzip(flate2::write::GzEncoder::new(file, flate2::Compression::fast())),
            Compression::Zstd => {
                Inner::Zstd(zstd::stream::write::Encoder::new(file, 3).map_err(|e| Error::io(path, e))?)
            }
            Compression::None | Compression::Auto => Inner::Plain(file),
        };
        Ok(Output {
            inner,
            path: path.into(),
            part: Some(part),
            upload,
            closed: Arc::new(AtomicBool::new(false)),
            failure: WriteFailure::default(),
        })
    }

    /// Where the first write error is recorded.
    pub fn failure(&self) -> WriteFailure {
        self.failure.clone()
    }

    /// The file being written before it is moved into place (`PATH.part`,
    /// or a staging file for an object), if any.
    pub fn part(&self) -> Option<PathBuf> {
        self.part.clone()
    }

    /// Records `e` as the output's failure, if it is the first, and returns it.
    fn record(&self, e: io::Error) -> io::Error {
        if let Ok(mut slot) = self.failure.lock()
            && slot.is_none()
        {
            *slot = Some((e.kind(), e.to_string()));
        }
        e
    }

    /// Raised once the reader of standard output has gone away; writes are
    /// then discarded (so no writer fails half-way) and the sink stops.
    pub fn closed_flag(&self) -> Arc<AtomicBool> {
        self.closed.clone()
    }

    /// Writes trailers, syncs, and moves `PATH.part` to `PATH`.
    pub fn finish(self) -> Result<()> {
        let path = self.path.clone();
        let wrap = |e| Error::io(&path, e);
        let file = match self.inner {
            Inner::Plain(w) => Some(w.into_inner().map_err(|e| wrap(e.into_error()))?),
            Inner::Gzip(w) => Some(
                w.finish()
                    .map_err(wrap)?
                    .into_inner()
                    .map_err(|e| wrap(e.into_error()))?,
            ),
            Inner::Zstd(w) => Some(
                w.finish()
                    .map_err(wrap)?
                    .into_inner()
                    .map_err(|e| wrap(e.into_error()))?,
            ),
            Inner::Stdout(mut w) => {
                match w.flush() {
                    // A closed pipe (`| head`) is not a failure of the run.
                    Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(wrap(e)),
                    _ => {}
                }
                None
            }
        };
        if let Some(file) = file {
            file.sync_all().map_err(wrap)?;
        }
        match (&self.part, &self.upload) {
            #[cfg(feature = "s3")]
            (Some(part), Some(url)) => {
                let sent = super::objects::upload(part, url);
                let _ = std::fs::remove_file(part);
                sent?;
            }
            (Some(part), _) => std::fs::rename(part, &self.path).map_err(wrap)?,
            _ => {}
        }
        Ok(())
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = match &mut self.inner {
            Inner::Plain(w) => w.write(buf),
            Inner::Gzip(w) => w.write(buf),
            Inner::Zstd(w) => w.write(buf),
            Inner::Stdout(_) => return self.write_stdout(buf),
        };
        written.map_err(|e| self.record(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        let flushed = match &mut self.inner {
            Inner::Plain(w) => w.flush(),
            Inner::Gzip(w) => w.flush(),
            Inner::Zstd(w) => w.flush(),
            Inner::Stdout(_) => return self.flush_stdout(),
        };
        flushed.map_err(|e| self.record(e))
    }
}

impl Output {
    fn write_stdout(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Stdout(_) if self.closed.load(Ordering::Relaxed) => Ok(buf.len()),
            Inner::Stdout(w) => match w.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    self.closed.store(true, Ordering::Relaxed);
                    Ok(buf.len())
                }
                other => other,
            },
            _ => Ok(buf.len()),
        }
    }

    fn flush_stdout(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Stdout(_) if self.closed.load(Ordering::Relaxed) => Ok(()),
            Inner::Stdout(w) => match w.flush() {
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    self.closed.store(true, Ordering::Relaxed);
                    Ok(())
                }
                other => other,
            },
            _ => Ok(()),
        }
    }
}
