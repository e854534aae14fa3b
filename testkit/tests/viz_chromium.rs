//! `raft-viz` end to end: the binary draws a scenario and a chaos seed, and each page is
//! opened in a real headless Chromium, stepped through with its scrubber (the `#e=N` and
//! `walk` fragment), screenshotted, and checked for script errors.
//!
//! Chromium is found by `lincheck::browser` (`$CHROMIUM`, else `chromium`,
//! `chromium-browser` or `google-chrome` on the PATH; Debian: `apt-get install chromium`,
//! which `.ci/run` does when it is missing). Without it the test fails under `CI=true` and
//! otherwise prints a loud SKIPPED notice with the install command.
//!
//! The page adds `<div id="viz-ready" data-event=N data-walked=K data-events=E>` when its
//! script has finished and, from `window.onerror`, `<div id="viz-error">`; `--dump-dom`
//! prints the DOM after load. A control page with a deliberate script error proves the
//! error marker is seen. `VIZ_SCREENSHOTS=DIR` copies the screenshots there (that is how
//! `docs/raft-viz-*.png` were made).

use std::path::Path;
use std::process::Command;

use lincheck::browser;

/// Runs chromium headless on `url` with `extra` arguments; returns stdout.
fn chromium(bin: &Path, profile: &Path, url: &str, extra: &[&str]) -> String {
    browser::headless(bin, profile, url, extra).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `raft-viz` with `args`; returns (exit code, stdout + stderr).
fn raft_viz(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_raft-viz"))
        .args(args)
        .output()
        .expect("run raft-viz");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The value of `attr` in the `viz-ready` marker of a dumped DOM.
fn ready_attr(dom: &str, attr: &str) -> Option<u64> {
    let at = dom.find("id=\"viz-ready\"")?;
    let tag_start = dom[..at].rfind('<')?;
    let tag = &dom[tag_start..tag_start + dom[tag_start..].find('>')?];
    let key = format!("{attr}=\"");
    let v = &tag[tag.find(&key)? + key.len()..];
    v[..v.find('"')?].parse().ok()
}

fn file_url(page: &Path, fragment: &str) -> String {
    format!("file://{}#{fragment}", page.display())
}

/// Opens `page` walking through its events (every `stride`th) and ending at event `at`;
/// asserts the script finished there without an error. Returns the number of events.
fn check_walk(bin: &Path, profile: &Path, page: &Path, at: u64, stride: u64) -> u64 {
    let dom = chromium(
        bin,
        profile,
        &file_url(page, &format!("e={at}&walk={stride}")),
        &["--dump-dom"],
    );
    let head = &dom[..dom.len().min(3000)];
    if let Some(at) = dom.find("id=\"viz-error\"") {
        let tail: String = dom[at..].chars().take(300).collect();
        panic!("script error in {}: {tail}", page.display());
    }
    assert!(
        dom.contains("id=\"viz-ready\""),
        "the page's script did not finish:\n{head}"
    );
    let events = ready_attr(&dom, "data-events").expect("data-events");
    assert!(events > 100, "only {events} events drawn");
    assert_eq!(
        ready_attr(&dom, "data-event"),
        Some(at),
        "the page honours #e="
    );
    assert_eq!(
        ready_attr(&dom, "data-walked"),
        Some(events.div_ceil(stride)),
        "the walk stepped through the events"
    );
    events
}

fn screenshot(bin: &Path, profile: &Path, url: &str, shot: &Path) {
    let _ = std::fs::remove_file(shot);
    chromium(
        bin,
        profile,
        url,
        &[&format!("--screenshot={}", shot.display())],
    );
    let png = std::fs::read(shot).expect("chromium wrote the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (w, h) = (
        u32::from_be_bytes(png[16..20].try_into().expect("IHDR width")),
        u32::from_be_bytes(png[20..24].try_into().expect("IHDR height")),
    );
    assert_eq!((w, h), (1400, 900), "screenshot size");
    assert!(
        png.len() > 40_000,
        "a {}-byte screenshot is too small to show the timeline",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
    if let Some(dir) = std::env::var_os("VIZ_SCREENSHOTS") {
        let to = Path::new(&dir).join(shot.file_name().expect("file name"));
        std::fs::copy(shot, &to).expect("copy the screenshot to VIZ_SCREENSHOTS");
        eprintln!("copied to {}", to.display());
    }
}

#[test]
fn raft_viz_pages_render_and_step_in_headless_chromium() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("raft-viz");
    std::fs::create_dir_all(&dir).expect("create the test folder");

    // The command line first (no browser needed).
    let (code, text) = raft_viz(&["--scenario", "no_such_scenario"]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("--list"),
        "the error says how to find names: {text}"
    );
    let (code, text) = raft_viz(&["--seed", "1", "--faults", "crash,meteor"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("unknown fault \"meteor\""), "{text}");

    let figure8 = dir.join("raft-viz-figure8.html");
    let (code, text) = raft_viz(&[
        "--scenario",
        "figure8",
        "--out",
        figure8.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 0, "{text}");
    let chaos = dir.join("raft-viz-chaos.html");
    let (code, text) = raft_viz(&[
        "--seed",
        "3",
        "--faults",
        "crash,partition,loss",
        "--out",
        chaos.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 0, "{text}");
    let html = std::fs::read_to_string(&figure8).expect("read the page");
    // A seed draws the same page every time (the recorder and the page are deterministic).
    let again = dir.join("raft-viz-figure8-again.html");
    let (code, text) = raft_viz(&[
        "--scenario",
        "figure8",
        "--out",
        again.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 0, "{text}");
    let html_again = std::fs::read_to_string(&again).expect("read the page");
    // (The pages differ only in the --out path of the command they show.)
    let own = |page: &str, out: &Path| page.replace(out.to_str().unwrap_or_default(), "OUT");
    assert!(
        own(&html, &figure8) == own(&html_again, &again),
        "the same scenario drew two different pages"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no network"
    );
    assert!(!html.contains(" src="), "no external script or image");

    let Some(bin) = browser::chromium_for_test("the raft-viz browser test") else {
        return;
    };
    let profile = dir.join("chromium-profile");

    // Figure 8: every event, stopping at one in the middle.
    let events = check_walk(&bin, &profile, &figure8, 300, 1);
    assert!(300 < events);
    // A chaos seed: thousands of events, every 7th.
    check_walk(&bin, &profile, &chaos, 1000, 7);

    // Screenshots: Figure 8 at step (c), the old leader's term-1 entry on a majority but
    // not committed (event 350), and at step (d), overwritten by the term-7 leader (440);
    // a moment of the chaos run.
    screenshot(
        &bin,
        &profile,
        &file_url(&figure8, "e=350&span=200"),
        &dir.join("raft-viz-figure8-c.png"),
    );
    screenshot(
        &bin,
        &profile,
        &file_url(&figure8, "e=440&span=200"),
        &dir.join("raft-viz-figure8-d.png"),
    );
    screenshot(
        &bin,
        &profile,
        &file_url(&chaos, "t=6000&span=1000"),
        &dir.join("raft-viz-chaos.png"),
    );

    // Control: the same page with a script error must show the error marker, so the
    // checks above can fail.
    let broken = dir.join("broken.html");
    std::fs::write(
        &broken,
        html.replace("</body>", "<script>noSuchFunction();</script></body>"),
    )
    .expect("write");
    let dom = chromium(&bin, &profile, &file_url(&broken, "e=3"), &["--dump-dom"]);
    assert!(
        dom.contains("id=\"viz-error\""),
        "a script error went unnoticed"
    );
    // And an error inside the drawing code, reached only while stepping.
    let broken2 = dir.join("broken-draw.html");
    std::fs::write(
        &broken2,
        html.replace(
            "function drawPane() {",
            "function drawPane() { if (cur === 200) nope();",
        ),
    )
    .expect("write");
    let dom = chromium(
        &bin,
        &profile,
        &file_url(&broken2, "e=3&walk"),
        &["--dump-dom"],
    );
    assert!(
        dom.contains("id=\"viz-error\""),
        "an error at one step went unnoticed"
    );
}
