//! `lincheck FILE [--format jepsen-register|jepsen-kv|raftkv] [--timeout SECS] [--html OUT.html] [--stats]`
//!
//! Prints `linearizable`, `not linearizable` or `unknown` and exits 0, 1 or 2; exits 3 if
//! the file cannot be read or parsed (the message names the line and the reason) or the
//! HTML cannot be written.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use lincheck::{CheckOptions, CheckReport, Format, Model, Operation, Parsed, Verdict, check};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    /// Jepsen's etcd register logs (`INFO  jepsen.util - 3 :ok :read 4`)
    JepsenRegister,
    /// Jepsen-style EDN maps, one per line (`{:process 3, :type :ok, :f :get, ...}`)
    JepsenKv,
    /// raftkv JSON lines (see the lincheck crate docs)
    Raftkv,
}

/// Checks whether a recorded history is linearizable.
#[derive(Debug, Parser)]
#[command(
    name = "lincheck",
    version,
    after_help = "Exit status: 0 linearizable, 1 not linearizable, 2 unknown (time budget ran out), 3 unreadable or unparseable file."
)]
struct Args {
    /// The history file.
    file: PathBuf,
    /// The file's format; guessed from its first lines when absent.
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Time budget in seconds; after it the answer is `unknown`.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Write a self-contained HTML picture of the history and the check here.
    #[arg(long, value_name = "OUT.html")]
    html: Option<PathBuf>,
    /// Print parse and check figures (operations, keys, search steps, times) to stderr.
    #[arg(long)]
    stats: bool,
}

fn run<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    args: &Args,
    title: &str,
) -> Result<CheckReport<M::State>, String> {
    let report = check(
        model,
        history,
        &CheckOptions::with_timeout(Duration::from_secs_f64(args.timeout)),
    );
    if let Some(path) = &args.html {
        let page = lincheck::html::render(model, history, &report, title);
        std::fs::write(path, page).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if args.stats {
        for p in &report.partitions {
            eprintln!(
                "stats: key {:?}: {} ops, {} , {} steps, {} cache entries, {:.3} ms",
                p.key,
                p.ops.len(),
                p.verdict.as_str(),
                p.steps,
                p.cache_entries,
                p.elapsed.as_secs_f64() * 1e3
            );
        }
    }
    Ok(report)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        eprintln!("lincheck: --timeout must be a positive number of seconds");
        return ExitCode::from(3);
    }
    let format = args.format.map(|f| match f {
        FormatArg::JepsenRegister => Format::JepsenRegister,
        FormatArg::JepsenKv => Format::JepsenKv,
        FormatArg::Raftkv => Format::Raftkv,
    });
    let t0 = Instant::now();
    let (format, parsed) = match lincheck::format::read_file(&args.file, format) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("lincheck: {}: {e}", args.file.display());
            return ExitCode::from(3);
        }
    };
    let parse_time = t0.elapsed();
    let title = args.file.display().to_string();
    let result = match &parsed {
        Parsed::Register(h) => run(&lincheck::RegisterModel, h, &args, &title)
            .map(|r| (r.verdict, r.elapsed, r.partitions.len())),
        Parsed::Kv(m, h) => {
            run(m, h, &args, &title).map(|r| (r.verdict, r.elapsed, r.partitions.len()))
        }
    };
    let (verdict, elapsed, keys) = match result {
        Ok(x) => x,
        Err(e) => {
            eprintln!("lincheck: {e}");
            return ExitCode::from(3);
        }
    };
    if args.stats {
        eprintln!(
            "stats: format {}, {} operations, {} partition(s), parse {:.3} ms, check {:.3} ms",
            format.name(),
            parsed.len(),
            keys,
            parse_time.as_secs_f64() * 1e3,
            elapsed.as_secs_f64() * 1e3
        );
    }
    println!("{}", verdict.as_str());
    ExitCode::from(match verdict {
        Verdict::Linearizable => 0,
        Verdict::NotLinearizable => 1,
        Verdict::Unknown => 2,
    })
}
