//! The alert rules and the dashboard in deploy/ name only metrics the binary exposes: a renamed
//! metric must not leave an alert that can never fire. (Their syntax and PromQL are checked by
//! scripts/check_deploy.sh with promtool.)

mod common;

use std::collections::BTreeSet;

use common::*;

/// `webhooks_*` names in `text`, as families: without the suffixes a counter's or a
/// histogram's samples add.
fn families_named_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("webhooks_") {
        if text[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '#' || c == '/') {
            continue;
        }
        let name: String = text[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let family = ["_total", "_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
        out.insert(family.to_owned());
    }
    out
}

#[tokio::test]
async fn every_metric_the_alerts_and_the_dashboard_name_is_exposed() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");
    let mut named = BTreeSet::new();
    for file in ["prometheus/alerts.yml", "prometheus/alerts.test.yml", "grafana/webhooks.json"] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap_or_else(|e| panic!("{file}: {e}"));
        named.extend(families_named_in(&text));
    }
    assert!(named.len() > 10, "{named:?}");

    let app = TestApp::start(&[]).await;
    let text = app.http.get(format!("{}/metrics", app.base)).send().await.expect("metrics").text().await.expect("text");
    let exposed: BTreeSet<String> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next().map(str::to_owned)).collect();
    let missing: Vec<_> = named.difference(&exposed).collect();
    assert!(missing.is_empty(), "named in deploy/ but not exposed: {missing:?}\nexposed: {exposed:?}");
    app.stop().await.expect("clean stop");
}
