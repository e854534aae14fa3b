//! Checking a recorded KV history from a test, and keeping the evidence on failure.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::checker::{CheckOptions, CheckReport, Verdict, check};
use crate::history::Operation;
use crate::model::{KvInput, KvModel, KvOutput};

/// Files written for a history that is not (or not shown) linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifacts {
    /// The history in the `raftkv` format; `lincheck <this file>` re-checks it.
    pub history: PathBuf,
    /// The HTML picture.
    pub html: PathBuf,
}

/// The result of [`check_kv_history`].
#[derive(Debug)]
pub struct KvCheck {
    /// The checker's answer.
    pub report: CheckReport<Option<String>>,
    /// Where the evidence went, when the verdict was not `Linearizable`.
    pub artifacts: Option<Artifacts>,
    /// Why the evidence could not be written, if it could not.
    pub artifacts_error: Option<String>,
}

/// Where [`check_kv_history`] writes by default: `$CARGO_TARGET_DIR/lincheck`, else the
/// `target` folder above the running executable (a test binary lives in
/// `target/<profile>/deps`) plus `/lincheck`, else the system temp folder plus `/lincheck`.
pub fn default_output_dir() -> PathBuf {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t).join("lincheck");
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors() {
            if dir.file_name().is_some_and(|n| n == "target") {
                return dir.join("lincheck");
            }
        }
    }
    std::env::temp_dir().join("lincheck")
}

fn file_stem(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{clean}-{}-{ms}", std::process::id())
}

fn write_artifacts(
    name: &str,
    history: &[Operation<KvInput, KvOutput>],
    report: &CheckReport<Option<String>>,
    model: &KvModel,
    dir: &Path,
) -> std::io::Result<Artifacts> {
    std::fs::create_dir_all(dir)?;
    let stem = file_stem(name);
    let history_path = dir.join(format!("{stem}.jsonl"));
    let html_path = dir.join(format!("{stem}.html"));
    let mut buf = Vec::new();
    crate::format::write_raftkv(&mut buf, history)?;
    std::fs::write(&history_path, buf)?;
    std::fs::write(
        &html_path,
        crate::html::render(model, history, report, name),
    )?;
    Ok(Artifacts {
        history: history_path,
        html: html_path,
    })
}

/// Checks a KV history (keys start absent: [`KvModel::default`]). If the verdict is not
/// `Linearizable`, writes the history (`raftkv` format) and its HTML picture under
/// `out_dir` (default: [`default_output_dir`]) and prints both paths to stderr.
pub fn check_kv_history(
    name: &str,
    history: &[Operation<KvInput, KvOutput>],
    timeout: Duration,
    out_dir: Option<&Path>,
) -> KvCheck {
    let model = KvModel::default();
    let report = check(&model, history, &CheckOptions::with_timeout(timeout));
    let mut artifacts = None;
    let mut artifacts_error = None;
    if report.verdict != Verdict::Linearizable {
        let dir = out_dir.map_or_else(default_output_dir, Path::to_path_buf);
        match write_artifacts(name, history, &report, &model, &dir) {
            Ok(a) => {
                eprintln!(
                    "lincheck: {name}: {} ({} operations)\n  history: {}\n  picture: {}\n  re-check: cargo run -p lincheck --bin lincheck -- {} --html {}",
                    report.verdict.as_str(),
                    history.len(),
                    a.history.display(),
                    a.html.display(),
                    a.history.display(),
                    a.html.display(),
                );
                artifacts = Some(a);
            }
            Err(e) => {
                let msg = format!("could not write the evidence under {}: {e}", dir.display());
                eprintln!("lincheck: {name}: {msg}");
                artifacts_error = Some(msg);
            }
        }
    }
    KvCheck {
        report,
        artifacts,
        artifacts_error,
    }
}

/// Panics unless `history` is linearizable, naming the saved history and picture. An
/// `Unknown` verdict (the budget ran out) also panics: a test must not pass unchecked; give
/// a generous `timeout` (tens of seconds) so a busy machine does not turn into a failure.
pub fn assert_kv_linearizable(
    name: &str,
    history: &[Operation<KvInput, KvOutput>],
    timeout: Duration,
) {
    let r = check_kv_history(name, history, timeout, None);
    if r.report.verdict != Verdict::Linearizable {
        let where_ = match (&r.artifacts, &r.artifacts_error) {
            (Some(a), _) => format!(
                "history: {}, picture: {}",
                a.history.display(),
                a.html.display()
            ),
            (None, Some(e)) => e.clone(),
            (None, None) => String::new(),
        };
        panic!(
            "{name}: the history of {} operations is {} ({where_})",
            history.len(),
            r.report.verdict.as_str()
        );
    }
}
