//! docs/configuration.md against `simulator` itself: every flag and variable it has is
//! documented and every one documented exists. The check is shared with the system's
//! (system/tests/docs_check/).

#[path = "../../system/tests/docs_check/mod.rs"]
mod docs_check;

#[test]
fn configuration_md_documents_every_flag_and_variable_of_the_simulator() {
    docs_check::check(env!("CARGO_BIN_EXE_simulator"), "simulator", std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")));
}
