//! The contract lives in the repository: every document the code cites is
//! a file under `docs/`, and every section it cites exists there.
//!
//! Forms the code uses (comments are read with their line breaks and comment
//! markers folded into spaces, so a citation may wrap):
//! * `docs/<file>.md` alone;
//! * `docs/<file>.md §N` for a numbered heading (`## N. Title`,
//!   `### N.M Title`), also as a list: `docs/ha.md §9.3, §10` or `§11 and §6`;
//! * `docs/<file>.md, "Heading"` for a heading by its text (backticks
//!   ignored), also as a list: `, "A" and "B"`.
//!
//! Any other `*.md` is a file outside `docs/` (the old `shared/spec/*.md`
//! was not in the repository), and a `§` outside such a citation points
//! nowhere, except `issue N §M` (the issue tracker). The pages of `docs/`
//! and the README are held to their `docs/...` citations of each other.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Files whose citations are reported but do not fail the test, for a file
/// being moved over while other work edits it; empty when none is.
const TOLERATED: &[&str] = &[];

/// The headings of one document: section numbers and titles.
#[derive(Debug, Default)]
struct Doc {
    sections: BTreeSet<String>,
    titles: BTreeSet<String>,
}

fn normalise_title(t: &str) -> String {
    t.replace('`', "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `## 9.3 Title` -> `9.3`; `## 7a. Title` -> `7a`; `## Title` -> none.
fn section_number(title: &str) -> Option<String> {
    let word = title.split_whitespace().next()?;
    let id = word.strip_suffix('.').unwrap_or(word);
    let mut parts = id.split('.');
    let first = parts.next()?;
    let digits = first.trim_end_matches(|c: char| c.is_ascii_lowercase());
    let ok_first = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && first.len() - digits.len() <= 1;
    let ok_rest = parts.all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    (ok_first && ok_rest).then(|| id.to_owned())
}

fn parse_doc(text: &str) -> Doc {
    let mut doc = Doc::default();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        if let Some(n) = section_number(title) {
            // `### 9.3 DCS down` is cited as `§9.3` or as "DCS down".
            let text = title.split_once(char::is_whitespace).map_or("", |(_, t)| t);
            doc.titles.insert(normalise_title(text));
            doc.sections.insert(n);
        }
        doc.titles.insert(normalise_title(title));
    }
    doc
}

fn load_docs(root: &Path) -> BTreeMap<String, Doc> {
    let mut docs = BTreeMap::new();
    for entry in fs::read_dir(root.join("docs")).expect("docs/ is readable") {
        let path = entry.expect("docs/ entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            let name = format!(
                "docs/{}",
                path.file_name().expect("a file name").to_string_lossy()
            );
            let text = fs::read_to_string(&path).expect("a docs file is UTF-8");
            docs.insert(name, parse_doc(&text));
        }
    }
    docs
}

/// The source with comment markers and line breaks folded into single
/// spaces, so a citation that wraps reads as one.
fn fold(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    for line in source.lines() {
        let t = line.trim_start();
        let t = ["//!", "///", "//"]
            .iter()
            .find_map(|m| t.strip_prefix(m))
            .unwrap_or(t)
            .trim();
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(t);
    }
    out
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

/// Parse `§ID` at the start of `s`; returns the id and the bytes used.
fn take_section(s: &str) -> Option<(&str, usize)> {
    let rest = s.strip_prefix('§')?;
    let len = rest
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '.'))
        .map_or(rest.len(), |(i, _)| i);
    // A sentence may end right after the number: `§9.`
    let id = rest[..len].trim_end_matches('.');
    (!id.is_empty()).then_some((id, '§'.len_utf8() + id.len()))
}

/// Parse `"Title"` at the start of `s`.
fn take_quoted(s: &str) -> Option<(&str, usize)> {
    let rest = s.strip_prefix('"')?;
    let end = rest.find('"')?;
    Some((&rest[..end], end + 2))
}

