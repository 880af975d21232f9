//! Every logged event names a constant of the catalog (`src/events.rs`):
//! no site under `src/` spells `event = "name"` as a string literal, so a
//! name exists once, a rename breaks the build of the tests that look for
//! it, and `pgpilot::events::ALL` lists every `pgpilot_events_total` series
//! the daemon can emit.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{} unreadable: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The code of `line` without a trailing `//` comment and with its
/// whitespace removed, so `event="x"` and `event =  "x"` look alike. A `//`
/// inside a string literal cuts the line short; no event field follows one.
fn code_of(line: &str) -> String {
    let code = line.split("//").next().unwrap_or("");
    code.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Finds `event = "..."` (the field spelled as a literal) in `text`: the
/// 1-based line numbers. A field split across lines (`event =` then the
/// literal on the next line) is caught by joining each line to the next.
fn literal_event_fields(text: &str) -> Vec<usize> {
    let lines: Vec<String> = text.lines().map(code_of).collect();
    let mut hits = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let next = lines.get(i + 1).map(String::as_str).unwrap_or("");
        let joined = format!("{line}{next}");
        if line.contains("event=\"") || (line.ends_with("event=") && joined.contains("event=\"")) {
            hits.push(i + 1);
        }
    }
    hits
}

#[test]
fn the_finder_sees_literal_event_fields() {
    let text = "info!(event = \"lock_lost\");\n\
                warn!(event=\"x\", error = %e);\n\
                warn!(\n    event =\n        \"split\",\n);\n\
                // event = \"in a comment\"\n\
                info!(event = crate::events::LOCK_LOST);\n\
                let s = \"{{event=\\\"{name}\\\"}}\";\n";
    assert_eq!(literal_event_fields(text), vec![1, 2, 4]);
}

#[test]
fn no_event_name_is_a_string_literal_under_src() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    assert!(files.len() > 10, "src/ holds the crate's sources");
    let mut found = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for line in literal_event_fields(&text) {
            let shown = file
                .strip_prefix(root)
                .unwrap_or(file)
                .display()
                .to_string();
            found.push(format!("{shown}:{line}"));
        }
    }
    assert!(
        found.is_empty(),
        "event names spelled as literals (add a constant to src/events.rs and use it):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_catalog_lists_every_constant() {
    // `ALL` is written by hand: a constant missing from it would escape the
    // uniqueness and spelling checks of src/events.rs.
    let text = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/events.rs"))
        .expect("src/events.rs is readable");
    let declared = text
        .lines()
        .filter(|l| l.starts_with("pub const ") && l.contains(": &str = \""))
        .count();
    assert_eq!(
        declared,
        pgpilot::events::ALL.len(),
        "every `pub const X: &str` of src/events.rs is in ALL"
    );
}
