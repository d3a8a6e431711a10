//! docs/configuration.md against `loadgen` itself: every flag and environment variable it
//! accepts is documented there with the same variable and default, and every one documented
//! there exists. The check is shared with the system's (system/tests/docs_check/).

#[path = "../../system/tests/docs_check/mod.rs"]
mod docs_check;

#[test]
fn configuration_md_documents_every_flag_and_variable_of_loadgen() {
    docs_check::check(env!("CARGO_BIN_EXE_loadgen"), "loadgen", std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")));
}
