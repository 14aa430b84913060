//! Serves the fault-injecting search proxy of the integration tests
//! (`tests/it/search_proxy.rs`) on a fixed port, in front of an
//! OpenSearch-compatible server, for benchmarks and manual experiments:
//!
//! ```text
//! cargo run --release -p sluice-connectors --example es_endpoint -- \
//!     --upstream http://127.0.0.1:9200 --port 9299 --lean true \
//!     --reject-429 0.3 --seed 11 --max-concurrent 8 --latency-ms 20
//! ```
//!
//! With `--lean true` bulk requests are answered by the proxy (documents
//! checked and counted per `_id`, not stored), so that the server is not
//! the bottleneck; everything else goes to the server. It prints
//! `listening on 127.0.0.1:PORT` once it accepts connections and serves
//! until interrupted (Ctrl-C or SIGTERM); `GET /_proxy/stats` reports what
//! it saw.

#[path = "../tests/it/search_proxy.rs"]
mod search_proxy;

use std::io::Write as _;
use std::str::FromStr;
use std::time::Duration;

use search_proxy::{Flavor, ProxyConfig, ProxyServer};

const USAGE: &str = "usage: es_endpoint --upstream http://HOST:PORT [--port N] [--reject-429 RATIO] \
[--max-concurrent N] [--latency-ms N] [--seed N] [--flavor es|upstream] [--fail-every N] \
[--retry-after-first K:SECS] [--poison ID[,ID...]] [--lean true]";

/// What the command line asks for.
struct Options {
    port: u16,
    cfg: ProxyConfig,
}

fn parse_num<T: FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{flag}: `{value}` is not a valid number"))
}

/// The value of a flag: after `=`, or the next argument.
fn take_value<I: Iterator<Item = String>>(flag: &str, inline: Option<String>, args: &mut I) -> Result<String, String> {
    match inline {
        Some(v) => Ok(v),
        None => args.next().ok_or_else(|| format!("{flag} needs a value")),
    }
}

fn parse_args<I: Iterator<Item = String>>(mut args: I) -> Result<Options, String> {
    let mut port: u16 = 9299;
    let mut cfg = ProxyConfig::to("");
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let value = take_value(&flag, inline, &mut args)?;
        match flag.as_str() {
            "--port" => port = parse_num(&flag, &value)?,
            "--upstream" => {
                let Some(addr) = value.strip_prefix("http://") else {
                    return Err(format!("{flag}: `{value}` is not an http:// URL"));
                };
                cfg.upstream = format!("http://{}", addr.trim_end_matches('/'));
            }
            "--reject-429" => {
                let ratio: f64 = parse_num(&flag, &value)?;
                if !(0.0..=1.0).contains(&ratio) {
                    return Err(format!("{flag}: {ratio} is not between 0 and 1"));
                }
                cfg.reject_429 = ratio;
            }
            "--max-concurrent" => {
                let n: usize = parse_num(&flag, &value)?;
                if n == 0 {
                    return Err(format!("{flag}: must be at least 1"));
                }
                cfg.max_concurrent = Some(n);
            }
            "--latency-ms" => cfg.latency = Duration::from_millis(parse_num(&flag, &value)?),
            "--seed" => cfg.seed = parse_num(&flag, &value)?,
            "--lean" => cfg.lean = matches!(value.as_str(), "true" | "1" | "yes"),
            "--flavor" => {
                cfg.flavor = match value.to_ascii_lowercase().as_str() {
                    "es" | "elasticsearch" => Flavor::Elasticsearch,
                    "upstream" | "opensearch" | "os" => Flavor::Upstream,
                    other => return Err(format!("{flag}: `{other}` is neither es nor upstream")),
                }
            }
            "--fail-every" => cfg.fail_every = Some(parse_num(&flag, &value)?),
            "--retry-after-first" => {
                let Some((first, secs)) = value.split_once(':') else {
                    return Err(format!("{flag}: write K:SECS, e.g. 3:1"));
                };
                cfg.retry_after_first = Some((parse_num(&flag, first)?, parse_num(&flag, secs)?));
            }
            "--poison" => cfg
                .poison_ids
                .extend(value.split(',').filter(|s| !s.is_empty()).map(str::to_string)),
            other => return Err(format!("unknown flag `{other}`")),
        }
    }
    if cfg.upstream.is_empty() {
        return Err("--upstream is missing: start osmem-server (or another OpenSearch) and give its URL".into());
    }
    Ok(Options { port, cfg })
}

/// Waits for Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    let Options { port, cfg } = match parse_args(args.into_iter()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("es_endpoint: {message}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let server = match ProxyServer::start_on(cfg, port).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("es_endpoint: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("listening on {}", server.addr);
    let _ = std::io::stdout().flush();

    shutdown_signal().await;

    let state = &server.state;
    eprintln!(
        "es_endpoint: {} bulk requests ({} refused whole, {} gzip), at most {} at once",
        state.bulk_requests(),
        state.rejected_requests(),
        state.gzip_requests(),
        state.max_in_flight()
    );
}
