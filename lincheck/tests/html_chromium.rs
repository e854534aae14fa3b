//! Opens a produced HTML picture in a real headless Chromium: the page's script must run
//! to its end without an error, and a screenshot is taken.
//!
//! Chromium is found by `lincheck::browser` (`$CHROMIUM`, else `chromium`,
//! `chromium-browser` or `google-chrome` on the PATH; Debian: `apt-get install chromium`,
//! which `.ci/run` does when it is missing). Without it the test fails under `CI=true` and
//! otherwise prints a loud SKIPPED notice with the install command.
//!
//! The page writes `<div id="lincheck-ready">` when its script finished and, from a
//! `window.onerror` handler, `<div id="lincheck-error">` with the message; `--dump-dom`
//! prints the DOM after load, so both are visible here. A control page with a deliberate
//! script error proves the error marker is seen.

use std::path::Path;

use lincheck::generate::{KvGen, linearizable_kv, stale_read};
use lincheck::{CheckOptions, KvModel, Verdict, browser, check};

/// Runs chromium headless on `page` with `extra` arguments; returns stdout.
fn chromium(bin: &Path, profile: &Path, page: &Path, extra: &[&str]) -> String {
    browser::headless(bin, profile, &format!("file://{}", page.display()), extra)
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_html_picture_renders_in_headless_chromium_without_script_errors() {
    let Some(bin) = browser::chromium_for_test("the HTML test") else {
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
