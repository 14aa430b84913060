//! Scratch databases on the local PostgreSQL and MariaDB servers.
//!
//! Server URLs come from `SLUICE_TEST_PG_URL` and `SLUICE_TEST_MYSQL_URL`
//! (defaults: the local servers). Each test gets databases of its own, named
//! after the test and the process, dropped when it ends. When a server is
//! unreachable the test says so loudly and is skipped; under `CI=true` it
//! fails instead.

use std::process::Command;

/// The PostgreSQL server's URL, without a database.
fn pg_server() -> String {
    std::env::var("SLUICE_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// The MySQL/MariaDB server's URL, without a database.
fn mysql_server() -> String {
    std::env::var("SLUICE_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

fn unreachable(what: &str, url: &str, why: &str) -> Option<()> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is not reachable at {url} ({why}); CI needs it running");
    }
    eprintln!("\n*** SKIPPED: {what} is not reachable at {url} ({why}) ***\n");
    None
}

/// A scratch PostgreSQL database.
pub struct PgDb {
    pub name: String,
    server: String,
}

impl PgDb {
    /// Creates `sluice_<tag>_<pid>`, or returns None (skipped) when the server is down.
    pub fn create(tag: &str) -> Option<PgDb> {
        let server = pg_server();
        let name = format!("sluice_{tag}_{}", std::process::id());
        let admin = format!("{server}/postgres");
        if let Err(e) = psql(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")) {
            unreachable("PostgreSQL", &server, &e)?;
        }
        psql(&admin, &format!("CREATE DATABASE {name}")).unwrap_or_else(|e| panic!("{e}"));
        Some(PgDb { name, server })
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    /// The server's `host:port`.
    pub fn addr(&self) -> String {
        host_port(&self.server, "5432")
    }

    /// The database's URL with `addr` (a proxy) in place of the server's address.
    pub fn url_via(&self, addr: &str) -> String {
        self.url().replacen(&self.addr(), addr, 1)
    }

    /// Runs SQL, panicking with the server's message on failure; returns the rows as text.
    pub fn sql(&self, sql: &str) -> String {
        psql(&self.url(), sql).unwrap_or_else(|e| panic!("psql {}: {e}\n{sql}", self.name))
    }

    /// An order-independent fingerprint of a table's rows in their text form.
    pub fn fingerprint(&self, table: &str) -> String {
        self.sql(&format!(
            "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t"
        ))
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = psql(
            &format!("{}/postgres", self.server),
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// `host:port` of a server URL (`scheme://user@host:port`).
fn host_port(server: &str, default_port: &str) -> String {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = host.split('/').next().unwrap_or(host);
    if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:{default_port}")
    }
}

fn psql(url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

/// A scratch MySQL/MariaDB database.
pub struct MyDb {
    pub name: String,
    server: String,
}

impl MyDb {
    pub fn create(tag: &str) -> Option<MyDb> {
        let server = mysql_server();
        let name = format!("sluice_{tag}_{}", std::process::id());
        let db = MyDb {
            name: name.clone(),
            server: server.clone(),
        };
        if let Err(e) = db.try_sql_in(None, &format!("DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}")) {
            unreachable("MariaDB", &server, &e)?;
        }
        Some(db)
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    fn client_args(&self) -> Vec<String> {
        // mysql://user[:password]@host:port
        let rest = self.server.split_once("://").map(|(_, r)| r).unwrap_or(&self.server);
        let (auth, host) = rest.rsplit_once('@').unwrap_or(("root", rest));
        let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
        let (host, port) = host.split_once(':').unwrap_or((host, "3306"));
        let mut args = vec![
            format!("--user={user}"),
            format!("--host={host}"),
            format!("--port={port}"),
            "--protocol=tcp".into(),
            "--batch".into(),
            "--skip-column-names".into(),
            "--default-character-set=utf8mb4".into(),
        ];
        if !password.is_empty() {
            args.push(format!("--password={password}"));
        }
        args
    }

    fn try_sql_in(&self, db: Option<&str>, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new("mariadb");
        cmd.args(self.client_args());
        if let Some(db) = db {
            cmd.arg(db);
        }
        let out = cmd
            .args(["-e", sql])
            .output()
            .map_err(|e| format!("cannot run the mariadb client: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }

    /// Runs SQL, returning the server's message on failure.
    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        self.try_sql_in(Some(&self.name), sql)
    }

    pub fn sql(&self, sql: &str) -> String {
        self.try_sql_in(Some(&self.name), sql)
            .unwrap_or_else(|e| panic!("mariadb {}: {e}\n{sql}", self.name))
    }
}

impl Drop for MyDb {
    fn drop(&mut self) {
        let _ = self.try_sql_in(None, &format!("DROP DATABASE IF EXISTS {}", self.name));
    }
}
