//! The check behind `system/tests/docs.rs` and `loadgen/tests/docs.rs`: what a binary's help
//! says it accepts against what docs/configuration.md documents for it.
//!
//! From the help, run for the binary and each of its commands (found in the help's own
//! "Commands:" lists): every `--flag` and the `[env: NAME` and `[default: VALUE]` clap prints
//! for it. From the document, under the binary's `## name` heading: every table row whose
//! first cell is a backticked `--flag`, with its `variable`, `default` and `commands` columns,
//! and every row of a table whose first column is `variable` (variables the code reads itself,
//! such as `RUST_LOG`). The two must match both ways.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// One flag as a command accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub env: Option<String>,
    pub default: Option<String>,
}

/// (command path such as "standalone" or "dlq list", "" for the binary itself, flag) -> flag.
pub type Flags = BTreeMap<(String, String), Flag>;

/// Flags every clap binary has and no document needs to list.
const BUILT_IN: [&str; 2] = ["--help", "--version"];

fn help(bin: &str, path: &str) -> String {
    let mut cmd = Command::new(bin);
    cmd.args(path.split_whitespace()).arg("--help");
    // Variables set in the test's environment would show their values in the help.
    cmd.env_clear();
    let out = cmd.output().unwrap_or_else(|e| panic!("run {bin} {path} --help: {e}"));
    assert!(out.status.success(), "{bin} {path} --help failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 help")
}

/// An option line of clap's help: indented by a few spaces, then `-x, --name` or `--name`.
/// Descriptions are indented further, so a description that mentions a flag does not count.
fn option_of(line: &str) -> Option<String> {
    let indent = line.len() - line.trim_start().len();
    let rest = line.trim_start();
    if !(1..=6).contains(&indent) || !rest.starts_with('-') {
        return None;
    }
    rest.split_whitespace()
        .map(|w| w.trim_end_matches(','))
        .find(|w| w.starts_with("--"))
        .map(|w| w.split(['=', '[', '<']).next().unwrap_or(w).to_owned())
}

/// The text inside `[key: ...]`, up to `=` for an env var (its value, if shown) or `]`.
fn bracket(text: &str, key: &str, stop_at_equals: bool) -> Option<String> {
    let start = text.find(&format!("[{key}: "))? + key.len() + 3;
    let rest = &text[start..];
    let end = rest.find(|c| c == ']' || (stop_at_equals && c == '=')).unwrap_or(rest.len());
    Some(rest[..end].trim().to_owned())
}

