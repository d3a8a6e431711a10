//! The command line as a user meets it: each subcommand's help lists only the flags it
//! uses, and logs are plain or JSON as asked. That docs/configuration.md documents every
//! flag is checked by docs.rs.

mod common;

use std::process::Command;

use common::*;

fn help(sub: &str) -> String {
    let out = Command::new(BIN).args([sub, "--help"]).output().expect("run webhooks --help");
    assert!(out.status.success(), "{sub} --help");
    String::from_utf8(out.stdout).expect("utf-8 help")
}

/// The flags a help text defines: the first `--name` of each line that starts with a dash
/// (descriptions that mention other flags do not count).
fn flags(help: &str) -> Vec<String> {
    help.lines()
        .filter(|l| l.trim_start().starts_with('-'))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn each_subcommand_lists_only_the_flags_it_uses() {
    let has = |sub: &str, flag: &str| flags(&help(sub)).iter().any(|f| f == flag);
    for (sub, present, absent) in [
        ("standalone", &["--listen", "--batch-size", "--data-dir"][..], &["--metrics-listen"][..]),
        ("server", &["--listen", "--spool", "--kafka-brokers"], &["--batch-size", "--consumer", "--metrics-listen"]),
        ("worker", &["--metrics-listen", "--batch-size", "--kafka-brokers"], &["--listen", "--webhook-secret", "--spool", "--append-timeout-ms"]),
    ] {
        for f in present {
            assert!(has(sub, f), "{sub} --help lacks {f}");
        }
        for f in absent {
            assert!(!has(sub, f), "{sub} --help lists {f}, which it does not use");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_a_file_carry_no_colour_and_json_logs_are_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    for format in ["text", "json"] {
        let addr = free_addr().to_string();
        let data = dir.path().join(format);
        let log = dir.path().join(format!("{format}.log"));
        let args = ["--log-format", format, "standalone", "--data-dir", data.to_str().expect("utf-8"), "--listen", &addr];
        let mut p = Proc::spawn(format, &args, &[], &log);
        wait_healthy(&client(), &format!("http://{addr}")).await;
        assert!(p.terminate().is_some_and(|s| s.success()));
        let text = std::fs::read_to_string(&log).expect("log");
        assert!(text.contains("listening") && !text.contains('\u{1b}'), "{format}: {text}");
        if format == "json" {
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
            }
        }
    }
}