/// Every problem in one (folded) text: a cited document that is not under
/// `docs/`, a section or heading that it does not have, a `§` that belongs
/// to no citation. `Scope::Docs` (a page of `docs/` itself) checks only its
/// `docs/...` citations: a page refers to its own sections as `§N`, and to
/// its siblings by name.
fn check_text(text: &str, docs: &BTreeMap<String, Doc>, scope: Scope) -> Vec<String> {
    let mut problems = Vec::new();
    // Byte offsets of `§` signs consumed by a citation.
    let mut cited: BTreeSet<usize> = BTreeSet::new();
    let mut search = 0;
    while let Some(found) = text[search..].find(".md") {
        let end = search + found + 3;
        search = end;
        if text[end..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue;
        }
        let start = text[..end - 3]
            .char_indices()
            .rev()
            .find(|(_, c)| !is_path_char(*c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let name = &text[start..end];
        if scope == Scope::Docs && !name.starts_with("docs/") {
            continue;
        }
        let Some(doc) = docs.get(name) else {
            problems.push(format!("cites `{name}`, which is not a file under docs/"));
            continue;
        };
        let mut at = end;
        if text[at..].starts_with(" §") {
            at += 1;
            while let Some((id, used)) = take_section(&text[at..]) {
                cited.insert(at);
                if !doc.sections.contains(id) {
                    problems.push(format!("cites {name} §{id}, which {name} does not have"));
                }
                at += used;
                if let Some(sep) = [", §", " and §"]
                    .iter()
                    .find(|s| text[at..].starts_with(**s))
                {
                    at += sep.len() - '§'.len_utf8();
                } else {
                    break;
                }
            }
        } else if let Some(sep) = [", \"", " \""].iter().find(|s| text[at..].starts_with(**s)) {
            at += sep.len() - 1;
            while let Some((title, used)) = take_quoted(&text[at..]) {
                if !doc.titles.contains(&normalise_title(title)) {
                    problems.push(format!(
                        "cites {name}, \"{title}\", a heading {name} does not have"
                    ));
                }
                at += used;
                match [", \"", " and \""]
                    .iter()
                    .find(|s| text[at..].starts_with(**s))
                {
                    Some(sep) => at += sep.len() - 1,
                    None => break,
                }
            }
        }
    }
    if scope == Scope::Docs {
        return problems;
    }
    for (i, _) in text.match_indices('§') {
        if cited.contains(&i) || after_issue(&text[..i]) {
            continue;
        }
        let from = text[..i].char_indices().rev().nth(30).map_or(0, |(j, _)| j);
        let to = (i + 12).min(text.len());
        let to = (to..=text.len())
            .find(|j| text.is_char_boundary(*j))
            .unwrap_or(text.len());
        problems.push(format!(
            "`§` outside a docs/ citation: \"...{}...\"",
            &text[from..to]
        ));
    }
    problems
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// `src/`, `tests/`: every citation must point into `docs/`.
    Code,
    /// A page of `docs/` (or the README): only its `docs/...` citations.
    Docs,
}

/// `issue 12 §4`: a section of an issue in the tracker, not a file.
fn after_issue(before: &str) -> bool {
    let mut words = before.split_whitespace().rev();
    let number = words.next().unwrap_or_default();
    let issue = words
        .next()
        .unwrap_or_default()
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit())
        && issue.eq_ignore_ascii_case("issue")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_citation_points_at_a_section_of_docs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = load_docs(root);
    assert!(
        docs.contains_key("docs/ha.md"),
        "docs/ha.md is missing: {:?}",
        docs.keys()
    );
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    files.sort();
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut failures = Vec::new();
    let mut citations = 0;
    for path in files {
        let rel = path
            .strip_prefix(root)
            .expect("under the crate root")
            .to_string_lossy()
            .into_owned();
        if rel == "tests/doc_citations.rs" {
            // This file: its examples point nowhere on purpose.
            continue;
        }
        let text = fs::read_to_string(&path).expect("a source file is UTF-8");
        let folded = fold(&text);
        citations += folded.matches("docs/").count();
        for p in check_text(&folded, &docs, Scope::Code) {
            if TOLERATED.contains(&rel.as_str()) {
                eprintln!("tolerated for now: {rel}: {p}");
            } else {
                failures.push(format!("{rel}: {p}"));
            }
        }
    }
    assert!(citations > 50, "only {citations} citations of docs/ found");
    // The pages cite each other too.
    let mut pages: Vec<PathBuf> = docs
        .keys()
        .map(|name| root.join(name))
        .chain([root.join("README.md")])
        .collect();
    pages.sort();
    for path in pages {
        let text = fs::read_to_string(&path).expect("a page is UTF-8");
        for p in check_text(&fold(&text), &docs, Scope::Docs) {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            failures.push(format!("{}: {p}", rel.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "citations that point nowhere:\n{}",
        failures.join("\n")
    );
}

#[test]
fn tolerated_files_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in TOLERATED {
        assert!(root.join(f).is_file(), "{f} in TOLERATED does not exist");
    }
}

#[test]
fn the_check_finds_what_points_nowhere() {
    let docs: BTreeMap<String, Doc> = [(
        "docs/ha.md".to_owned(),
        parse_doc(
            "# HA\n## 9. Lease\n### 9.3 DCS down\n## 7a. `watchdog`\n```\n# not a heading\n```\n",
        ),
    )]
    .into();
    let ok = |t: &str| check_text(&fold(t), &docs, Scope::Code);
    assert_eq!(
        ok("// see docs/ha.md §9.3, §9 and §7a."),
        Vec::<String>::new()
    );
    assert_eq!(
        ok("/// (docs/ha.md, \"DCS\n/// down\" and \"watchdog\")"),
        Vec::<String>::new()
    );
    assert_eq!(ok("// issue 12 §4, Issue 3 §1.2"), Vec::<String>::new());
    assert_eq!(ok("// docs/ha.md"), Vec::<String>::new());
    assert_eq!(
        ok("// ha-loop.md §4").len(),
        2,
        "{:?}",
        ok("// ha-loop.md §4")
    );
    assert_eq!(ok("// shared/spec/ha-loop.md").len(), 1);
    assert_eq!(ok("// docs/ha.md §9.4").len(), 1);
    assert_eq!(ok("// docs/ha.md §9, §12").len(), 1);
    assert_eq!(ok("// docs/ha.md, \"Nothing\"").len(), 1);
    assert_eq!(ok("// docs/ha.md, \"not a heading\"").len(), 1);
    assert_eq!(ok("// docs/nope.md §1").len(), 2);
    assert_eq!(ok("// (§7) of something").len(), 1);
    let page = |t: &str| check_text(&fold(t), &docs, Scope::Docs);
    assert_eq!(page("see §7 and operations.md"), Vec::<String>::new());
    assert_eq!(page("see docs/ha.md §9.3").len(), 0);
    assert_eq!(page("see docs/ha.md §8").len(), 1);
}
