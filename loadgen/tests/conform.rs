//! `loadgen conform` run as a user runs it, over real HTTP on loopback: our system passes the
//! rules, and a receiver that answers nonsense is reported as such, with a report, not a panic.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn suite(file: &str) -> String {
    format!("{}/../scenarios/conformance/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn conform(url: &str, args: &[&str], out: &std::path::Path) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_loadgen"));
    cmd.args(["conform", url, "--suite", &suite(""), "--out", out.to_str().unwrap()]).args(args).env("CONFORM_SECRET", SECRET);
    let o = cmd.output().expect("loadgen runs");
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn our_system_keeps_the_rules_it_is_asked() {
    let bin = std::env::var_os("WEBHOOKS_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_loadgen")).with_file_name("webhooks"));
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let _system = Killed(Command::new(bin).args(["standalone", "--listen", &format!("127.0.0.1:{port}"), "--data-dir", data.path().to_str().unwrap()]).env("WEBHOOK_SECRET", SECRET).spawn().expect("webhooks starts"));
    let out = tempfile::tempdir().unwrap();
    let rules = "out-of-order,slow-answer,bad-signatures,malformed,amounts";
    let (code, text) = conform(&format!("http://127.0.0.1:{port}"), &["--receiver", &suite("receivers/webhooks.toml"), "--rule", rules], out.path());
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("rules kept 5, broken 0"), "{text}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["rules"].as_array().map(Vec::len), Some(5));
}

/// Answers every request with a 500 and a body that is no one's JSON.
fn broken_receiver() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = stream;
                let mut buf = [0u8; 8192];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {
                    if s.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\n\r\nboom!").is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn a_receiver_that_fails_every_request_is_reported_request_by_request() {
    let port = broken_receiver();
    let out = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (code, text) = conform(&format!("http://127.0.0.1:{port}"), &["--rule", "out-of-order"], out.path());
    assert_eq!(code, loadgen::GATES_FAILED, "{text}");
    assert!(started.elapsed() < Duration::from_secs(60), "within the rule's limit");
    assert!(!text.contains("panicked"), "{text}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json")).unwrap()).unwrap();
    let rule = &report["rules"][0];
    assert_eq!(rule["verdict"], "fail");
    assert_eq!(rule["broke"].as_array().map(Vec::len), Some(12), "every case named: {rule}");
    let evidence = rule["broke"][0]["what"].to_string();
    assert!(evidence.contains("answered 500") && evidence.contains("GET /api/payments/"), "{evidence}");
}
