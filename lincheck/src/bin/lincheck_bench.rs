//! Figures for lincheck (printed, never asserted): the corpus per file and in total, and
//! generated 50-client, 1,000-operation KV histories (linearizable, and with one injected
//! stale read). Run in release:
//!
//! ```text
//! cargo run -p lincheck --release --bin lincheck-bench [-- CORPUS_DIR]
//! ```
//!
//! CORPUS_DIR defaults to `$LINCHECK_CORPUS`, else `shared/lincheck-corpus` beside the
//! repository (or two levels up, for a worktree). Exits non-zero if a verdict is wrong or
//! nothing was measured.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lincheck::format::read_file;
use lincheck::generate::{KvGen, linearizable_kv, stale_read};
use lincheck::{CheckOptions, KvModel, Parsed, RegisterModel, Verdict, check};

fn corpus_dir() -> Option<PathBuf> {
    if let Some(a) = std::env::args_os().nth(1) {
        return Some(PathBuf::from(a));
    }
    if let Some(p) = std::env::var_os("LINCHECK_CORPUS") {
        return Some(PathBuf::from(p));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    [
        root.join("../shared/lincheck-corpus"),
        root.join("../../shared/lincheck-corpus"),
    ]
    .into_iter()
    .find(|p| p.join("register/verdicts.tsv").is_file())
}

fn main() -> ExitCode {
    let budget = CheckOptions::with_timeout(Duration::from_secs(60));
    let mut wrong = 0;
    let mut measured = 0;
    println!(
        "lincheck-bench ({} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );

    match corpus_dir() {
        None => println!("corpus: not found (pass its folder or set LINCHECK_CORPUS); skipped"),
        Some(dir) => {
            let mut total = Duration::ZERO;
            let mut largest: Option<(Duration, String)> = None;
            for sub in ["register", "kv"] {
                let tsv = dir.join(sub).join("verdicts.tsv");
                let Ok(text) = std::fs::read_to_string(&tsv) else {
                    println!("corpus: cannot read {}", tsv.display());
                    wrong += 1;
                    continue;
                };
                for line in text.lines().skip(1) {
                    let Some((file, want)) = line.split_once('\t') else {
                        continue;
                    };
                    let want = if want.trim() == "true" {
                        Verdict::Linearizable
                    } else {
                        Verdict::NotLinearizable
                    };
                    let path = dir.join(sub).join(file);
                    let t0 = Instant::now();
                    let parsed = match read_file(&path, None) {
                        Ok((_, p)) => p,
                        Err(e) => {
                            println!("{sub}/{file}: {e}");
                            wrong += 1;
                            continue;
                        }
                    };
                    let verdict = match &parsed {
                        Parsed::Register(h) => check(&RegisterModel, h, &budget).verdict,
                        Parsed::Kv(m, h) => check(m, h, &budget).verdict,
                    };
                    let dt = t0.elapsed();
                    total += dt;
                    measured += 1;
                    let ok = verdict == want;
                    wrong += usize::from(!ok);
                    println!(
                        "corpus {sub}/{file}: {} ops, {:>16}, {:8.3} ms{}",
                        parsed.len(),
                        verdict.as_str(),
                        dt.as_secs_f64() * 1e3,
                        if ok { "" } else { "  WRONG" }
                    );
                    if largest.as_ref().is_none_or(|(d, _)| dt > *d) {
                        largest = Some((dt, format!("{sub}/{file}")));
                    }
                }
            }
            println!(
                "corpus total: {measured} files, {:.3} ms (parse + check)",
                total.as_secs_f64() * 1e3
            );
            if let Some((d, f)) = largest {
                println!("corpus slowest: {f}, {:.3} ms", d.as_secs_f64() * 1e3);
            }
        }
    }

    // (keys, think, latency, unknown per mille): about 50 * 2 * latency / (think + 2 *
    // latency) operations are in flight, spread over the keys.
    let configs = [
        (10, 50, 200, 20),
        (1, 2000, 100, 0),
        (1, 2000, 100, 20),
        (1, 1000, 100, 0),
        (1, 50, 200, 0),
        (1, 50, 200, 20),
    ];
    let mut unknown = 0;
    for (keys, think, latency, unk) in configs {
        let g = KvGen {
            clients: 50,
            ops: 1000,
            keys,
            max_think: think,
            max_latency: latency,
            unknown_per_mille: unk,
        };
        for seed in [1u64, 2] {
            let h = linearizable_kv(seed, &g);
            let cases = [
                ("linearizable", Some(h.clone()), Verdict::Linearizable),
                (
                    "one stale read",
                    stale_read(&h, seed),
                    Verdict::NotLinearizable,
                ),
            ];
            for (name, hist, want) in cases {
                let Some(hist) = hist else {
                    println!("generated {name}: no pair of puts to inject into (seed {seed})");
                    continue;
                };
                let t0 = Instant::now();
                let r = check(
                    &KvModel::default(),
                    &hist,
                    &CheckOptions::with_timeout(Duration::from_secs(10)),
                );
                let dt = t0.elapsed();
                measured += 1;
                let note = if r.verdict == want {
                    ""
                } else if r.verdict == Verdict::Unknown {
                    unknown += 1;
                    "  (budget ran out)"
                } else {
                    wrong += 1;
                    "  WRONG"
                };
                let steps: u64 = r.partitions.iter().map(|p| p.steps).sum();
                println!(
                    "generated 50 clients, {} ops, {keys:>2} key(s), think {think:>4}, latency {latency:>3}, unknown {unk:>2}‰, seed {seed}, {name:>14}: {:>16}, {:9.3} ms, {steps} steps{note}",
                    hist.len(),
                    r.verdict.as_str(),
                    dt.as_secs_f64() * 1e3,
                );
            }
        }
    }
    println!("generated: {unknown} check(s) ran out of the 10 s budget (unknown, not wrong)");

    if measured == 0 {
        println!("nothing measured");
        return ExitCode::FAILURE;
    }
    if wrong > 0 {
        println!("{wrong} wrong or unreadable");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
