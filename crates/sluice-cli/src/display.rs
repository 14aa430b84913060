//! What the user sees while a run goes and when it ends: progress bars on a
//! terminal, periodic log lines otherwise, and a summary table.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sluice_engine::{RunProgress, RunReport, StreamStats};
use tokio_util::sync::CancellationToken;

/// Human-readable count: 1234567 → 1,234,567.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn rate(rows: u64, secs: f64) -> String {
    if secs <= 0.0 {
        return "-".into();
    }
    let r = rows as f64 / secs;
    if r >= 1e6 {
        format!("{:.2}M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k/s", r / 1e3)
    } else {
        format!("{r:.0}/s")
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Shows progress until `done` is cancelled.
pub async fn progress(progress: Arc<RunProgress>, done: CancellationToken, bars: bool, interval: Duration) {
    if bars && std::io::stderr().is_terminal() {
        bars_loop(progress, done).await
    } else {
        log_loop(progress, done, interval).await
    }
}

fn message(s: &StreamStats) -> String {
    let read = s.read.load(Ordering::Relaxed);
    let rejected = s.rejected.load(Ordering::Relaxed);
    let mut m = format!(
        "{} rows  {}  {}",
        count(read),
        rate(read, s.elapsed().as_secs_f64()),
        mb(s.bytes.load(Ordering::Relaxed))
    );
    if rejected > 0 {
        m.push_str(&format!("  {} rejected", count(rejected)));
    }
    m
}

/// How far a stream got, in the unit of its known total: input bytes, or
/// rows read when only a row estimate is known.
fn done_units(s: &StreamStats) -> u64 {
    if s.total_bytes.is_some() {
        s.bytes.load(Ordering::Relaxed)
    } else {
        s.read.load(Ordering::Relaxed)
    }
}

async fn bars_loop(progress: Arc<RunProgress>, done: CancellationToken) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let mut bars: Vec<(Arc<StreamStats>, ProgressBar)> = Vec::new();
    let sized = ProgressStyle::with_template("{prefix:>12.bold} [{bar:30.cyan/blue}] {percent:>3}% ETA {eta:>4} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let open = ProgressStyle::with_template("{prefix:>12.bold} {spinner} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    loop {
        let finished = done.is_cancelled();
        for s in progress.streams() {
            if !bars.iter().any(|(b, _)| Arc::ptr_eq(b, &s)) {
                // Input bytes when the size is known (files), else the row
                // estimate (database tables), else a spinner.
                let bar = match s.total_bytes.or(s.total_rows) {
                    Some(total) => multi.add(ProgressBar::new(total).with_style(sized.clone())),
                    None => multi.add(ProgressBar::new_spinner().with_style(open.clone())),
                };
                bar.set_prefix(s.name.clone());
                bars.push((s, bar));
            }
        }
        for (s, bar) in &bars {
            let done = done_units(s);
            if let Some(total) = bar.length()
                && done > total
            {
                // Row estimates are estimates.
                bar.set_length(done);
            }
            bar.set_position(done);
            bar.set_message(message(s));
            if s.done.load(Ordering::Relaxed) && !bar.is_finished() {
                bar.finish();
            }
        }
        if finished {
            for (_, bar) in &bars {
                bar.finish_and_clear();
            }
            return;
        }
        tokio::select! {
            _ = done.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

async fn log_loop(progress: Arc<RunProgress>, done: CancellationToken, interval: Duration) {
    loop {
        tokio::select! {
            _ = done.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        for s in progress.streams() {
            if s.done.load(Ordering::Relaxed) {
                continue;
            }
            let read = s.read.load(Ordering::Relaxed);
            let pct = s
                .total_bytes
                .or(s.total_rows)
                .filter(|t| *t > 0)
                .map(|t| (100.0 * done_units(&s) as f64 / t as f64).min(100.0));
            tracing::info!(
                stream = %s.name,
                rows = read,
                written = s.written.load(Ordering::Relaxed),
                rejected = s.rejected.load(Ordering::Relaxed),
                rows_per_s = s.rate() as u64,
                percent = pct.map(|p| format!("{p:.1}")).unwrap_or_else(|| "-".into()),
                "progress"
            );
        }
    }
}

/// The summary table printed at the end of a run.
pub fn summary(report: &RunReport, resumable: bool) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "stream", "read", "written", "rejected", "filtered", "time", "rows/s", "to",
    ]);
    let mut notes = Vec::new();
    for s in &report.streams {
        let secs = s.duration.as_secs_f64();
        if s.held {
            notes.push(format!(
                "{}: its destination already holds it whole, loaded by an earlier run of this pipeline; skipped \
                 (--fresh loads it again)",
                s.name
            ));
        } else if s.skipped && report.complete_run.is_none() {
            notes.push(format!("{}: already completed by the resumed run; skipped", s.name));
        }
        if let Some(format) = &s.passthrough {
            notes.push(format!(
                "{}: binary passthrough: rows went to the destination as the source encoded them ({format}), not \
                 decoded",
                s.name
            ));
        }
        if s.resumed_from > 0 {
            notes.push(format!(
                "{}: resumed after {} row(s) delivered by an earlier run",
                s.name,
                count(s.resumed_from)
            ));
        }
        if s.retries > 0 {
            notes.push(format!(
                "{}: {} failed attempt(s) retried (see the log)",
                s.name,
                count(s.retries)
            ));
        }
        t.add_row(vec![
            Cell::new(&s.name),
            Cell::new(count(s.read)).set_alignment(CellAlignment::Right),
            Cell::new(count(s.written)).set_alignment(CellAlignment::Right),
            Cell::new(count(s.rejected)).set_alignment(CellAlignment::Right),
            Cell::new(count(s.filtered)).set_alignment(CellAlignment::Right),
            Cell::new(format!("{secs:.2}s")).set_alignment(CellAlignment::Right),
            Cell::new(rate(s.read, secs)).set_alignment(CellAlignment::Right),
            Cell::new(s.targets.join("\n")),
        ]);
    }
    let mut out = t.to_string();
    if let Some(id) = report.complete_run {
        out.push_str(&format!(
            "\nalready complete: this job finished in run #{id}, so nothing was read or written; run with --fresh \
             to copy again (the default mode replaces what the job wrote)"
        ));
    }
    if let Some(id) = report.resumed_run {
        out.push_str(&format!("\ncontinued unfinished run #{id}"));
    }
    for n in notes {
        out.push('\n');
        out.push_str(&n);
    }
    if let Some(p) = &report.dlq {
        out.push_str(&format!(
            "\n{} rejected row(s) written to {}",
            count(report.rejected),
            p.display()
        ));
    } else if report.rejected > 0 {
        out.push_str(&format!("\n{} rejected row(s) skipped", count(report.rejected)));
    }
    if report.interrupted && resumable {
        out.push_str(
            "\ninterrupted: in-flight batches were drained and every output closed; run the same command again to resume",
        );
    } else if report.interrupted {
        out.push_str(
            "\ninterrupted: in-flight batches were drained and every output closed; standard input cannot be read \
             again, so what arrived is all there is (a new copy of it needs --fresh)",
        );
    }
    out
}

/// One stream's row of `sluice status`.
pub struct StatusRow {
    pub pipeline: String,
    /// A run of the pipeline holds its lock right now.
    pub running: bool,
    pub stream: sluice_state::StreamState,
}

/// `sluice status`: per stream, state, rows done of estimated, rate, last
/// checkpoint, retries and last error.
/// The change streams of `sluice sync` pipelines: changes applied, the
/// slot's lag, the last confirmed position.
pub fn changes(rows: &[(String, sluice_state::ChangeState)]) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "pipeline",
        "stream",
        "phase",
        "changes applied",
        "source lag",
        "last confirmed",
        "updated",
    ]);
    for (pipeline, c) in rows {
        t.add_row(vec![
            pipeline.clone(),
            c.stream.clone(),
            "streaming".into(),
            count(c.applied),
            c.lag_bytes
                .map_or("?".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
            c.confirmed.clone().unwrap_or_else(|| "-".into()),
            c.updated_at.clone(),
        ]);
    }
    t.to_string()
}

