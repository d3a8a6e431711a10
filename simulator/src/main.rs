//! `simulator`: runs schedules of the durable path from seeds, replays one, or shows that
//! it finds holes that were fixed (docs/simulator.md).

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Parser;
use simulator::schedule::{self, Outcome};
use webhooks::holes::{self, Hole};

#[derive(Parser, Debug)]
#[command(about = "Deterministic simulation of the durable path: crash and fault schedules, each replayable from its seed")]
struct Args {
    /// Replay this one seed and print its trace.
    #[arg(long, env = "SIM_SEED")]
    seed: Option<u64>,
    /// Run this many schedules, seeds counting up from --first-seed.
    #[arg(long, env = "SIM_SCHEDULES")]
    schedules: Option<u64>,
    /// The first seed of a run; a fresh one (printed) when not given.
    #[arg(long, env = "SIM_FIRST_SEED")]
    first_seed: Option<u64>,
    /// Run random seeds for this many minutes.
    #[arg(long, env = "SIM_MINUTES")]
    minutes: Option<f64>,
    /// Reopen each fixed hole in turn and count the schedules until one fails.
    #[arg(long, env = "SIM_BUGS")]
    bugs: bool,
    /// Reopen one fixed hole (by name) for this run or replay.
    #[arg(long, env = "SIM_HOLE")]
    hole: Option<String>,
    /// Most schedules a hole may take to be found (with --bugs).
    #[arg(long, env = "SIM_BUG_BUDGET", default_value_t = 100_000)]
    bug_budget: u64,
    /// Threads running schedules (default: one per CPU).
    #[arg(long, env = "SIM_JOBS")]
    jobs: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let hole = match args.hole.as_deref().map(parse_hole).transpose() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    holes::reopen(hole);
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    if let Some(seed) = args.seed {
        return replay(seed, hole);
    }
    if args.bugs {
        return bugs(args.bug_budget, jobs);
    }
    let first = args.first_seed.unwrap_or_else(fresh_seed);
    let (count, limit) = match (args.schedules, args.minutes) {
        (Some(n), _) => (n, None),
        (None, Some(m)) => (u64::MAX, Some(Duration::from_secs_f64(m * 60.0))),
        (None, None) => (10_000, None),
    };
    println!("simulating from seed {first}{}", hole.map(|h| format!(" with the hole {} open", h.name())).unwrap_or_default());
    let report = run_many(first, count, limit, jobs, false);
    report.print();
    match report.failure {
        Some(o) => {
            fail(&o, hole);
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}

fn parse_hole(name: &str) -> Result<Hole, String> {
    Hole::ALL.into_iter().find(|h| h.name() == name).ok_or_else(|| format!("unknown hole {name:?}; known: {:?}", Hole::ALL.map(|h| h.name())))
}

fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ ((std::process::id() as u64) << 32)
}

fn replay(seed: u64, hole: Option<Hole>) -> ExitCode {
    let o = schedule::run(seed);
    println!("seed {seed}{}: {} operations, {} crashes, {} faults, trace hash {:016x}", if o.spool { " (a spool schedule)" } else { "" }, o.ops, o.crashes, o.faults, o.hash);
    println!("last operations:\n{}", o.tail);
    match &o.violation {
        Some(_) => {
            fail(&o, hole);
            ExitCode::FAILURE
        }
        None => {
            println!("no violation");
            ExitCode::SUCCESS
        }
    }
}

fn fail(o: &Outcome, hole: Option<Hole>) {
    let hole_flag = hole.map(|h| format!(" --hole {}", h.name())).unwrap_or_default();
    eprintln!("VIOLATION at seed {}: {}", o.seed, o.violation.as_deref().unwrap_or(""));
    eprintln!("last operations:\n{}", o.tail);
    eprintln!("replay: scripts/simulate.sh --seed {}{hole_flag}", o.seed);
}

/// What some schedules held, in sum.
#[derive(Default)]
struct Totals {
    schedules: u64,
    ops: u64,
    crashes: u64,
    faults: u64,
}

impl Totals {
    fn add(&mut self, o: &Outcome) {
        self.schedules += 1;
        self.ops += o.ops;
        self.crashes += o.crashes;
        self.faults += o.faults;
    }

    fn averages(&self) -> String {
        let n = self.schedules.max(1) as f64;
        format!("{:.1} operations, {:.2} crashes, {:.2} faults", self.ops as f64 / n, self.crashes as f64 / n, self.faults as f64 / n)
    }
}

/// What a run of many schedules did.
#[derive(Default)]
struct Report {
    all: Totals,
    /// The spool schedules among them.
    spool: Totals,
    elapsed: Duration,
    jobs: usize,
    /// The failing schedule with the lowest seed, if any.
    failure: Option<Outcome>,
}

impl Report {
    fn print(&self) {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let n = self.all.schedules;
        println!(
            "{n} schedules in {secs:.1} s on {} threads: {:.0} schedules/s ({:.0} per CPU-second); per schedule on average {}",
            self.jobs,
            n as f64 / secs,
            n as f64 / secs / self.jobs as f64,
            self.all.averages(),
        );
        println!("of them {} spool schedules, on average {}", self.spool.schedules, self.spool.averages());
    }
}

/// Runs schedules `first..first + count` (or until `limit`) on `jobs` threads; stops at the
/// first failure when `stop_early`, else at the end (reporting the lowest failing seed).
fn run_many(first: u64, count: u64, limit: Option<Duration>, jobs: usize, stop_early: bool) -> Report {
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let totals = Mutex::new(Report { jobs, ..Report::default() });
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                if stop.load(Ordering::Relaxed) || limit.is_some_and(|l| started.elapsed() >= l) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let o = schedule::run(first.wrapping_add(i));
                let Ok(mut t) = totals.lock() else { return };
                t.all.add(&o);
                if o.spool {
                    t.spool.add(&o);
                }
                if o.violation.is_some() {
                    if stop_early {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if t.failure.as_ref().is_none_or(|f| o.seed < f.seed) {
                        t.failure = Some(o);
                    }
                }
            });
        }
    });
    let mut report = totals.into_inner().unwrap_or_default();
    report.elapsed = started.elapsed();
    report
}

/// Reopens each hole in turn and counts the schedules, from seed 1, until one fails.
fn bugs(budget: u64, jobs: usize) -> ExitCode {
    let mut all_found = true;
    println!("{:<24} {:>10} {:>10} {:>9}  violation", "hole", "schedules", "seed", "seconds");
    for hole in Hole::ALL {
        holes::reopen(Some(hole));
        let report = run_many(1, budget, None, jobs, true);
        match &report.failure {
            Some(o) => {
                let v = o.violation.as_deref().unwrap_or("");
                println!("{:<24} {:>10} {:>10} {:>9.1}  {}", hole.name(), o.seed, o.seed, report.elapsed.as_secs_f64(), v.chars().take(100).collect::<String>());
            }
            None => {
                all_found = false;
                println!("{:<24} {:>10} {:>10} {:>9.1}  NOT FOUND", hole.name(), report.all.schedules, "-", report.elapsed.as_secs_f64());
            }
        }
    }
    holes::reopen(None);
    if all_found {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
