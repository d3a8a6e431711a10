//! One open-loop load: the sender on its own threads, the abort watcher beside it, and the
//! live progress line.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::Instant;

use crate::measure::client::Client;
use crate::measure::stats::{LoadTiming, Recorder};
use crate::scenario::Scenario;
use crate::send::abort;
use crate::send::engine::{self, Live};
use crate::send::schedule::Schedule;
use crate::workload::generator::{Generator, Renderer};

pub(crate) fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// From the start of the load's set-up to its first scheduled instant.
pub(crate) const LOAD_LEAD: Duration = Duration::from_millis(500);

pub(crate) async fn load(s: &Scenario, client: &Client, generator: Generator, renderer: Renderer, planned: u64, progress: bool) -> anyhow::Result<(Recorder, Generator, LoadTiming)> {
    let threads = s.load.threads.unwrap_or(1);
    let live: Vec<Arc<Live>> = (0..threads).map(|_| Arc::default()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now() + LOAD_LEAD;
    let load = engine::Load {
        base: client.base.clone(),
        path: s.webhook_path(),
        schedule: Schedule::new(&s.load.phases),
        generator,
        renderer,
        connections: s.load.max_in_flight,
        threads,
        phases: s.load.phases.len(),
        allow_shedding: s.load.allow_shedding,
        start_unix: unix_now() + 1,
        t0,
        stop: stop.clone(),
    };
    let bar = progress_bar(s, planned, progress, live.clone());
    let watcher = abort::watch(s.gates.clone(), live.clone(), stop.clone());
    let (mut recorder, generator) = {
        let live = live.clone();
        tokio::task::spawn_blocking(move || engine::run(load, &live)).await??
    };
    stop.store(true, Ordering::Relaxed);
    recorder.aborted = watcher.await?;
    bar.finish_and_clear();
    let timing = LoadTiming { send_window_s: recorder.last_send.as_secs_f64().max(1e-3), wall_s: t0.elapsed().as_secs_f64() };
    Ok((recorder, generator, timing))
}

fn progress_bar(s: &Scenario, planned: u64, enabled: bool, live: Vec<Arc<Live>>) -> ProgressBar {
    let bar = ProgressBar::new(planned);
    if !enabled {
        bar.set_draw_target(ProgressDrawTarget::hidden());
        return bar;
    }
    // `wide_msg` takes what the terminal has left and cuts the rest, so the line never wraps.
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:20} {pos}/{len} {wide_msg}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    let phases: Vec<(String, f64)> = s.load.phases.iter().enumerate().map(|(i, p)| (if p.name.is_empty() { format!("phase {i}") } else { p.name.clone() }, p.target_rate())).collect();
    let ticker = bar.clone();
    tokio::spawn(async move {
        let mut last = 0;
        while !ticker.is_finished() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let sum = |f: fn(&Live) -> u64| live.iter().map(|l| f(l)).sum::<u64>();
            let done = sum(|l| l.done.load(Ordering::Relaxed));
            let phase = live.iter().map(|l| l.phase.load(Ordering::Relaxed)).max().unwrap_or(0);
            let (name, target) = phases.get(phase as usize).cloned().unwrap_or_default();
            ticker.set_position(done);
            ticker.set_message(format!(
                "{name} {target:.0}/s: done {}/s, p99 {:.1} ms, {} errors",
                (done - last) * 2,
                live.iter().map(|l| l.p99_us.load(Ordering::Relaxed)).max().unwrap_or(0) as f64 / 1000.0,
                sum(|l| l.errors.load(Ordering::Relaxed))
            ));
            last = done;
        }
    });
    bar
}
