//! loadgen leaves nothing behind: signalled alone (not its process group), or failing, it
//! stops the `webhooks` it spawned and removes the temporary data directory. Each run gets
//! its own TMPDIR, so "nothing left" is checked by that directory being empty.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SCENARIO: &str = r#"
name = "cleanup"
[target]
spawn = "standalone"
ARGS
[workload]
orders = 20
[load]
[[load.phases]]
kind = "constant"
rate = 20
duration_s = 120
"#;

struct Run {
    loadgen: Child,
    tmp: tempfile::TempDir,
}

fn start(target_args: &str) -> Run {
    let tmp = tempfile::tempdir().expect("temp dir");
    let scenario = tmp.path().join("scenario.toml");
    std::fs::write(&scenario, SCENARIO.replace("ARGS", target_args)).expect("write scenario");
    let children = tmp.path().join("tmp");
    std::fs::create_dir(&children).expect("TMPDIR");
    let loadgen = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("run")
        .arg(&scenario)
        .env("TMPDIR", &children)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn loadgen");
    Run { loadgen, tmp }
}

impl Run {
    fn children_tmp(&self) -> PathBuf {
        self.tmp.path().join("tmp")
    }

    /// The spawned `webhooks`, once its log says it is listening.
    fn wait_for_system(&self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let listening = std::fs::read_dir(self.children_tmp()).into_iter().flatten().flatten().any(|d| {
                std::fs::read_to_string(d.path().join("standalone.log")).is_ok_and(|l| l.contains("listening"))
            });
            if let (true, Some(pid)) = (listening, child_of(self.loadgen.id())) {
                return pid;
            }
            assert!(Instant::now() < deadline, "loadgen's system did not start within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.loadgen.try_wait().expect("wait") {
                return status.code().expect("exited, not killed");
            }
            assert!(Instant::now() < deadline, "loadgen did not exit within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn assert_nothing_left(&self, system: Option<u32>) {
        if let Some(pid) = system {
            assert!(!running(pid), "the spawned webhooks (pid {pid}) is still running");
        }
        let left: Vec<_> = std::fs::read_dir(self.children_tmp()).expect("TMPDIR").flatten().map(|e| e.path()).collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.loadgen.kill();
        let _ = self.loadgen.wait();
    }
}

/// A process whose parent is `parent`, from /proc/*/stat.
fn child_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // Fields after the command name, which is in parentheses: state, then ppid.
        let ppid: u32 = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == parent).then_some(pid)
    })
}

/// Alive and not a zombie.
fn running(pid: u32) -> bool {
    let stat = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).unwrap_or_default();
    stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next()).is_some_and(|state| state != "Z")
}

fn signalled_alone(signal: &str, exit_code: i32) {
    let mut run = start("");
    let system = run.wait_for_system();
    let status = Command::new("kill").args([&format!("-{signal}"), &run.loadgen.id().to_string()]).status().expect("kill");
    assert!(status.success());
    assert_eq!(run.wait_exit(), exit_code, "exit code after SIG{signal}");
    run.assert_nothing_left(Some(system));
}

#[test]
fn sigterm_to_loadgen_alone_stops_the_system_and_removes_its_directory() {
    signalled_alone("TERM", 143);
}

#[test]
fn sigint_to_loadgen_alone_stops_the_system_and_removes_its_directory() {
    signalled_alone("INT", 130);
}

#[test]
fn an_error_exit_removes_the_directory() {
    // The system refuses an unknown flag, so loadgen gives up waiting for it (30 s) and fails.
    let mut run = start(r#"args = ["--no-such-flag"]"#);
    assert_eq!(run.wait_exit(), 1);
    run.assert_nothing_left(None);
}
