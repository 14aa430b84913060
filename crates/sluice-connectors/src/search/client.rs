//! HTTP access to an Elasticsearch or OpenSearch cluster: one client with
//! its credentials and TLS settings, requests with JSON or NDJSON bodies,
//! and errors classified as retryable (connection lost, 429, 5xx) or not.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sluice_core::{Error, Result};

use super::config::ClusterConfig;

/// Which server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Elasticsearch,
    OpenSearch,
}

/// A cluster: base URL, credentials, and what it said it is.
#[derive(Clone)]
pub(crate) struct Cluster {
    http: reqwest::Client,
    base: String,
    /// The base URL without credentials, for messages.
    pub shown: String,
    pub flavor: Flavor,
    /// Major and minor version reported by `GET /`.
    pub version: (u32, u32),
    /// Whether the cluster is on this machine (a loopback address).
    pub local: bool,
}

/// A response, read whole.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
    /// `Retry-After`, in seconds, when the server sent one.
    pub retry_after: Option<Duration>,
}

impl Cluster {
    /// Builds the client; connects to nothing.
    pub fn new(cfg: &ClusterConfig) -> Result<Cluster> {
        let mut url = reqwest::Url::parse(&cfg.url).map_err(|e| {
            Error::config(
                "url",
                format!("`{}` is not a URL ({e}); write http://host:9200", cfg.url),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::config(
                "url",
                format!("`{}`: a cluster URL starts with http:// or https://", cfg.url),
            ));
        }
        let mut user = cfg.user.clone();
        let mut password = cfg.password.clone();
        if !url.username().is_empty() {
            user.get_or_insert_with(|| percent_decode(url.username()));
            if let Some(p) = url.password() {
                password.get_or_insert_with(|| percent_decode(p));
            }
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        let mut headers = HeaderMap::new();
        let auth = match (&cfg.api_key, &cfg.bearer, &user) {
            (Some(key), _, _) => {
                let key = if key.contains(':') {
                    base64::engine::general_purpose::STANDARD.encode(key)
                } else {
                    key.clone()
                };
                Some(format!("ApiKey {key}"))
            }
            (None, Some(token), _) => Some(format!("Bearer {token}")),
            (None, None, Some(u)) => {
                let pair = format!("{u}:{}", password.as_deref().unwrap_or(""));
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            _ => None,
        };
        if let Some(a) = auth {
            let mut v = HeaderValue::from_str(&a)
                .map_err(|_| Error::config("api_key", "credentials hold characters a header cannot carry"))?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(cfg.timeout_s.max(1)))
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true);
        if let Some(path) = &cfg.ca_cert {
            let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::config("ca_cert", format!("{path}: not a PEM certificate ({e})")))?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        if cfg.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| Error::config("url", format!("cannot build an HTTP client: {e}")))?;
        let base = url.as_str().trim_end_matches('/').to_string();
        let local = match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        Ok(Cluster {
            http,
            shown: base.clone(),
            base,
            flavor: Flavor::Elasticsearch,
            version: (0, 0),
            local,
        })
    }

    /// Asks the cluster what it is (`GET /`).
    pub async fn identify(&mut self) -> Result<()> {
        let info = self.json(Method::GET, "/", None).await?;
        let version = &info["version"];
        self.flavor = if version["distribution"] == "opensearch" {
            Flavor::OpenSearch
        } else {
            Flavor::Elasticsearch
        };
        let number = version["number"].as_str().unwrap_or("0.0");
        let mut parts = number.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        self.version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        Ok(())
    }

    /// Whether point-in-time searches are available (Elasticsearch 7.10+,
    /// OpenSearch 2.4+).
    pub fn has_pit(&self) -> bool {
        match self.flavor {
            Flavor::Elasticsearch => self.version >= (7, 10),
            Flavor::OpenSearch => self.version >= (2, 4),
        }
    }

    /// Sends a request and reads the whole answer; transport failures are
    /// retryable errors.
    pub async fn send(&self, method: Method, path: &str, body: Option<Body>) -> Result<Reply> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.header(CONTENT_TYPE, body.content_type);
            if body.gzip {
                req = req.header(CONTENT_ENCODING, "gzip");
            }
            req = req.body(body.bytes);
        }
        let resp = req.send().await.map_err(|e| self.transport(path, e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|s| Duration::from_secs_f64(s.clamp(0.0, 300.0)));
        let body = resp.bytes().await.map_err(|e| self.transport(path, e))?;
        Ok(Reply {
            status,
            body,
            retry_after,
        })
    }

