//! CPU-bound hot paths of ingress: signature checks and parse + validate.

use benches::{body, now_secs, STANDARD_SECRET, STRIPE_SECRET};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::HeaderMap;
use std::hint::black_box;
use webhooks::domain::WebhookBody;
use webhooks::ingress::signature::{sign, Verifier};

fn signatures(c: &mut Criterion) {
    let body = body(1);
    let now = now_secs();
    let verifier = Verifier::new(STANDARD_SECRET, STRIPE_SECRET, 300).expect("secrets");
    let mut standard = HeaderMap::new();
    standard.insert("webhook-id", "msg_1".parse().expect("header"));
    standard.insert("webhook-timestamp", now.to_string().parse().expect("header"));
    standard.insert("webhook-signature", sign::standard(STANDARD_SECRET, "msg_1", now, body.as_bytes()).expect("sign").parse().expect("header"));
    let mut stripe = HeaderMap::new();
    stripe.insert("stripe-signature", sign::stripe(STRIPE_SECRET, now, body.as_bytes()).expect("sign").parse().expect("header"));

    let mut g = c.benchmark_group("signature");
    g.throughput(Throughput::Elements(1));
    g.bench_function("standard_webhooks_verify", |b| {
        b.iter(|| verifier.verify(black_box(&standard), black_box(body.as_bytes()), now).expect("valid"))
    });
    g.bench_function("stripe_verify", |b| b.iter(|| verifier.verify(black_box(&stripe), black_box(body.as_bytes()), now).expect("valid")));
    g.finish();
}

fn parse_and_validate(c: &mut Criterion) {
    let body = body(1);
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_validate_event", |b| {
        b.iter(|| {
            let parsed: WebhookBody = serde_json::from_slice(black_box(body.as_bytes())).expect("json");
            parsed.into_event(None, 1).expect("valid")
        })
    });
    let event = serde_json::from_slice::<WebhookBody>(body.as_bytes()).expect("json").into_event(None, 1).expect("valid");
    g.bench_function("encode_for_queue", |b| b.iter(|| serde_json::to_vec(black_box(&event)).expect("encode")));
    g.finish();
}

criterion_group!(benches, signatures, parse_and_validate);
criterion_main!(benches);
