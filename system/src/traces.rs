//! OpenTelemetry traces, exported over OTLP/HTTP only when an endpoint is configured.
//!
//! One trace follows a webhook: the ingress span (`webhook.receive`, a child of the caller's
//! `traceparent` when it sent one), the durable append inside it (`queue.append`), and the
//! worker's `webhook.apply`, a child of the ingress span through the W3C `traceparent` the
//! queue record carries. With no endpoint, none of these spans is made: the hot path pays for
//! one flag read and, when the caller sent a `traceparent`, for carrying it along unchanged.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header, and the name of the field the queue record keeps it in.
pub const TRACEPARENT: &str = "traceparent";

/// Set once, when the exporter is installed; read on every request.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported: the only check the hot path makes.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Where spans go and under which service name.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// The collector's base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` means it: spans are posted
    /// to `<endpoint>/v1/traces`.
    pub endpoint: String,
    pub service_name: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot export traces to {endpoint}: {why}")]
pub struct TracesError {
    endpoint: String,
    why: String,
}

/// Exports spans in batches from a thread of its own; `shutdown` sends what is left.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    pub fn start(cfg: &OtlpConfig) -> Result<(Self, opentelemetry_sdk::trace::SdkTracer), TracesError> {
        let endpoint = format!("{}/v1/traces", cfg.endpoint.trim_end_matches('/'));
        let failed = |why: String| TracesError { endpoint: endpoint.clone(), why };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| failed(e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(cfg.service_name.clone()).build())
            .build();
        let tracer = provider.tracer("webhooks");
        EXPORTING.store(true, Ordering::Relaxed);
        Ok((Self { provider }, tracer))
    }

    /// Sends the spans still buffered; called once at exit.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "could not send the last spans");
        }
    }
}

/// Makes `span` a child of `traceparent` (the caller's header, or the queue record's field).
/// A missing or malformed one leaves the span the root of a new trace.
pub fn set_parent(span: &Span, traceparent: Option<&str>) {
    let Some(value) = traceparent else { return };
    let cx = TraceContextPropagator::new().extract(&One(value));
    // Fails only for a span no layer records (filtered out): nothing to join then.
    let _ = span.set_parent(cx);
}

/// The `traceparent` naming `span`, to carry in the queue record; `None` when the span is not
/// exported.
pub fn traceparent_of(span: &Span) -> Option<String> {
    let mut out = Carrier(None);
    TraceContextPropagator::new().inject_context(&span.context(), &mut out);
    out.0
}

/// A `traceparent` worth carrying from a caller when nothing is exported here: the W3C shape
/// (`00-` 32 hex `-` 16 hex `-` 2 hex), so that junk never reaches the queue record.
pub fn well_formed(value: &str) -> bool {
    let b = value.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(|c| c.is_ascii_hexdigit());
    b.len() == 55 && b[2] == b'-' && b[35] == b'-' && b[52] == b'-' && hex(0..2) && hex(3..35) && hex(36..52) && hex(53..55)
}

/// A carrier of the one header the propagator reads.
struct One<'a>(&'a str);

impl Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

/// Keeps the `traceparent` the propagator writes; `tracestate` is not carried.
struct Carrier(Option<String>);

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_w3c_shape_is_carried() {
        assert!(well_formed("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        assert!(!well_formed("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1"));
        assert!(!well_formed("00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01"));
        assert!(!well_formed("00-0af7651916cd43dd8448eb211c8031zz-b7ad6b7169203331-01"));
        assert!(!well_formed(""));
    }

    #[test]
    fn a_span_no_layer_records_has_no_traceparent() {
        assert_eq!(traceparent_of(&Span::none()), None);
    }
}
