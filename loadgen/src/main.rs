//! `loadgen run SCENARIO`, `loadgen validate SCENARIO`, `loadgen schema` and `loadgen compare BASE NEW`.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use loadgen::scenario::Scenario;
use loadgen::experiment::run;
use loadgen::experiment::spawn::unless_signalled;
use loadgen::conform;
use loadgen::report::compare;
use loadgen::{ABORTED, GATES_FAILED, NOT_COMPARABLE};

/// Open-loop load, honest latency and end-state verification for the webhooks system.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario; exits 99 when a gate fails, 98 when an `abort_on_fail` gate ended
    /// the load early (the reports are written either way).
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
    /// Check a scenario file without running it: every problem, each with its field and
    /// allowed range; exits 1 if there is any. Reads `*_env` secrets from the environment.
    Validate {
        /// A scenario file, for example scenarios/ci.toml.
        scenario: PathBuf,
    },
    /// Print the JSON Schema of the scenario format (checked in as scenarios/scenario.schema.json).
    Schema,
    /// Run the conformance suite (scenarios/conformance) against any payment receiver: one
    /// rule a scenario, each pass or fail with the payments that broke it. Exits 99 when a
    /// rule fails, or with --expect-failures when the failing rules differ from that list.
    Conform {
        /// The receiver's base URL, for example http://127.0.0.1:3100.
        url: String,
        /// A TOML file saying how the receiver names its paths, fields and statuses, and how
        /// it verifies signatures; default: the seed design's API, unsigned.
        #[arg(long, env = "LOADGEN_RECEIVER")]
        receiver: Option<PathBuf>,
        /// A shell command that kills the receiver's worker and starts it again (the crash
        /// rule); without it that rule is skipped.
        #[arg(long, env = "LOADGEN_RESTART")]
        restart: Option<String>,
        /// The folder of rules, one *.toml each.
        #[arg(long, env = "LOADGEN_SUITE", default_value = "scenarios/conformance")]
        suite: PathBuf,
        /// Run only these rules, by name (comma-separated or repeated).
        #[arg(long = "rule", env = "LOADGEN_RULES", value_delimiter = ',')]
        rules: Vec<String>,
        /// A file naming the rules this receiver is known to fail, one a line: the run then
        /// passes only when exactly those fail, so a change either way shows.
        #[arg(long, env = "LOADGEN_EXPECT_FAILURES")]
        expect_failures: Option<PathBuf>,
        /// Write report.json, report.md and report.html here.
        #[arg(long, env = "LOADGEN_CONFORM_OUT")]
        out: Option<PathBuf>,
    },
    /// Compare two report.json files: every figure, CPU per event, the generator-limited flag
    /// and every gate. Exits 3 when the runs differ in scenario, seed, machine or CPU (unless
    /// --allow-different), 99 when a figure regressed beyond its tolerance, a gate newly
    /// failed or a correctness count grew.
    Compare {
        base: PathBuf,
        new: PathBuf,
        /// Allowed relative change, for example 0.2 for 20 %: for every figure, or for the
        /// --fail-on figures given without their own.
        #[arg(long, env = "LOADGEN_COMPARE_TOLERANCE", default_value_t = 0.2)]
        tolerance: f64,
        /// Gate on this figure only (repeatable), as FIGURE or FIGURE=TOLERANCE, for example
        /// ack_p99_ms=0.1 or system_cpu_us_per_event. Figures: accepted_per_s, applied_per_s,
        /// ack_p50_ms, ack_p99_ms, ack_p999_ms, e2e_p99_ms, drain_s, rss_peak_mb,
        /// system_cpu_us_per_event, loadgen_us_per_request. A chosen figure missing from
        /// either report fails the comparison.
        #[arg(long = "fail-on", value_name = "FIGURE[=TOLERANCE]")]
        fail_on: Vec<String>,
        /// Compare runs of different scenarios, seeds, machines or CPUs anyway, marked so.
        #[arg(long)]
        allow_different: bool,
        /// Write compare.html here: the table and both runs' charts overlaid.
        #[arg(long, env = "LOADGEN_COMPARE_OUT")]
        out: Option<PathBuf>,
    },
}

