//! Conformance: every history of the corpus reaches the verdict in its `verdicts.tsv`.
//!
//! Two corpora:
//! - `tests/corpus-sample/` (in the repository, six histories of Porcupine's test data, MIT;
//!   see its README): always checked;
//! - the full corpus `shared/lincheck-corpus` beside the repository (52 Jepsen register
//!   logs, 4 KV logs). Found at `$LINCHECK_CORPUS` if set, else `<workspace>/../shared/
//!   lincheck-corpus` (CI's layout: the repository cloned next to a copy of `shared/`), else
//!   `<workspace>/../../shared/lincheck-corpus` (a worktree under `wt/` next to `shared/`).
//!   If it is missing: under `CI=true` the test fails, saying where it looked; on a
//!   developer's machine it prints a loud SKIPPED notice and checks only the sample.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lincheck::format::read_file;
use lincheck::{CheckOptions, Parsed, RegisterModel, Verdict, check};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives in the workspace")
        .to_path_buf()
}

/// Checks every file listed in `dir/verdicts.tsv`; returns the number of files checked.
fn check_folder(dir: &Path) -> usize {
    let tsv = dir.join("verdicts.tsv");
    let text = std::fs::read_to_string(&tsv)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", tsv.display()));
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let (file, want) = line.split_once('\t').unwrap_or_else(|| {
            panic!(
                "{}:{}: expected `file<TAB>true|false`",
                tsv.display(),
                n + 1
            )
        });
        let want = match want.trim() {
            "true" => Verdict::Linearizable,
            "false" => Verdict::NotLinearizable,
            other => panic!(
                "{}:{}: verdict {other:?} is not true/false",
                tsv.display(),
                n + 1
            ),
        };
        let path = dir.join(file);
        let (_, parsed) =
            read_file(&path, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // A budget so a regression cannot hang CI; an Unknown verdict fails the test.
        let opts = CheckOptions::with_timeout(Duration::from_secs(60));
        let got = match &parsed {
            Parsed::Register(h) => check(&RegisterModel, h, &opts).verdict,
            Parsed::Kv(m, h) => check(m, h, &opts).verdict,
        };
        if got != want {
            wrong.push(format!(
                "{}: got {}, want {}",
                path.display(),
                got.as_str(),
                want.as_str()
            ));
        }
        checked += 1;
    }
    assert!(wrong.is_empty(), "verdicts differ:\n{}", wrong.join("\n"));
    checked
}

#[test]
fn sample_corpus_in_the_repository() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus-sample");
    let n = check_folder(&dir.join("register")) + check_folder(&dir.join("kv"));
    assert_eq!(n, 6, "the sample holds six histories");
}

#[test]
fn full_corpus_beside_the_repository() {
    let root = workspace_root();
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("LINCHECK_CORPUS") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(root.join("../shared/lincheck-corpus"));
    candidates.push(root.join("../../shared/lincheck-corpus"));
    let Some(dir) = candidates
        .iter()
        .find(|p| p.join("register/verdicts.tsv").is_file())
    else {
        let looked = candidates
            .iter()
            .map(|p| format!("  {}", p.display()))
            .collect::<Vec<_>>()
            .join("\n");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "the linearizability corpus is missing (CI=true). Looked in:\n{looked}\n\
                 CI must place a copy of shared/ beside the repository, or set LINCHECK_CORPUS."
            );
        }
        eprintln!(
            "\n******** SKIPPED: full linearizability corpus not found; only the in-repo sample \
             was checked.\nLooked in:\n{looked}\nSet LINCHECK_CORPUS=/path/to/lincheck-corpus \
             to run it. ********\n"
        );
        return;
    };
    let n = check_folder(&dir.join("register")) + check_folder(&dir.join("kv"));
    eprintln!("checked {n} corpus histories in {}", dir.display());
    assert!(
        n >= 56,
        "expected the 52 register + 4 KV histories, found {n}"
    );
}
