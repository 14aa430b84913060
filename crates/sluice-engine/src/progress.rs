//! Live counters of a run, shared with whoever displays progress.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counters of one stream; updated by the engine, read by the display.
#[derive(Debug)]
pub struct StreamStats {
    pub name: String,
    /// Input size when known (bytes), for ETA.
    pub total_bytes: Option<u64>,
    /// Input rows when known, for ETA.
    pub total_rows: Option<u64>,
    pub bytes: AtomicU64,
    pub read: AtomicU64,
    pub written: AtomicU64,
    pub rejected: AtomicU64,
    /// Rows a transform removed (a filter): read, neither written nor rejected.
    pub filtered: AtomicU64,
    /// Failed attempts (reads, writes, reconnections) that were retried.
    pub retries: AtomicU64,
    /// Rows an earlier run of the job delivered (a resumed stream).
    pub resumed_from: AtomicU64,
    pub started: Instant,
    elapsed_ms: AtomicU64,
    pub done: AtomicBool,
}

impl StreamStats {
    fn new(name: &str, total_bytes: Option<u64>, total_rows: Option<u64>) -> Self {
        StreamStats {
            name: name.to_string(),
            total_bytes,
            total_rows,
            bytes: AtomicU64::new(0),
            read: AtomicU64::new(0),
            written: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            filtered: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            resumed_from: AtomicU64::new(0),
            started: Instant::now(),
            elapsed_ms: AtomicU64::new(0),
            done: AtomicBool::new(false),
        }
    }

    /// Marks the stream finished, freezing its duration.
    pub fn finish(&self) {
        self.elapsed_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.done.store(true, Ordering::Relaxed);
    }

    /// Time spent so far, or in total once finished.
    pub fn elapsed(&self) -> Duration {
        if self.done.load(Ordering::Relaxed) {
            Duration::from_millis(self.elapsed_ms.load(Ordering::Relaxed))
        } else {
            self.started.elapsed()
        }
    }

    /// Rows read per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed().as_secs_f64();
        if secs > 0.0 {
            self.read.load(Ordering::Relaxed) as f64 / secs
        } else {
            0.0
        }
    }
}

/// Every stream of a run, in the order they started.
#[derive(Debug, Default)]
pub struct RunProgress {
    streams: Mutex<Vec<Arc<StreamStats>>>,
}

impl RunProgress {
    /// Registers a stream and returns its counters.
    pub fn start_stream(&self, name: &str, total_bytes: Option<u64>, total_rows: Option<u64>) -> Arc<StreamStats> {
        let s = Arc::new(StreamStats::new(name, total_bytes, total_rows));
        if let Ok(mut v) = self.streams.lock() {
            v.push(s.clone());
        }
        s
    }

    /// A snapshot of the streams.
    pub fn streams(&self) -> Vec<Arc<StreamStats>> {
        self.streams.lock().map(|v| v.clone()).unwrap_or_default()
    }
}