pub fn status(rows: &[StatusRow], now: chrono::DateTime<chrono::Utc>) -> String {
    let at = |s: &Option<String>| {
        s.as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "pipeline",
        "stream",
        "state",
        "done",
        "of",
        "read",
        "written",
        "rejected",
        "filtered",
        "rows/s",
        "last checkpoint",
        "retries",
        "last error",
    ]);
    for r in rows {
        let s = &r.stream;
        let state = if s.status == "running" && !r.running {
            "stopped (process gone; run again to resume)".to_string()
        } else {
            s.status.clone()
        };
        let done = s.resumed_from + s.counts.written;
        let of = match s.estimated {
            Some(e) if e > 0 => format!("~{} ({:.0}%)", count(e), (done as f64 / e as f64 * 100.0).min(100.0)),
            _ => "?".into(),
        };
        let started = at(&s.started_at);
        let updated = at(&Some(s.updated_at.clone()));
        let end = if s.status == "running" && r.running {
            Some(now)
        } else {
            updated
        };
        let speed = match (started, end) {
            (Some(a), Some(b)) if b > a => rate(s.counts.written, (b - a).num_milliseconds() as f64 / 1000.0),
            _ => "-".into(),
        };
        let checkpoint = match at(&s.checkpoint_at) {
            Some(c) => format!("{} ({}s ago)", c.format("%H:%M:%S"), (now - c).num_seconds().max(0)),
            None => "-".into(),
        };
        t.add_row(vec![
            Cell::new(&r.pipeline),
            Cell::new(&s.stream),
            Cell::new(state),
            Cell::new(count(done)).set_alignment(CellAlignment::Right),
            Cell::new(of).set_alignment(CellAlignment::Right),
            Cell::new(count(s.counts.read)).set_alignment(CellAlignment::Right),
            Cell::new(count(s.counts.written)).set_alignment(CellAlignment::Right),
            Cell::new(count(s.counts.rejected)).set_alignment(CellAlignment::Right),
            Cell::new(count(s.counts.filtered)).set_alignment(CellAlignment::Right),
            Cell::new(speed).set_alignment(CellAlignment::Right),
            Cell::new(checkpoint),
            Cell::new(count(s.retries)).set_alignment(CellAlignment::Right),
            Cell::new(s.last_error.clone().unwrap_or_default()),
        ]);
    }
    t.to_string()
}

