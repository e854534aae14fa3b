//! Opening a produced HTML page in a real headless Chromium, for the tests of the pictures
//! (`lincheck --html` and `raft-viz`): they check that a page's script runs to its end
//! without an error, step through it and take screenshots.
//!
//! Chromium is `$CHROMIUM`, else `chromium`, `chromium-browser` or `google-chrome` on the
//! `PATH` (Debian: `apt-get install chromium`; the repository's `.ci/run` installs it when
//! it is missing).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long one browser run may take before it is killed and reported as wedged. A
/// watchdog against a hang, not a speed limit: a page takes well under a second.
pub const WATCHDOG: Duration = Duration::from_secs(180);

/// The browser binary: `$CHROMIUM`, else the first of `chromium`, `chromium-browser`,
/// `google-chrome` found on the `PATH`; `None` if there is none.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// The browser for a test named `what`, or `None` after a loud `SKIPPED` notice with the
/// install command.
///
/// # Panics
/// When no browser is found and `CI=true`: in CI a missing browser is a failure, not a
/// skip.
pub fn chromium_for_test(what: &str) -> Option<PathBuf> {
    if let Some(bin) = find_chromium() {
        return Some(bin);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "chromium is missing (CI=true): install it with `apt-get install -y chromium` (.ci/run does this)"
        );
    }
    eprintln!(
        "\n******** SKIPPED: {what} needs Chromium. Install it with\n  \
         sudo apt-get install -y chromium\nor point CHROMIUM at a Chrome binary. ********\n"
    );
    None
}

/// Kills the browser by PID if it is still running when the run gives up on it.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `bin` headless on `url` (a `file://` URL, fragment allowed) in a 1400×900 window
/// with its profile in `profile`, plus `extra` arguments (`--dump-dom`,
/// `--screenshot=FILE`, ...); returns what it printed on stdout.
///
/// Errors: the browser cannot be started, exits with a failure, or is still running after
/// [`WATCHDOG`] (it is then killed).
pub fn headless(bin: &Path, profile: &Path, url: &str, extra: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox", // root in CI containers
        "--disable-gpu",
        "--no-first-run",
        "--hide-scrollbars",
        "--window-size=1400,900",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut child = KillOnDrop(
        cmd.spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?,
    );
    let stdout = child
        .0
        .stdout
        .take()
        .ok_or("the browser's stdout was not piped")?;
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let deadline = Instant::now() + WATCHDOG;
    loop {
        match child.0.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(status)) => return Err(format!("{} exited with {status}", bin.display())),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                return Err(format!(
                    "{} did not finish within {} s (killed)",
                    bin.display(),
                    WATCHDOG.as_secs()
                ));
            }
            Err(e) => return Err(format!("waiting for {}: {e}", bin.display())),
        }
    }
    reader
        .join()
        .map_err(|_| "the thread reading the browser's output panicked".to_string())
}