/// The subcommands a help lists under "Commands:", without `help`.
fn commands_of(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command path of the binary ("" for the binary itself) and the flags each accepts.
pub fn flags_from_help(bin: &str) -> (Vec<String>, Flags) {
    let mut paths = vec![String::new()];
    let mut flags = Flags::new();
    let mut i = 0;
    while i < paths.len() {
        let path = paths[i].clone();
        let text = help(bin, &path);
        for sub in commands_of(&text) {
            paths.push(if path.is_empty() { sub } else { format!("{path} {sub}") });
        }
        // Each option with the lines of its description, up to the next option or heading.
        let lines: Vec<&str> = text.lines().collect();
        for (at, line) in lines.iter().enumerate() {
            let Some(flag) = option_of(line) else { continue };
            if BUILT_IN.contains(&flag.as_str()) {
                continue;
            }
            let end = lines[at + 1..]
                .iter()
                .position(|l| option_of(l).is_some() || (!l.is_empty() && !l.starts_with(' ')))
                .map_or(lines.len(), |n| at + 1 + n);
            let block = lines[at..end].join(" ");
            let block = block.split_whitespace().collect::<Vec<_>>().join(" ");
            let found = Flag { env: bracket(&block, "env", true), default: bracket(&block, "default", false).filter(|d| !d.is_empty()) };
            flags.insert((path.clone(), flag), found);
        }
        i += 1;
    }
    (paths, flags)
}

/// The part of the document under `## name`, up to the next `## ` heading.
fn section<'a>(doc: &'a str, name: &str) -> &'a str {
    let head = format!("\n## {name}\n");
    let start = doc.find(&head).unwrap_or_else(|| panic!("docs/configuration.md has no `## {name}` section")) + head.len();
    let rest = &doc[start..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

fn cells(row: &str) -> Vec<String> {
    let row = row.trim().trim_start_matches('|').trim_end_matches('|');
    row.split('|').map(|c| c.trim().to_owned()).collect()
}

/// The backticked words of a cell.
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// What the document says: the flags per command, and the variables of its variable-only
/// tables.
pub fn flags_from_doc(doc: &str, binary: &str, paths: &[String]) -> (Flags, BTreeSet<String>) {
    let mut flags = Flags::new();
    let mut variables = BTreeSet::new();
    let mut header: Vec<String> = Vec::new();
    for line in section(doc, binary).lines() {
        if !line.trim_start().starts_with('|') {
            header.clear();
            continue;
        }
        let row = cells(line);
        if header.is_empty() {
            header = row;
            continue;
        }
        if row.iter().all(|c| c.chars().all(|ch| ch == '-' || ch == ':')) {
            continue;
        }
        let col = |name: &str| header.iter().position(|h| h == name).map(|i| row.get(i).map(String::as_str).unwrap_or(""));
        if header.first().map(String::as_str) == Some("variable") {
            variables.extend(ticked(&row[0]));
            continue;
        }
        let Some(flag) = ticked(&row[0]).into_iter().find(|f| f.starts_with("--")) else { continue };
        let env = col("variable").and_then(|c| ticked(c).into_iter().next());
        let default = col("default").and_then(|c| ticked(c).into_iter().next());
        let commands = col("commands").unwrap_or_else(|| panic!("the table of {flag} has no `commands` column"));
        let listed: Vec<String> = if commands.contains("every command") { paths.to_vec() } else { ticked(commands) };
        assert!(!listed.is_empty(), "{flag}: its `commands` cell names no command");
        for path in listed {
            let path = if path == binary { String::new() } else { path };
            let previous = flags.insert((path.clone(), flag.clone()), Flag { env: env.clone(), default: default.clone() });
            assert!(previous.is_none(), "{flag} is documented twice for `{path}`");
        }
    }
    (flags, variables)
}

/// Every variable the source reads itself (`var("NAME")`, `var_os("NAME")`), and `RUST_LOG`
/// where a tracing filter is built from the environment.
pub fn variables_read_by(src: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read the source directory") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            for call in ["var(\"", "var_os(\""] {
                for piece in text.split(call).skip(1) {
                    if let Some(name) = piece.split('"').next() {
                        found.insert(name.to_owned());
                    }
                }
            }
            if text.contains("try_from_default_env") || text.contains("from_default_env()") {
                found.insert("RUST_LOG".to_owned());
            }
        }
    }
    found
}

/// The whole check for one binary; panics with every difference at once.
pub fn check(bin: &str, binary: &str, src: &Path) {
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    let doc = std::fs::read_to_string(doc_path).expect("docs/configuration.md");
    let (paths, accepted) = flags_from_help(bin);
    let (documented, variables) = flags_from_doc(&doc, binary, &paths);
    let name = |(path, flag): &(String, String)| if path.is_empty() { format!("{binary} {flag}") } else { format!("{binary} {path} {flag}") };
    let mut wrong = Vec::new();
    for (key, flag) in &accepted {
        match documented.get(key) {
            None => wrong.push(format!("{} is accepted but not documented", name(key))),
            Some(doc) => {
                if doc.env != flag.env {
                    wrong.push(format!("{}: the help says variable {:?}, the document {:?}", name(key), flag.env, doc.env));
                }
                if let (Some(help), Some(doc)) = (&flag.default, &doc.default) {
                    if help != doc {
                        wrong.push(format!("{}: the help says default {help:?}, the document {doc:?}", name(key)));
                    }
                }
            }
        }
    }
    for key in documented.keys().filter(|k| !accepted.contains_key(*k)) {
        wrong.push(format!("{} is documented but not accepted", name(key)));
    }
    let read = variables_read_by(src);
    for v in read.iter().filter(|v| !variables.contains(*v)) {
        wrong.push(format!("{binary} reads {v} from the environment; document it in a `variable` table"));
    }
    for v in variables.iter().filter(|v| !read.contains(*v)) {
        wrong.push(format!("{v} is documented for {binary}, which does not read it"));
    }
    assert!(wrong.is_empty(), "docs/configuration.md and `{binary} --help` disagree:\n  {}", wrong.join("\n  "));
}
