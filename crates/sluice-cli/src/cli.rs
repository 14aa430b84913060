//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXAMPLES: &str = "\
Examples:
  sluice run examples/quickstart.toml
  sluice validate pipeline.toml
  sluice copy data.csv out.parquet
  sluice copy 'logs/*.ndjson.gz' 'sqlite://logs.db?table=events'
  sluice copy data.csv out.ndjson --on-error dlq --dlq rejects.ndjson
  cat data.csv | sluice copy --input-format csv - - --format table
  sluice copy mysql://root@db1/shop postgres://postgres@db2/shop --tables orders
  sluice status                 (progress of copies, also from another shell)
  sluice list

An interrupted or failed run resumes where it stopped when the same command
runs again; once the copy is complete, running it again does nothing.
`--fresh` starts a new job, which replaces what the last one wrote.

Exit codes: 0 ok, 2 configuration error, 3 connection or I/O error,
4 data rejected (on_error = stop, or max_errors), 70 internal error,
130 interrupted (SIGINT), 143 terminated (SIGTERM).";

/// sluice moves data between files and databases, in one-line copies or TOML
/// pipelines with SQL transforms; every row it cannot move is accounted for.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: Global,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SLUICE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors: no progress, no summary.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// No progress bars even on a terminal (periodic log lines instead).
    #[arg(long, global = true)]
    pub no_progress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline file; continues the last run if it did not finish, and
    /// does nothing if its job is complete. A source with `mode = "cdc"`
    /// copies its tables, then applies their changes until stopped, as
    /// `sluice sync` does.
    Run {
        /// The pipeline (TOML).
        pipeline: PathBuf,
        /// Start a new job instead of resuming (or finding complete) the last
        /// one: tables it wrote are replaced in the default mode.
        #[arg(long)]
        fresh: bool,
        /// `mode = "cdc"`: drop the replication slot and copy every table again.
        #[arg(long)]
        resnapshot: bool,
    },
    /// Check a pipeline file without connecting to anything.
    Validate {
        /// The pipeline (TOML).
        pipeline: PathBuf,
    },
    /// Test every connection of a pipeline and the permissions its run needs.
    Check {
        /// The pipeline (TOML).
        pipeline: PathBuf,
    },
    /// Print the streams, row estimates, the DDL a run would execute, the
    /// plan hash (as `validate` shows it) and a schema hash over the
    /// discovered columns and DDL; writes nothing.
    Plan {
        /// The pipeline (TOML).
        pipeline: PathBuf,
    },
    /// Compare row counts and an order-independent checksum per stream
    /// between the source and each sink's destination; exit 1 on any difference.
    Verify {
        /// The pipeline (TOML).
        pipeline: PathBuf,
        /// Search indexes: compare about N documents (a sample chosen by
        /// id, the same on both sides) instead of every one. Counts are
        /// always compared in full.
        #[arg(long, value_name = "N")]
        sample: Option<u64>,
    },
    /// Copy from SRC to DST without a pipeline file.
    ///
    /// SRC and DST are paths (format from the extension, .gz/.zst compressed),
    /// globs (SRC only), `-` for stdin/stdout, `sqlite://PATH?table=T` (a
    /// SQLite file is also recognised by its header),
    /// `postgres://USER@HOST:PORT/DB` and `mysql://USER@HOST:PORT/DB` (a whole
    /// database, `--tables a,b`, or one table with `?table=T`; PostgreSQL also
    /// takes `&schema=S`), `elasticsearch://HOST:PORT/INDEX` or
    /// `opensearch://…` (`?tls=true` for HTTPS; `user:password@` for basic
    /// auth; sources take `slices`, `query`, `paging`, destinations `id`,
    /// `op`, `routing`, `alias`, `bulk_docs`, `concurrency`, `gzip`), `s3://`,
    /// `gs://` or `az://` objects (a prefix ending in `/` for a destination
    /// gets one object per stream), or `null://` (DST only: count rows and
    /// discard them). Database and SQLite destinations take
    /// `?mode=new|append|replace|upsert&key=a,b` (default `new`: the copy's
    /// own table, loaded once; a table holding other rows is refused).
    Copy(CopyArgs),
    /// Keep DST in step with a PostgreSQL database: copy the tables, then
    /// apply every change (logical replication) until stopped.
    ///
    /// The first run creates a publication and a replication slot (named
    /// after SRC and DST unless `--slot`/`--publication` say), copies the
    /// tables at the slot's snapshot, then applies the changes made since,
    /// each table's changes committed with its position, and confirms the
    /// slot only up to what every table holds. Ctrl-C stops after the
    /// changes being applied; running the command again goes on from there.
    /// A slot the server invalidated stops the run (exit 3): `--resnapshot`
    /// drops it and copies everything again. Needs `wal_level = logical`,
    /// a primary key on every table, and a PostgreSQL destination.
    Sync(SyncArgs),
    /// Show each stream's state, progress, rate, last checkpoint and last
    /// error from the state store, during a run (from another process) or after.
    Status {
        /// The pipeline (TOML); without it, the state of `sluice copy` runs.
        pipeline: Option<PathBuf>,
        /// State directory of `sluice copy` runs (default ~/.local/state/sluice).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// List connectors, formats and transforms with their options.
    List,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The PostgreSQL database whose changes are captured
    /// (`postgres://USER@HOST:PORT/DB`, `?schema=S`).
    pub src: String,
    /// Where the tables and their changes go (`postgres://…`).
    pub dst: String,
    /// Tables to keep in step (default: every table of the schema).
    #[arg(long, value_delimiter = ',')]
    pub tables: Vec<String>,
    /// The replication slot (default `sluice_` and a hash of SRC and DST).
    #[arg(long)]
    pub slot: Option<String>,
    /// The publication (default: the slot's name).
    #[arg(long)]
    pub publication: Option<String>,
    /// Drop the slot and copy every table again.
    #[arg(long)]
    pub resnapshot: bool,
    /// Most changes per batch.
    #[arg(long)]
    pub batch_rows: Option<usize>,
    /// Where the state store lives (default ~/.local/state/sluice).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Where rows come from.
    pub src: String,
    /// Where rows go.
    pub dst: String,
    /// Tables to copy from a database source (default: all of them).
    #[arg(long, value_delimiter = ',')]
    pub tables: Vec<String>,
    /// What to do with a row that cannot be read or written.
    #[arg(long, value_enum, default_value_t = OnErrorArg::Stop)]
    pub on_error: OnErrorArg,
    /// Dead-letter file for --on-error dlq (default rejects.ndjson).
    #[arg(long)]
    pub dlq: Option<PathBuf>,
    /// Stop once more than this many rows were rejected (with skip or dlq).
    #[arg(long)]
    pub max_errors: Option<u64>,
    /// Format of DST when its extension does not say (csv, ndjson, json, parquet, table,
    /// elasticdump, bulk, raw).
    #[arg(long)]
    pub format: Option<String>,
    /// Format of SRC when its extension does not say (csv, ndjson, json, parquet,
    /// elasticdump, bulk, rally, raw).
    #[arg(long)]
    pub input_format: Option<String>,
    /// Field separator of CSV input.
    #[arg(long)]
    pub delimiter: Option<char>,
    /// Text encoding of SRC (windows-1252, latin1, shift_jis, utf-16le, …; default UTF-8,
    /// UTF-16 recognised by its byte-order mark).
    #[arg(long)]
    pub encoding: Option<String>,
    /// Rows per batch.
    #[arg(long)]
    pub batch_rows: Option<usize>,
    /// Decoding threads (default: one per core).
    #[arg(long)]
    pub parallelism: Option<usize>,
    /// Where the state store lives (default ~/.local/state/sluice).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Start a new job instead of resuming (or finding complete) the last run
    /// of the same copy: what it wrote is replaced in the default mode.
    #[arg(long)]
    pub fresh: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnErrorArg {
    Stop,
    Skip,
    Dlq,
}

impl OnErrorArg {
    pub fn as_str(self) -> &'static str {
        match self {
            OnErrorArg::Stop => "stop",
            OnErrorArg::Skip => "skip",
            OnErrorArg::Dlq => "dlq",
        }
    }
}
