//! The documents: every relative link lands on a file, and on a heading where it names
//! one, and no document grows past what one reader takes in.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::repo_root;

/// "No document over about 700 lines" (issue 25): past that, a document is split by reader.
const MAX_LINES: usize = 700;

/// Every Markdown file of the repository, outside build output, virtual environments and
/// hidden directories (`.git`, `.venv`).
fn documents() -> Vec<PathBuf> {
    fn walk(directory: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(directory).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                if !name.starts_with('.') && name != "target" && name != "node_modules" {
                    walk(&path, found);
                }
            } else if name.ends_with(".md") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&repo_root(), &mut found);
    found.sort();
    found
}

/// A document's text with its fenced code blocks blanked, line for line, so neither a
/// `# comment` in a shell block reads as a heading nor an example as a link.
fn outside_fences(text: &str) -> Vec<&str> {
    let mut fence: Option<&str> = None;
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let marker = ["```", "~~~"].into_iter().find(|marker| trimmed.starts_with(marker));
            match (fence, marker) {
                (None, Some(marker)) => {
                    fence = Some(marker);
                    ""
                }
                (Some(open), Some(marker)) if open == marker && trimmed.trim_end() == marker => {
                    fence = None;
                    ""
                }
                (Some(_), _) => "",
                (None, None) => line,
            }
        })
        .collect()
}

/// The anchor GitHub gives a heading: lowercased, punctuation dropped except `-` and `_`,
/// spaces made `-`; a link's text stands for the link.
fn anchor(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find("](") {
        let close = rest[open..].find(')').map_or(rest.len(), |close| open + close + 1);
        text.push_str(&rest[..open]);
        rest = &rest[close..];
    }
    text.push_str(rest);
    text.trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor of a document; a heading seen before gets `-1`, `-2`, … as on GitHub.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in outside_fences(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = anchor(line[hashes..].trim().trim_end_matches('#'));
        let mut candidate = base.clone();
        let mut repeat = 0;
        while found.contains(&candidate) {
            repeat += 1;
            candidate = format!("{base}-{repeat}");
        }
        found.insert(candidate);
    }
    found
}

/// Text outside code spans: a backtick run and the next run of the same length enclose code.
fn without_code_spans(text: &str) -> String {
    let mut kept = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('`') {
        kept.push_str(&rest[..start]);
        let run = rest[start..].chars().take_while(|&c| c == '`').count();
        let after = &rest[start + run..];
        let mut search = 0;
        let close = loop {
            match after[search..].find('`') {
                None => break None,
                Some(found) => {
                    let at = search + found;
                    let length = after[at..].chars().take_while(|&c| c == '`').count();
                    if length == run {
                        break Some(at + length);
                    }
                    search = at + length;
                }
            }
        };
        match close {
            Some(end) => rest = &after[end..],
            None => {
                // An unmatched run is literal text.
                kept.push_str(&rest[start..start + run]);
                rest = after;
            }
        }
    }
    kept.push_str(rest);
    kept
}

/// The targets of a document's inline links and images (`[text](target "title")`) and of
/// its reference definitions (`[name]: target`), outside code.
fn link_targets(text: &str) -> Vec<String> {
    let prose = without_code_spans(&outside_fences(text).join("\n"));
    let mut targets = Vec::new();
    let mut rest = prose.as_str();
    while let Some(open) = rest.find("](") {
        rest = &rest[open + 2..];
        let target = rest.trim_start();
        let target = match target.strip_prefix('<') {
            Some(bracketed) => bracketed.split('>').next().unwrap_or_default(),
            None => target.split(|c: char| c == ')' || c.is_whitespace()).next().unwrap_or_default(),
        };
        targets.push(target.to_owned());
    }
    for line in prose.lines() {
        let line = line.trim_start();
        if let Some(definition) = line.strip_prefix('[')
            && let Some((label, target)) = definition.split_once("]:")
            && !label.is_empty()
            && let Some(target) = target.split_whitespace().next()
        {
            targets.push(target.trim_matches(['<', '>']).to_owned());
        }
    }
    targets
}

fn is_relative(target: &str) -> bool {
    !(target.contains("://") || target.starts_with("mailto:"))
}

/// What is wrong with a relative link from `document`, if anything.
fn broken(document: &Path, target: &str) -> Option<String> {
    let (path, fragment) = target.split_once('#').unwrap_or((target, ""));
    let file = match path {
        "" => document.to_path_buf(),
        _ if path.starts_with('/') => repo_root().join(path.trim_start_matches('/')),
        _ => document.parent().unwrap().join(path),
    };
    if !file.exists() {
        return Some(format!("{target}: no such file ({})", file.display()));
    }
    let markdown = file.extension().is_some_and(|extension| extension == "md");
    if fragment.is_empty() || !markdown {
        return None;
    }
    let text = std::fs::read_to_string(&file).unwrap();
    (!anchors(&text).contains(fragment)).then(|| format!("{target}: no heading with the anchor #{fragment}"))
}

fn relative_to_root(path: &Path) -> String {
    path.strip_prefix(repo_root()).unwrap_or(path).display().to_string()
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let documents = documents();
    for expected in ["README.md", "ARCHITECTURE.md", "docs/guide.md", "client/README.md"] {
        assert!(documents.contains(&repo_root().join(expected)), "{expected} is among the documents checked");
    }
    let mut problems = Vec::new();
    for document in &documents {
        let text = std::fs::read_to_string(document).unwrap();
        for target in link_targets(&text).iter().filter(|target| is_relative(target)) {
            if let Some(problem) = broken(document, target) {
                problems.push(format!("{}: {problem}", relative_to_root(document)));
            }
        }
    }
    assert!(problems.is_empty(), "links that do not resolve:\n{}", problems.join("\n"));
}

#[test]
fn no_document_is_longer_than_700_lines() {
    let too_long: Vec<String> = documents()
        .iter()
        .filter_map(|document| {
            let lines = std::fs::read_to_string(document).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{}: {lines} lines", relative_to_root(document)))
        })
        .collect();
    assert!(too_long.is_empty(), "split these by reader (at most {MAX_LINES} lines):\n{}", too_long.join("\n"));
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    let text = "# `counterctl serve --upstream URL`\n## ID blocks\n```sh\n# not a heading\n```\n\
                ### ID blocks\n## What [`install`](#x) makes, and why_not?\n";
    let expected = ["counterctl-serve---upstream-url", "id-blocks", "id-blocks-1", "what-install-makes-and-why_not"];
    assert_eq!(anchors(text), expected.into_iter().map(str::to_owned).collect());
}

#[test]
fn links_in_code_are_not_links() {
    let text = "See [the guide](docs/guide.md#commands) and `[not](a-link.md)`.\n\
                ```md\n[nor](this.md)\n```\n![a figure](figure.png \"title\")\n[ref]: <other.md#x>\n";
    assert_eq!(link_targets(text), ["docs/guide.md#commands", "figure.png", "other.md#x"]);
}
