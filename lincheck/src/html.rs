//! A self-contained HTML picture of a history and its check (inline CSS, SVG and a little
//! script; no network, no external files).
//!
//! One section per partition (key), failing ones first and open. Each client is a lane;
//! each operation a bar from its call to its return on an axis of event order (times are
//! ranked, not to scale, so short and long operations both stay readable; hover or click a
//! bar for the exact times). For a violation the section says in words where the search got
//! furthest: the longest linearizable prefix (green bars numbered in linearization order),
//! the model state after it, and the operations that could go next but cannot be placed
//! (red: the model rejects their output in that state; orange: they fit but every
//! continuation fails), with a red line at the return by which one of them had to take
//! effect.
//!
//! The page sets `<body data-lincheck="ready">` and appends `<div id="lincheck-ready">` when
//! its script has run, and a `window.onerror` handler appends `<div id="lincheck-error">`
//! with the message, so a headless browser can check it (see `tests/html_chromium.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use crate::checker::{CheckReport, PartitionResult, Verdict};
use crate::history::Operation;
use crate::model::Model;

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else if max_chars <= 1 {
        String::new()
    } else {
        let mut t: String = s.chars().take(max_chars - 1).collect();
        t.push('…');
        t
    }
}

const LANE: f64 = 30.0;
const BAR: f64 = 20.0;
const LEFT: f64 = 4.0;
const LABEL_W: f64 = 84.0;
const TOP: f64 = 34.0;
const CHAR_W: f64 = 6.6;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Prefix(usize),
    Rejected,
    DeadEnd,
    Later,
    Linearized(usize),
    Unchecked,
}

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:14px 22px}
header h1{margin:0;font-size:19px;font-weight:600}
header .meta{color:#b8c1d1;font-size:13px;margin-top:3px}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:700;font-size:14px;margin-left:8px}
.b-ok{background:#2f9e44;color:#fff}.b-bad{background:#e03131;color:#fff}.b-unk{background:#868e96;color:#fff}
main{padding:10px 22px 40px}
.legend{display:flex;flex-wrap:wrap;gap:14px;margin:8px 0 14px;font-size:13px;color:#444}
.legend span{display:inline-flex;align-items:center;gap:5px}
.sw{width:22px;height:12px;border-radius:3px;display:inline-block;border:1px solid #0002}
details{background:#fff;border:1px solid #dde1e7;border-radius:8px;margin:10px 0;padding:0 14px}
details[open]{padding-bottom:12px}
summary{cursor:pointer;padding:10px 0;font-weight:600;font-size:15px}
.why{border-left:4px solid #e03131;background:#fff5f5;padding:8px 14px;margin:4px 0 10px;border-radius:0 6px 6px 0}
.why h3{margin:2px 0 6px;font-size:15px}
.why .state{font-family:ui-monospace,Menlo,Consolas,monospace;background:#fff;border:1px solid #f0c0c0;padding:1px 6px;border-radius:4px}
.why li{margin:2px 0}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
.prefix{font-size:12.5px;color:#333;max-height:9em;overflow:auto;margin:4px 0}
.tl{display:flex;border:1px solid #eceff3;border-radius:6px;background:#fcfcfd}
.tl>svg{flex:none;border-right:1px solid #e3e6ea}
.scroll{overflow-x:auto;flex:1}
svg text{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:11px}
.lane-label{font-size:12px;fill:#555}
.bar{cursor:pointer}
.bar:hover rect.body{stroke:#000;stroke-width:2}
.bar.sel rect.body{stroke:#1c7ed6;stroke-width:3}
#info{position:fixed;right:14px;bottom:14px;max-width:520px;background:#1d2430;color:#fff;padding:10px 14px;border-radius:8px;font-size:13px;display:none;box-shadow:0 4px 14px #0004}
#info .mono{color:#ffd43b}
#lincheck-error{background:#e03131;color:#fff;padding:8px;font-weight:700}
"#;

/// Renders a check of `history` against `model` as one self-contained HTML page.
pub fn render<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    report: &CheckReport<M::State>,
    title: &str,
) -> String {
    let mut out = String::new();
    let (badge_class, badge) = match report.verdict {
        Verdict::Linearizable => ("b-ok", "linearizable"),
        Verdict::NotLinearizable => ("b-bad", "not linearizable"),
        Verdict::Unknown => ("b-unk", "unknown (time budget ran out)"),
    };
    let failing: Vec<&PartitionResult<M::State>> = report
        .partitions
        .iter()
        .filter(|p| p.verdict == Verdict::NotLinearizable)
        .chain(
            report
                .partitions
                .iter()
                .filter(|p| p.verdict == Verdict::Unknown),
        )
        .collect();
    let clients: BTreeSet<u64> = history.iter().map(|o| o.client).collect();
    let _ = writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>lincheck: {t}</title>\n<script>window.onerror=function(m,s,l,c){{var d=document.createElement('div');\
         d.id='lincheck-error';d.textContent='script error: '+m+' (line '+l+')';(document.body||document.documentElement).prepend(d);}};</script>\
         <style>{STYLE}</style></head><body>\n<header><h1>{t}<span class=\"badge {badge_class}\">{badge}</span></h1>\
         <div class=\"meta\">{n} operations · {c} clients · {k} key(s){fk} · checked in {ms:.1} ms</div></header><main>",
        t = esc(title),
        n = history.len(),
        c = clients.len(),
        k = report.partitions.len(),
        fk = if failing.is_empty() {
            String::new()
        } else {
            format!(
                " · {} not linearizable",
                failing
                    .iter()
                    .filter(|p| p.verdict == Verdict::NotLinearizable)
                    .count()
            )
        },
        ms = report.elapsed.as_secs_f64() * 1e3,
    );
    out.push_str(
        "<div class=\"legend\">\
         <span><i class=\"sw\" style=\"background:#8ce99a\"></i>linearized prefix (number = order)</span>\
         <span><i class=\"sw\" style=\"background:#ff8787\"></i>cannot be placed next: the model rejects its output</span>\
         <span><i class=\"sw\" style=\"background:#ffc078\"></i>fits next, but every continuation fails</span>\
         <span><i class=\"sw\" style=\"background:#dee2e6\"></i>not reached</span>\
         <span><i class=\"sw\" style=\"background:#a5d8ff\"></i>linearizable key (number = order)</span>\
         <span><i class=\"sw\" style=\"background:repeating-linear-gradient(45deg,#fff,#fff 3px,#ced4da 3px,#ced4da 6px)\"></i>unknown outcome (may take effect any time after its call)</span>\
         <span>x axis: event order, not to scale — hover or click a bar for times</span></div>\n",
    );

    let mut order: Vec<&PartitionResult<M::State>> = failing.clone();
    order.extend(
        report
            .partitions
            .iter()
            .filter(|p| p.verdict == Verdict::Linearizable),
    );
    let many = order.len() > 40;
    for (pi, p) in order.iter().enumerate() {
        let open = p.verdict == Verdict::NotLinearizable
            || (p.verdict == Verdict::Unknown && !p.abandoned)
            || (!many && report.partitions.len() <= 3);
        render_partition(&mut out, model, history, p, pi, open);
    }
    out.push_str(
        "</main><div id=\"info\"></div>\n<script>\n(function(){\
         var info=document.getElementById('info');var sel=null;\
         document.querySelectorAll('g.bar').forEach(function(g){g.addEventListener('click',function(){\
         if(sel)sel.classList.remove('sel');sel=g;g.classList.add('sel');\
         info.innerHTML='';var h=document.createElement('div');h.className='mono';h.textContent=g.dataset.op;info.appendChild(h);\
         var d=document.createElement('div');d.textContent=g.dataset.detail;info.appendChild(d);info.style.display='block';});});\
         document.querySelectorAll('.scroll').forEach(function(s){var b=s.querySelector('.blocking');\
         if(b){var r=b.getBoundingClientRect(),q=s.getBoundingClientRect();s.scrollLeft=Math.max(0,r.left-q.left-s.clientWidth*0.6);}});\
         document.querySelectorAll('.prefix').forEach(function(p){p.scrollTop=p.scrollHeight;});document.body.dataset.lincheck='ready';var m=document.createElement('div');m.id='lincheck-ready';m.hidden=true;document.body.appendChild(m);\
         })();\n</script></body></html>\n",
    );
    out
}

fn render_partition<M: Model>(
    out: &mut String,
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    p: &PartitionResult<M::State>,
    index: usize,
    open: bool,
) {
    let key_label = if p.key.is_empty() {
        "the object".to_string()
    } else {
        format!("key {:?}", p.key)
    };
    let (verdict_html, badge) = match p.verdict {
        Verdict::Linearizable => ("linearizable", "b-ok"),
        Verdict::NotLinearizable => ("not linearizable", "b-bad"),
        Verdict::Unknown if p.abandoned => ("not checked: another key failed first", "b-unk"),
        Verdict::Unknown => ("unknown (out of time)", "b-unk"),
    };
    let _ = writeln!(
        out,
        "<details id=\"p{index}\"{}><summary>{}<span class=\"badge {badge}\">{verdict_html}</span> \
         <span style=\"font-weight:400;color:#666\">{} operations</span></summary>",
        if open { " open" } else { "" },
        esc(&key_label),
        p.ops.len(),
    );

    let mut roles: HashMap<usize, Role> = p.ops.iter().map(|&i| (i, Role::Unchecked)).collect();
    let mut blocking = None;
    let mut state_after: HashMap<usize, String> = HashMap::new();
    if let Some(f) = &p.failure {
        for &i in &p.ops {
            roles.insert(i, Role::Later);
        }
        for (n, &i) in f.prefix.iter().enumerate() {
            roles.insert(i, Role::Prefix(n + 1));
        }
        for c in &f.candidates {
            roles.insert(
                c.op,
                if c.step_ok {
                    Role::DeadEnd
                } else {
                    Role::Rejected
                },
            );
        }
        blocking = Some(f.blocking);
        let state = model.describe_state(&f.state);
        let describe = |i: usize| {
            let o = &history[i];
            model.describe_operation(&o.input, o.output.as_ref())
        };
        let _ = write!(
            out,
            "<div class=\"why\"><h3>Why: after the longest linearizable prefix found ({} of {} operations), \
             the state is <span class=\"state\">{}</span>, and no operation can go next.</h3>\
             <div>Client {} called <code>{}</code> and it returned; to be linearizable, it, or an operation \
             concurrent with it, must take effect next. The candidates:</div><ul>",
            f.prefix.len(),
            p.ops.len(),
            esc(&state),
            history[f.blocking].client,
            esc(&describe(f.blocking)),
        );
        for c in &f.candidates {
            let o = &history[c.op];
            let why = if c.step_ok {
                "fits here, but no order of the remaining operations works after it"
            } else {
                "<b>cannot be placed</b>: the model in this state would not answer that"
            };
            let _ = write!(
                out,
                "<li><code>{}</code> by client {} — {why}</li>",
                esc(&describe(c.op)),
                o.client
            );
        }
        out.push_str(
            "</ul><div class=\"prefix\"><b>Prefix</b> (linearization order, ⟹ state after):<br>",
        );
        if f.prefix.is_empty() {
            out.push_str("<i>empty — not even the first operation fits</i>");
        }
        let skip = f.prefix.len().saturating_sub(30);
        if skip > 0 {
            let _ = write!(out, "<i>… {skip} earlier …</i><br>");
        }
        let mut st = model.init();
        for (n, &i) in f.prefix.iter().enumerate() {
            let o = &history[i];
            // The checker accepted this step, so the model accepts it again.
            if let Some(next) = model.step(&st, &o.input, o.output.as_ref()) {
                st = next;
            }
            let after = model.describe_state(&st);
            if n >= skip {
                let _ = write!(
                    out,
                    "{}<code>{}. {} ⟹ {}</code>",
                    if n > skip { "<br>" } else { "" },
                    n + 1,
                    esc(&describe(i)),
                    esc(&after)
                );
            }
            state_after.insert(i, after);
        }
        out.push_str("</div></div>\n");
    } else if p.verdict == Verdict::Linearizable {
        for (n, &i) in p.linearization.iter().enumerate() {
            roles.insert(i, Role::Linearized(n + 1));
        }
    }

    // Rank the finite times of this partition.
    let mut times: Vec<u64> = Vec::new();
    for &i in &p.ops {
        let o = &history[i];
        times.push(o.call);
        if let Some(r) = o.ret {
            times.push(r);
        }
    }
    times.sort_unstable();
    times.dedup();
    let rank: BTreeMap<u64, usize> = times.iter().enumerate().map(|(k, &t)| (t, k)).collect();
    // px per ranked event: wide when there are few events, never below 22.
    let step = (1100.0 / times.len().max(1) as f64).clamp(22.0, 90.0);
    let x = |t: u64| LEFT + 10.0 + rank[&t] as f64 * step;
    let right = LEFT + 10.0 + times.len() as f64 * step + 40.0;
    let lanes: Vec<u64> = p
        .ops
        .iter()
        .map(|&i| history[i].client)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let lane_of: HashMap<u64, usize> = lanes.iter().enumerate().map(|(k, &c)| (c, k)).collect();
    let height = TOP + lanes.len() as f64 * LANE + 16.0;
    let mut labels = String::new();
    for (k, c) in lanes.iter().enumerate() {
        let y = TOP + k as f64 * LANE;
        let _ = write!(
            labels,
            "<rect x=\"0\" y=\"{:.1}\" width=\"{LABEL_W}\" height=\"{LANE}\" fill=\"{}\"/>\
             <text class=\"lane-label\" x=\"8\" y=\"{:.1}\">client {c}</text>",
            y - 4.0,
            if k % 2 == 0 { "#ffffff00" } else { "#f1f3f5aa" },
            y + BAR * 0.7
        );
    }
    let width = right + 10.0;
    let _ = writeln!(
        out,
        "<div class=\"tl\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{LABEL_W}\" height=\"{height:.0}\">\
         <text x=\"8\" y=\"14\" fill=\"#888\">time →</text>{labels}</svg><div class=\"scroll\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\">\n<defs><pattern id=\"hatch{index}\" width=\"6\" height=\"6\" \
         patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#fff\"/>\
         <rect width=\"3\" height=\"6\" fill=\"#ced4da\"/></pattern></defs>"
    );
    // Axis: a tick every 10 ranks, labelled with the real time.
    for (k, t) in times.iter().enumerate().step_by(10) {
        let xx = LEFT + 10.0 + k as f64 * step;
        let _ = writeln!(
            out,
            "<line x1=\"{xx:.1}\" y1=\"{:.1}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#eceff3\"/>\
             <text x=\"{xx:.1}\" y=\"14\" fill=\"#888\">{t}</text>",
            TOP - 12.0,
            height - 8.0
        );
    }
    for k in 0..lanes.len() {
        let y = TOP + k as f64 * LANE;
        let _ = writeln!(
            out,
            "<rect x=\"0\" y=\"{:.1}\" width=\"{width:.0}\" height=\"{LANE}\" fill=\"{}\"/>",
            y - 4.0,
            if k % 2 == 0 { "#ffffff00" } else { "#f1f3f5aa" },
        );
    }
    if let Some(b) = blocking {
        let o = &history[b];
        if let Some(r) = o.ret.filter(|_| o.output.is_some()) {
            let xx = x(r);
            let _ = writeln!(
                out,
                "<line x1=\"{xx:.1}\" y1=\"{:.1}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#e03131\" stroke-width=\"2\" \
                 stroke-dasharray=\"5 3\"/><text x=\"{:.1}\" y=\"{:.1}\" fill=\"#e03131\" font-weight=\"700\">stuck here</text>",
                TOP - 14.0,
                height - 6.0,
                xx + 4.0,
                TOP - 6.0
            );
        }
    }
    for &i in &p.ops {
        let o = &history[i];
        let lane = lane_of[&o.client];
        let y = TOP + lane as f64 * LANE;
        let x0 = x(o.call);
        let unknown = o.output.is_none();
        let x1 = if unknown {
            right - 6.0
        } else {
            x(o.ret.unwrap_or(o.call))
        };
        let w = (x1 - x0).max(step * 0.8);
        let role = roles.get(&i).copied().unwrap_or(Role::Unchecked);
        let (fill, stroke, num) = match role {
            Role::Prefix(n) => ("#8ce99a", "#2b8a3e", Some(n)),
            Role::Rejected => ("#ff8787", "#c92a2a", None),
            Role::DeadEnd => ("#ffc078", "#d9480f", None),
            Role::Later => ("#dee2e6", "#adb5bd", None),
            Role::Linearized(n) => ("#a5d8ff", "#1971c2", Some(n)),
            Role::Unchecked => ("#dee2e6", "#868e96", None),
        };
        let desc = model.describe_operation(&o.input, o.output.as_ref());
        let when = match (o.ret, unknown) {
            (_, true) => format!(
                "called at {}, outcome unknown{}",
                o.call,
                o.ret
                    .map(|r| format!(" (client gave up at {r})"))
                    .unwrap_or_default()
            ),
            (Some(r), false) => format!("called at {}, returned at {r}", o.call),
            (None, false) => format!("called at {}", o.call),
        };
        let role_text = match role {
            Role::Prefix(n) => format!(
                "; #{n} of the longest linearizable prefix; state after it: {}",
                state_after.get(&i).map_or("?", String::as_str)
            ),
            Role::Linearized(n) => format!("; #{n} in the linearization"),
            Role::Rejected => "; CANNOT BE PLACED after the prefix".into(),
            Role::DeadEnd => "; fits after the prefix but leads nowhere".into(),
            Role::Later => "; not reached".into(),
            Role::Unchecked => String::new(),
        };
        let detail = format!("client {}; {when}{role_text}", o.client);
        let cls = if Some(i) == blocking {
            "bar blocking"
        } else {
            "bar"
        };
        let heavy = matches!(role, Role::Rejected | Role::DeadEnd);
        let _ = write!(
            out,
            "<g class=\"{cls}\" data-op=\"{}\" data-detail=\"{}\"><title>{}\n{}</title>\
             <rect class=\"body\" x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{BAR}\" rx=\"4\" \
             fill=\"{}\" stroke=\"{stroke}\" stroke-width=\"{}\"{}/>",
            esc(&desc),
            esc(&detail),
            esc(&desc),
            esc(&detail),
            if unknown {
                format!("url(#hatch{index})")
            } else {
                fill.to_string()
            },
            if heavy { 2.5 } else { 1.0 },
            if unknown {
                " stroke-dasharray=\"4 3\""
            } else {
                ""
            },
        );
        let mut tx = x0 + 4.0;
        if let Some(n) = num {
            let label = n.to_string();
            let bw = label.len() as f64 * CHAR_W + 6.0;
            let _ = write!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"14\" rx=\"7\" fill=\"{stroke}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#fff\" font-weight=\"700\">{label}</text>",
                x0 + 2.0,
                y + 3.0,
                x0 + 5.0,
                y + 14.0
            );
            tx += bw;
        }
        let room = ((x0 + w - tx - 2.0) / CHAR_W).floor().max(0.0) as usize;
        let label = truncate(&desc, room);
        if !label.is_empty() {
            let _ = write!(
                out,
                "<text x=\"{tx:.1}\" y=\"{:.1}\" fill=\"#1d2430\">{}</text>",
                y + 14.0,
                esc(&label)
            );
        }
        out.push_str("</g>\n");
    }
    out.push_str("</svg></div></div></details>\n");
}
