//! `loadgen run SCENARIO` and `loadgen compare BASE NEW`.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use loadgen::scenario::Scenario;
use loadgen::{compare, run, GATES_FAILED};

/// Open-loop load, honest latency and end-state verification for the webhooks system.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario; exits 99 when a gate fails.
    Run {
        /// A scenario file, for example scenarios/ci.toml.
        scenario: PathBuf,
        /// Write report.json, report.md and report.html here.
        #[arg(long, env = "LOADGEN_OUT")]
        out: Option<PathBuf>,
        /// Override the scenario's target with a running system.
        #[arg(long, env = "LOADGEN_URL")]
        url: Option<String>,
        /// Send the load to this path instead (setup and checks keep theirs): with a cheap
        /// one such as /healthz, the report's loadgen CPU is the generator's cost alone.
        #[arg(long, env = "LOADGEN_WEBHOOK_PATH")]
        webhook_path: Option<String>,
    },
    /// Compare two report.json files; exits 99 on a regression beyond the tolerance.
    Compare {
        base: PathBuf,
        new: PathBuf,
        /// Allowed relative change, for example 0.2 for 20 %.
        #[arg(long, default_value_t = 0.2)]
        tolerance: f64,
        /// Write compare.html here: the table and both runs' charts overlaid.
        #[arg(long, env = "LOADGEN_COMPARE_OUT")]
        out: Option<PathBuf>,
    },
}

fn main() {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into())).init();
    let code = match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn real_main() -> anyhow::Result<i32> {
    match Cli::parse().command {
        Command::Run { scenario, out, url, webhook_path } => {
            let mut s = Scenario::load(&scenario)?;
            s.target.webhook_path = webhook_path.or(s.target.webhook_path);
            if let Some(url) = url {
                s.target.url = Some(url);
                s.target.spawn = None;
            }
            let runtime = tokio::runtime::Runtime::new()?;
            let mut m = runtime.block_on(run::run(&s, std::io::stdout().is_terminal()))?;
            let pass = m.judge(&s.gates);
            print!("{}", m.summary());
            if let Some(dir) = out {
                m.write(&dir)?;
                println!("  reports written to {}", dir.display());
            }
            Ok(if pass { 0 } else { GATES_FAILED })
        }
        Command::Compare { base, new, tolerance, out } => {
            let read = |p: &PathBuf| -> anyhow::Result<serde_json::Value> { Ok(serde_json::from_str(&std::fs::read_to_string(p)?)?) };
            let (base, new) = (read(&base)?, read(&new)?);
            let (table, ok) = compare::compare(&base, &new, tolerance);
            print!("{table}");
            if let Some(dir) = out {
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join("compare.html"), compare::html(&base, &new, &table)?)?;
                println!("  comparison written to {}", dir.join("compare.html").display());
            }
            Ok(if ok { 0 } else { GATES_FAILED })
        }
    }
}
