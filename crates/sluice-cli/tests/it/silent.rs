//! A server that accepts connections and never answers (a wedged proxy, a
//! port forwarded to nothing): `copy` and `check` end with a connection
//! error (exit 3) naming the address and the cause instead of hanging.

use std::net::TcpListener;
use std::path::Path;
use std::process::Output;

use crate::sluice;

/// Listens on a free local port, accepts every connection and never writes
/// to it; returns the port. The listener lives until the test process ends.
fn silent_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
    let port = listener.local_addr().expect("local address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    port
}

fn assert_no_answer(out: &Output, address: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("no answer within 1 s"), "{stderr}");
    assert!(
        stderr.contains("accepted the connection but did not respond"),
        "{stderr}"
    );
    assert!(stderr.contains(address), "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");
}

fn pipeline(dir: &Path, source: &str, sink: &str) {
    std::fs::write(dir.join("p.toml"), format!("[source]\n{source}\n\n[[sinks]]\n{sink}\n")).unwrap();
}

/// Copies into and out of a `scheme` server that never answers, and checks a
/// pipeline that uses it (as its sink when `as_sink`, else as its source).
fn copies_and_check_end(scheme: &str, as_sink: bool) {
    let port = silent_server();
    let address = format!("127.0.0.1:{port}");
    let url = format!("{scheme}://u:secret@{address}/db?connect_timeout=1");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.csv"), "id\n1\n").unwrap();
    // As a destination and as a source.
    assert_no_answer(&sluice(dir.path(), &["copy", "a.csv", &url, "--no-progress"]), &address);
    assert_no_answer(
        &sluice(dir.path(), &["copy", &url, "out.csv", "--no-progress"]),
        &address,
    );
    let server = format!("type = \"{scheme}\"\nurl = \"{url}\"");
    if as_sink {
        pipeline(dir.path(), "type = \"file\"\npath = \"a.csv\"", &server);
    } else {
        pipeline(dir.path(), &server, "type = \"file\"\npath = \"out.csv\"");
    }
    assert_no_answer(&sluice(dir.path(), &["check", "p.toml"]), &address);
}

#[test]
fn copy_and_check_end_when_a_postgres_server_never_answers() {
    copies_and_check_end("postgres", true);
}

#[test]
fn copy_and_check_end_when_a_mysql_server_never_answers() {
    copies_and_check_end("mysql", false);
}
