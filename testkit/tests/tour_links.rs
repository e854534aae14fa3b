//! The tour (`docs/tour.md`, `docs/tour.zh-CN.md`) cites code by links such as
//! ``[`RawNode::propose`](../raft/src/core.rs#L459)``. The code is the truth: every
//! relative link must name a file that exists, every `#L` anchor a line that exists, and
//! a link whose text is a code name must land on a line that holds that name (its last
//! `::` segment). When code moves, this test names each stale link and the line where
//! the name is now; `TOUR_FIX=1 cargo test -p testkit --profile ci --test tour_links`
//! rewrites those anchors in place (check the diff).

use std::path::{Path, PathBuf};

/// `[text](target)` pairs outside fenced code blocks.
fn links(md: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(open) = rest.find('[') {
            let after = &rest[open + 1..];
            let Some(close) = after.find("](") else {
                break;
            };
            let text = &after[..close];
            let target_start = &after[close + 2..];
            let Some(end) = target_start.find(')') else {
                break;
            };
            // Nested brackets (an image inside a link) are not used in the tour.
            if !text.contains('[') {
                out.push((text.to_owned(), target_start[..end].to_owned()));
            }
            rest = &target_start[end..];
        }
    }
    out
}

/// The code name a link's text cites: `` `Inner::run` `` -> `run`,
/// `` `become_candidate(true)` `` -> `become_candidate`; `None` for plain text.
fn cited_name(text: &str) -> Option<String> {
    let t = text.strip_prefix('`')?.strip_suffix('`')?;
    let last = t.rsplit("::").next()?;
    let name = last.split('(').next()?.trim();
    let ok = !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    ok.then(|| name.to_owned())
}

/// The line (1-based) nearest to `near` that defines `name` (`fn name`, `struct name`,
/// `enum name`, `trait name`, `message name`, `mod name`), else that merely holds it.
fn find_name(body: &str, name: &str, near: usize) -> Option<usize> {
    let defs: Vec<String> = [
        "fn ", "struct ", "enum ", "trait ", "message ", "mod ", "type ",
    ]
    .iter()
    .map(|k| format!("{k}{name}"))
    .collect();
    let is_def = |l: &str| {
        defs.iter().any(|d| {
            l.find(d.as_str()).is_some_and(|at| {
                !l[at + d.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            })
        })
    };
    let nearest = |pred: &dyn Fn(&str) -> bool| {
        body.lines()
            .enumerate()
            .filter(|(_, l)| pred(l))
            .map(|(i, _)| i + 1)
            .min_by_key(|&i| i.abs_diff(near))
    };
    nearest(&is_def).or_else(|| nearest(&|l: &str| l.contains(name)))
}

/// Checks `doc`; returns the number of links to files and the problems. Each stale
/// anchor whose name is found elsewhere in its file is also returned as (old link, new
/// link), text and target, in `fixes`.
fn check_with_fixes(doc: &Path, fixes: &mut Vec<(String, String)>) -> (usize, Vec<String>) {
    let md = std::fs::read_to_string(doc)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", doc.display()));
    let dir = doc.parent().expect("docs folder");
    let mut bad = Vec::new();
    let mut checked = 0;
    for (text, target) in links(&md) {
        if target.starts_with("http://")
            || target.starts_with("https://")
            || target.starts_with('#')
        {
            continue;
        }
        let (file, anchor) = match target.split_once('#') {
            Some((f, a)) => (f, Some(a)),
            None => (target.as_str(), None),
        };
        let path: PathBuf = dir.join(file);
        let Ok(body) = std::fs::read_to_string(&path) else {
            if !path.exists() {
                bad.push(format!(
                    "{}: [{text}]({target}): no such file",
                    doc.display()
                ));
            }
            continue; // a picture
        };
        checked += 1;
        let Some(anchor) = anchor else {
            continue;
        };
        let Some(n) = anchor
            .strip_prefix('L')
            .and_then(|n| n.parse::<usize>().ok())
        else {
            bad.push(format!(
                "{}: [{text}]({target}): anchor is not #L<line>",
                doc.display()
            ));
            continue;
        };
        let Some(line) = body.lines().nth(n.saturating_sub(1)) else {
            bad.push(format!(
                "{}: [{text}]({target}): {file} has no line {n}",
                doc.display()
            ));
            continue;
        };
        if let Some(name) = cited_name(&text)
            && !line.contains(&name)
        {
            let now = find_name(&body, &name, n);
            if let Some(m) = now {
                // Keyed by the whole link, text included: two links with different names
                // may share a stale anchor, and only this one moves.
                fixes.push((
                    format!("[{text}]({target})"),
                    format!("[{text}]({file}#L{m})"),
                ));
            }
            bad.push(format!(
                "{}: [{text}]({target}): line {n} does not hold `{name}`: {}{}",
                doc.display(),
                line.trim(),
                now.map(|m| format!(" (it is at #L{m} now)"))
                    .unwrap_or_default()
            ));
        }
    }
    (checked, bad)
}

fn check(doc: &Path) -> (usize, Vec<String>) {
    check_with_fixes(doc, &mut Vec::new())
}

#[test]
fn every_code_link_in_the_tour_lands_on_its_name() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let mut all_bad = Vec::new();
    let fix = std::env::var_os("TOUR_FIX").is_some();
    for name in ["tour.md", "tour.zh-CN.md"] {
        let path = docs.join(name);
        let mut fixes = Vec::new();
        let (checked, mut bad) = check_with_fixes(&path, &mut fixes);
        eprintln!(
            "{name}: {checked} links to files checked, {} stale",
            bad.len()
        );
        assert!(
            checked > 50,
            "{name}: only {checked} code links found; is the tour there?"
        );
        if fix && !fixes.is_empty() {
            let mut md = std::fs::read_to_string(&path).expect("read the tour");
            for (old, new) in &fixes {
                md = md.replace(old.as_str(), new);
                eprintln!("TOUR_FIX: {name}: {old} -> {new}");
            }
            std::fs::write(&path, md).expect("write the tour");
            bad = check(&path).1;
        }
        all_bad.extend(bad);
    }
    assert!(
        all_bad.is_empty(),
        "stale links in the tour; `TOUR_FIX=1 cargo test -p testkit --profile ci --test tour_links` rewrites the anchors whose name it found (then check the diff):\n{}",
        all_bad.join("\n")
    );
}

#[test]
fn the_link_checker_catches_a_stale_link() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tour-links");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let doc = dir.join("t.md");
    let core = Path::new(env!("CARGO_MANIFEST_DIR")).join("../raft/src/core.rs");
    let src = std::fs::read_to_string(&core).expect("core.rs");
    let n = src
        .lines()
        .position(|l| l.contains("pub fn propose"))
        .expect("propose exists")
        + 1;
    // A line that does not name `propose` at all (line 1 is the module doc).
    let stale = src
        .lines()
        .position(|l| !l.contains("propose"))
        .expect("a line without propose")
        + 1;
    let p = core.display();
    std::fs::write(
        &doc,
        format!(
            "[`RawNode::propose`]({p}#L{n}) [`RawNode::propose`]({p}#L{stale}) [`x`](nope.rs)\n```\n[`in`](fence.rs)\n```\n"
        ),
    )
    .expect("write");
    let (checked, bad) = check(&doc);
    assert_eq!(
        checked, 2,
        "two links to core.rs; the fenced one is skipped"
    );
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(bad[0].contains("does not hold `propose`"));
    assert!(bad[1].contains("no such file"));
}