    /// A JSON request whose answer must be a success; other statuses are
    /// errors carrying the server's reason (retryable for 429 and 5xx).
    pub async fn json(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
        let body = body.map(Body::json);
        let reply = self.send(method.clone(), path, body).await?;
        self.check(&method, path, reply)
    }

    /// The JSON of a successful reply, or the error it describes.
    pub fn check(&self, method: &Method, path: &str, reply: Reply) -> Result<Value> {
        if reply.status.is_success() {
            return serde_json::from_slice(&reply.body)
                .map_err(|e| Error::connection(&self.shown, format!("{method} {path}: the answer is not JSON ({e})")));
        }
        Err(self.status_error(method, path, &reply))
    }

    /// The error a non-success reply stands for.
    pub fn status_error(&self, method: &Method, path: &str, reply: &Reply) -> Error {
        let reason = error_reason(&reply.body);
        let hint = match reply.status {
            StatusCode::UNAUTHORIZED => {
                " (give the cluster's credentials: user:password@ in the URL, or user and password, api_key or \
                 bearer on the connector; SLUICE_SINKS__0__API_KEY or SLUICE_SOURCE__API_KEY keep them off the \
                 command line)"
            }
            StatusCode::FORBIDDEN => " (the credentials lack a privilege this request needs)",
            _ => "",
        };
        let message = format!("{method} {path}: HTTP {} {reason}{hint}", reply.status.as_u16());
        if retryable_status(reply.status) {
            Error::retryable(&self.shown, message)
        } else {
            Error::connection(&self.shown, message)
        }
    }

    fn transport(&self, path: &str, e: reqwest::Error) -> Error {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "cannot connect"
        } else {
            "connection failed"
        };
        // The cause (refused, certificate not trusted…) is in the chain.
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            detail.push_str(": ");
            detail.push_str(&cause.to_string());
            source = cause.source();
        }
        let hint = if detail.contains("UnknownIssuer") || detail.contains("certificate") {
            " (trust the cluster's certificate authority with ca_cert = \"ca.pem\")"
        } else {
            ""
        };
        Error::retryable(&self.shown, format!("{path}: {what}: {detail}{hint}"))
    }
}

/// A request body.
pub(crate) struct Body {
    pub bytes: Bytes,
    pub content_type: &'static str,
    pub gzip: bool,
}

impl Body {
    pub fn json(v: &Value) -> Body {
        Body {
            bytes: Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
            content_type: "application/json",
            gzip: false,
        }
    }
}

/// Statuses worth trying again: throttling and server-side failures.
pub(crate) fn retryable_status(s: StatusCode) -> bool {
    s == StatusCode::TOO_MANY_REQUESTS || s == StatusCode::REQUEST_TIMEOUT || s.is_server_error()
}

/// The `type: reason` of an Elasticsearch error body, or the body itself.
pub(crate) fn error_reason(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => match &v["error"] {
            Value::Object(e) => format!(
                "{}: {}",
                e.get("type").and_then(Value::as_str).unwrap_or("error"),
                e.get("reason").and_then(Value::as_str).unwrap_or("")
            ),
            Value::String(s) => s.clone(),
            _ => truncate(&String::from_utf8_lossy(body), 300),
        },
        Err(_) => truncate(&String::from_utf8_lossy(body), 300),
    }
}

fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes an index name or id for a URL path segment.
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'*' | b',') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_url_become_basic_auth_and_leave_the_shown_url() {
        let c = Cluster::new(&ClusterConfig {
            url: "http://elastic:p%40ss@127.0.0.1:9200/".into(),
            timeout_s: 5,
            ..ClusterConfig::default()
        })
        .unwrap();
        assert_eq!(c.shown, "http://127.0.0.1:9200");
    }

    #[test]
    fn error_bodies_give_type_and_reason() {
        let body = br#"{"error":{"type":"index_not_found_exception","reason":"no such index [x]"},"status":404}"#;
        assert_eq!(error_reason(body), "index_not_found_exception: no such index [x]");
        assert!(retryable_status(StatusCode::TOO_MANY_REQUESTS));
        assert!(retryable_status(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!retryable_status(StatusCode::BAD_REQUEST));
    }
}
