//! Log output: plain text for people (colour only on a terminal, and never with `NO_COLOR`),
//! JSON lines for log shippers. `RUST_LOG` filters either. Spans also go to an OTLP collector
//! when one is configured (`crate::traces`), filtered apart from the log lines: `RUST_LOG=warn`
//! must not cut the traces.

use std::io::IsTerminal;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::traces::{Exporter, OtlpConfig, TracesError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Sends the last spans when dropped at exit; holds nothing without an exporter.
pub struct Guard(Option<Exporter>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(exporter) = &self.0 {
            exporter.shutdown();
        }
    }
}

/// Installs the global subscriber; `default_filter` applies when `RUST_LOG` is unset.
pub fn init(format: LogFormat, default_filter: &str, otlp: Option<&OtlpConfig>) -> Result<Guard, TracesError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let fmt = tracing_subscriber::fmt::layer();
    let fmt = match format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Text => fmt.with_ansi(colour(std::io::stdout().is_terminal(), std::env::var_os("NO_COLOR"))).boxed(),
    };
    let (exporter, otel) = match otlp {
        Some(cfg) => {
            let (exporter, tracer) = Exporter::start(cfg)?;
            let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(Targets::new().with_target("webhooks", tracing::Level::INFO));
            (Some(exporter), Some(layer))
        }
        None => (None, None),
    };
    tracing_subscriber::registry().with(fmt.with_filter(filter)).with(otel).init();
    Ok(Guard(exporter))
}

/// <https://no-color.org>: any non-empty NO_COLOR turns colour off.
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())));
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None));
    }
}