fn main() {
    // loadgen does not link the system it measures: its own subscriber, coloured only on a
    // terminal and never with NO_COLOR (https://no-color.org), like the system's.
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into())).with_ansi(colour).init();
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
            let run = runtime.block_on(unless_signalled(run::run(&s, std::io::stdout().is_terminal())))?;
            let mut m = match run {
                Ok(m) => m?,
                Err(signalled) => {
                    eprintln!("loadgen: {signalled}");
                    // The load's connection loops run on blocking threads until their schedule
                    // ends; dropping the runtime would wait for them, for minutes.
                    runtime.shutdown_background();
                    return Ok(signalled.exit_code);
                }
            };
            let pass = m.judge(&s.gates);
            print!("{}", m.summary());
            if let Some(dir) = out {
                m.write(&dir).with_context(|| format!("cannot write the reports to {}", dir.display()))?;
                println!("  reports written to {}", dir.display());
            }
            Ok(match (&m.aborted, pass) {
                (Some(_), _) => ABORTED,
                (None, true) => 0,
                (None, false) => GATES_FAILED,
            })
        }
        Command::Validate { scenario } => {
            let s = Scenario::load(&scenario)?;
            println!("{}: valid; {} phases, {} requests planned over {} s", scenario.display(), s.load.phases.len(), s.planned_requests(), s.load.phases.iter().map(|p| p.duration_s).sum::<f64>());
            Ok(0)
        }
        Command::Schema => {
            print!("{}", Scenario::json_schema());
            Ok(0)
        }
        Command::Conform { url, receiver, restart, suite, rules, expect_failures, out } => {
            let receiver = match receiver {
                Some(path) => loadgen::target::Receiver::load(&path)?,
                None => loadgen::target::Receiver::default(),
            };
            let expected = match &expect_failures {
                Some(path) => Some(conform::report::read_expected(&std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?)),
                None => None,
            };
            let options = conform::Options { url: url.clone(), receiver, restart, suite, only: rules };
            let runtime = tokio::runtime::Runtime::new()?;
            let outcomes = runtime.block_on(conform::run(&options))?;
            print!("{}", conform::report::table(&url, &outcomes));
            if let Some(dir) = out {
                conform::report::write(&dir, &url, &outcomes).with_context(|| format!("cannot write the reports to {}", dir.display()))?;
                println!("  reports written to {}", dir.display());
            }
            let pass = match expected {
                Some(expected) => {
                    let (new_failures, new_passes) = conform::report::against_expected(&outcomes, &expected);
                    for r in &new_failures {
                        println!("NEWLY FAILING {r} (not in the expected failures)");
                    }
                    for r in &new_passes {
                        println!("NEWLY PASSING {r} (listed as an expected failure: remove it from the list)");
                    }
                    new_failures.is_empty() && new_passes.is_empty()
                }
                None => conform::report::failing(&outcomes).is_empty(),
            };
            Ok(if pass { 0 } else { GATES_FAILED })
        }
        Command::Compare { base, new, tolerance, fail_on, allow_different, out } => {
            let fail_on = fail_on.iter().map(|f| compare::parse_fail_on(f, tolerance)).collect::<Result<Vec<_>, _>>().map_err(|e| anyhow::anyhow!("--fail-on {e}"))?;
            let (base, new) = (compare::read_report(&base)?, compare::read_report(&new)?);
            let c = compare::compare(&base, &new, &compare::Options { tolerance, fail_on });
            if !c.comparable() && !allow_different {
                eprintln!("loadgen: these runs do not compare (--allow-different to compare them anyway):\n  {}", c.mismatches.join("\n  "));
                return Ok(NOT_COMPARABLE);
            }
            print!("{}", c.table);
            if let Some(dir) = out {
                std::fs::create_dir_all(&dir)?;
                std::fs::write(dir.join("compare.html"), compare::html(&base, &new, &c.table)?)?;
                println!("  comparison written to {}", dir.join("compare.html").display());
            }
            for r in &c.regressions {
                println!("REGRESSION {r}");
            }
            Ok(if c.regressions.is_empty() { 0 } else { GATES_FAILED })
        }
    }
}
