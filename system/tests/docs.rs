//! docs/configuration.md against `webhooks` itself: every flag and environment variable the
//! binary accepts, in each of its commands, is documented there with the same variable and
//! default, and every flag and variable documented there exists. The check is in
//! `docs_check/`, shared with loadgen's.

mod docs_check;

#[test]
fn configuration_md_documents_every_flag_and_variable_of_webhooks() {
    docs_check::check(env!("CARGO_BIN_EXE_webhooks"), "webhooks", std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")));
}

#[test]
fn the_produce_timeout_is_documented_in_the_helps_own_words() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md")).expect("docs/configuration.md");
    let one_line = webhooks::config::PRODUCE_TIMEOUT_HELP.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(doc.contains(&one_line), "docs/configuration.md's --kafka-produce-timeout-ms must say: {one_line}");
}