/// `sluice plan`: streams with their columns and estimates, each sink's DDL,
/// the plan hash (as `validate` prints it) and the schema hash.
pub fn plan(plan: &sluice_engine::inspect::PlanReport) -> String {
    let mut out = String::new();
    for s in &plan.streams {
        let rows = s.estimated_rows.map_or("unknown".to_string(), count);
        out.push_str(&format!(
            "stream {} ({} partition(s), ~{rows} rows)\n",
            s.name, s.partitions
        ));
        for (name, ty) in &s.columns {
            out.push_str(&format!("  {name}: {ty}\n"));
        }
        for (target, ddl) in &s.sinks {
            out.push_str(&format!("  -> {target}\n"));
            if ddl.is_empty() {
                out.push_str("     (no DDL)\n");
            }
            for stmt in ddl {
                out.push_str(&format!("     {stmt};\n"));
            }
        }
        out.push('\n');
    }
    if !plan.not_copied.is_empty() {
        out.push_str("not copied from the source (recreate them by hand if needed):\n");
        for n in &plan.not_copied {
            out.push_str(&format!("  {}\n", n.summary(usize::MAX)));
        }
        out.push('\n');
    }
    out.push_str(&format!("plan hash: {}\n", plan.plan_hash));
    out.push_str(&format!("schema hash: {}", plan.schema_hash));
    out
}

/// `sluice verify`: one line per stream and sink.
pub fn verify(lines: &[sluice_engine::inspect::VerifyLine]) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "stream",
        "sink",
        "source rows",
        "target rows",
        "source checksum",
        "target checksum",
        "result",
    ]);
    for l in lines {
        let (source_rows, source_sum) = if l.compared {
            (count(l.source.rows), format!("{:016x}", l.source.checksum))
        } else {
            ("-".into(), "-".into())
        };
        let (rows, sum) = match l.target {
            Some(f) => (count(f.rows), format!("{:016x}", f.checksum)),
            None => ("-".into(), "-".into()),
        };
        let result = match (l.matches(), &l.note) {
            _ if !l.compared => format!("not compared ({})", l.note.as_deref().unwrap_or("")),
            (true, None) => "match".to_string(),
            (true, Some(n)) => format!("match ({n})"),
            (false, Some(n)) => format!("DIFFERENT ({n})"),
            (false, None) => "DIFFERENT".to_string(),
        };
        t.add_row(vec![
            Cell::new(&l.stream),
            Cell::new(&l.sink),
            Cell::new(source_rows).set_alignment(CellAlignment::Right),
            Cell::new(rows).set_alignment(CellAlignment::Right),
            Cell::new(source_sum),
            Cell::new(sum),
            Cell::new(result),
        ]);
    }
    t.to_string()
}
