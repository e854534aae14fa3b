//! Opens a produced HTML picture in a real headless Chromium: the page's script must run
//! to its end without an error, and a screenshot is taken.
//!
//! Chromium: `$CHROMIUM`, else `chromium`, `chromium-browser` or `google-chrome` on the
//! PATH (Debian: `apt-get install chromium`; `.ci/run` installs it when missing). Without
//! it the test fails under `CI=true` and otherwise prints a loud SKIPPED notice with the
//! install command.
//!
//! The page writes `<div id="lincheck-ready">` when its script finished and, from a
//! `window.onerror` handler, `<div id="lincheck-error">` with the message; `--dump-dom`
//! prints the DOM after load, so both are visible here. A control page with a deliberate
//! script error proves the error marker is seen.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lincheck::generate::{KvGen, linearizable_kv, stale_read};
use lincheck::{CheckOptions, KvModel, Verdict, check};

fn find_chromium() -> Option<PathBuf> {
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

/// Kills the browser by PID if the test gives up on it.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs chromium headless on `page` with `extra` arguments; returns stdout.
fn chromium(bin: &Path, profile: &Path, page: &Path, extra: &[&str]) -> String {
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
    .arg(format!("file://{}", page.display()))
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let mut child = KillOnDrop(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display())),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    // A watchdog, not synchronisation: a wedged browser must not hang the suite.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        match child.0.try_wait() {
            Ok(Some(status)) => {
                assert!(status.success(), "chromium exited with {status}");
                break;
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => panic!("chromium did not finish within 180 s"),
            Err(e) => panic!("waiting for chromium: {e}"),
        }
    }
    reader.join().expect("reader thread")
}

#[test]
fn the_html_picture_renders_in_headless_chromium_without_script_errors() {
    let Some(bin) = find_chromium() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "chromium is missing (CI=true): install it with `apt-get install -y chromium` (.ci/run does this)"
            );
        }
        eprintln!(
            "\n******** SKIPPED: the HTML test needs Chromium. Install it with\n  \
             sudo apt-get install -y chromium\nor point CHROMIUM at a Chrome binary. ********\n"
        );
        return;
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lincheck-html");
    std::fs::create_dir_all(&dir).expect("create the test folder");

    // A readable violation: 6 clients, one key, a stale read injected.
    let g = KvGen {
        clients: 6,
        ops: 36,
        keys: 1,
        max_think: 10,
        max_latency: 25,
        unknown_per_mille: 60,
    };
    let h = stale_read(&linearizable_kv(5, &g), 5).expect("puts to make a stale read from");
    let model = KvModel::default();
    let report = check(&model, &h, &CheckOptions::default());
    assert_eq!(report.verdict, Verdict::NotLinearizable);
    let page = dir.join("violation.html");
    std::fs::write(
        &page,
        lincheck::html::render(
            &model,
            &h,
            &report,
            "stale read injected into a generated history",
        ),
    )
    .expect("write the page");

    let profile = dir.join("chromium-profile");
    let dom = chromium(&bin, &profile, &page, &["--dump-dom"]);
    assert!(
        dom.contains("id=\"lincheck-ready\""),
        "the page's script did not finish:\n{}",
        &dom[..dom.len().min(2000)]
    );
    assert!(
        !dom.contains("id=\"lincheck-error\""),
        "script error in the page:\n{}",
        &dom[..dom.len().min(2000)]
    );
    assert!(dom.contains("data-lincheck=\"ready\""));

    let shot = dir.join("violation.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &bin,
        &profile,
        &page,
        &[&format!("--screenshot={}", shot.display())],
    );
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (w, hgt) = (
        u32::from_be_bytes(png[16..20].try_into().expect("IHDR width")),
        u32::from_be_bytes(png[20..24].try_into().expect("IHDR height")),
    );
    assert_eq!((w, hgt), (1400, 900), "screenshot size");
    assert!(
        png.len() > 20_000,
        "a {}-byte screenshot is too small to show the page",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());

    // Control: the same page with a script error must show the error marker, so the
    // check above can fail.
    let broken = dir.join("broken.html");
    let html = std::fs::read_to_string(&page).expect("read the page");
    std::fs::write(
        &broken,
        html.replace("</body>", "<script>noSuchFunction();</script></body>"),
    )
    .expect("write");
    let dom = chromium(&bin, &profile, &broken, &["--dump-dom"]);
    assert!(
        dom.contains("id=\"lincheck-error\""),
        "a script error went unnoticed"
    );
}
