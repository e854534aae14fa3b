//! A picture of a recorded simulated run: one self-contained HTML page (inline script and
//! style, no network), drawn by the `raft-viz` binary.
//!
//! The page shows, for the event under the cursor:
//! - a **timeline** with one lane per node: a band coloured by role (follower, candidate,
//!   leader) labelled with the term; crashed stretches dark and hatched, a disconnected
//!   node greyed, and the groups of a partition tinted apart; every message as an arrow
//!   from its sender's lane at the send time to its receiver's lane at the delivery time,
//!   coloured by kind, a lost one dashed and ending in a red cross where it was lost;
//!   proposals and reads as marks on the lane;
//! - an **overview** of the whole run (click to jump);
//! - each node's **log** (persisted entries, coloured and labelled by term; no-ops marked;
//!   entries at or below the commit index solid, the rest faded; applied ones underlined;
//!   the snapshot as one block) with its last / commit / applied indexes;
//! - the **event** under the cursor in words, with its neighbours.
//!
//! A scrubber steps through the events (also ← / →, shift for ten, Home / End, space to
//! play). The URL fragment is honoured and kept up to date: `#e=N` opens at event N, `#t=MS`
//! at the first event at or after MS, `span=MS` sets the window width (`#e=40&span=800`).
//! `walk` makes the page step through every event (`walk=K`: every Kth), a self-test of the
//! drawing code used by the browser test. When its script has finished the page adds
//! `<div id="viz-ready" data-event=N data-walked=K>`, and any script error adds
//! `<div id="viz-error">`.

use std::fmt::Write as _;

use raft::Role;

use crate::record::{Fate, Recording, What};

/// Text about the run shown at the top of the page.
#[derive(Debug, Clone, Default)]
pub struct Caption {
    /// What ran (`figure8`, `chaos seed 215673`, …).
    pub title: String,
    /// A sentence or two on what to look for.
    pub about: String,
    /// The command that draws this run again.
    pub command: String,
    /// The check that failed, if the run failed.
    pub failure: Option<String>,
}

/// Appends `s` as a JSON string literal. `<`, `>` and `&` are escaped too, so that the
/// data can sit inside a `<script>` element.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn role_code(r: Role) -> u8 {
    match r {
        Role::Follower => 0,
        Role::Candidate => 1,
        Role::Leader => 2,
    }
}

/// The recording as a JSON object (the page's data).
pub fn to_json(rec: &Recording, cap: &Caption) -> String {
    let mut o = String::with_capacity(64 * (rec.events.len() + rec.messages.len()) + 1024);
    o.push_str("{\"title\":");
    json_str(&mut o, &cap.title);
    o.push_str(",\"about\":");
    json_str(&mut o, &cap.about);
    o.push_str(",\"command\":");
    json_str(&mut o, &cap.command);
    o.push_str(",\"failure\":");
    match &cap.failure {
        Some(f) => json_str(&mut o, f),
        None => o.push_str("null"),
    }
    let _ = write!(
        o,
        ",\"seed\":\"{}\",\"nodes\":{},\"end\":{},\"msgs\":[",
        rec.seed, rec.nodes, rec.end
    );
    for (i, m) in rec.messages.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let (fate, at, why) = match &m.fate {
            Fate::InFlight => (0, m.due.unwrap_or(rec.end), ""),
            Fate::Delivered(t) => (1, *t, ""),
            Fate::Lost(t, why) => (2, *t, *why),
        };
        let _ = write!(
            o,
            "[{},{},\"{}\",{},{},{},{},",
            m.from,
            m.to,
            m.kind.name(),
            m.sent,
            m.due.map_or(-1, |d| d as i64),
            fate,
            at
        );
        json_str(&mut o, why);
        o.push(',');
        json_str(&mut o, &m.text);
        o.push(']');
    }
    o.push_str("],\"events\":[");
    for (i, e) in rec.events.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let t = e.t;
        match &e.what {
            What::Start { id } => {
                let _ = write!(o, "[{t},\"start\",{id}]");
            }
            What::Crash { id, why } => {
                let _ = write!(o, "[{t},\"crash\",{id},");
                json_str(&mut o, why);
                o.push(']');
            }
            What::Wipe { id } => {
                let _ = write!(o, "[{t},\"wipe\",{id}]");
            }
            What::Role { id, role, term } => {
                let _ = write!(o, "[{t},\"role\",{id},{},{term}]", role_code(*role));
            }
            What::Append { id, entries } => {
                let _ = write!(o, "[{t},\"append\",{id},[");
                for (j, en) in entries.iter().enumerate() {
                    if j > 0 {
                        o.push(',');
                    }
                    let _ = write!(o, "[{},{},{}]", en.index, en.term, u8::from(en.noop));
                }
                o.push_str("]]");
            }
            What::Snapshot { id, index, term } => {
                let _ = write!(o, "[{t},\"snapshot\",{id},{index},{term}]");
            }
            What::Marks { id, marks } => {
                let _ = write!(
                    o,
                    "[{t},\"marks\",{id},{},{},{},{}]",
                    marks.last, marks.commit, marks.applied, marks.snapshot
                );
            }
            What::Send { msg } => {
                let _ = write!(o, "[{t},\"send\",{msg}]");
            }
            What::Deliver { msg } => {
                let _ = write!(o, "[{t},\"deliver\",{msg}]");
            }
            What::Lose { msg } => {
                let _ = write!(o, "[{t},\"lose\",{msg}]");
            }
            What::Net {
                disconnected,
                blocked,
            } => {
                let _ = write!(o, "[{t},\"net\",{disconnected:?},[");
                for (j, (a, b)) in blocked.iter().enumerate() {
                    if j > 0 {
                        o.push(',');
                    }
                    let _ = write!(o, "[{a},{b}]");
                }
                o.push_str("]]");
            }
            What::Propose { id, at } => match at {
                Some((index, term)) => {
                    let _ = write!(o, "[{t},\"propose\",{id},{index},{term}]");
                }
                None => {
                    let _ = write!(o, "[{t},\"propose\",{id},-1,-1]");
                }
            },
            What::Read { id, ctx } => {
                let _ = write!(o, "[{t},\"read\",{id},{ctx}]");
            }
            What::ReadState { id, ctx, index } => {
                let _ = write!(o, "[{t},\"readstate\",{id},{ctx},{index}]");
            }
        }
    }
    o.push_str("]}");
    o
}

/// The whole page for `rec`.
pub fn render(rec: &Recording, cap: &Caption) -> String {
    let data = to_json(rec, cap);
    let mut title = String::new();
    for c in cap.title.chars() {
        match c {
            '<' => title.push_str("&lt;"),
            '>' => title.push_str("&gt;"),
            '&' => title.push_str("&amp;"),
            c => title.push(c),
        }
    }
    PAGE.replace("@TITLE@", &title)
        .replace("@DATA@", &data)
        .replace("@SCRIPT@", SCRIPT)
}

const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>raft-viz: @TITLE@</title>
<script>
window.onerror = function (msg, src, line, col) {
  var d = document.createElement('div');
  d.id = 'viz-error';
  d.textContent = 'script error: ' + msg + ' at line ' + line + ':' + col;
  (document.body || document.documentElement).appendChild(d);
};
</script>
<style>
body { font: 13px/1.4 system-ui, sans-serif; margin: 0; background: #fafafa; color: #222; }
header { padding: 8px 14px 4px; }
h1 { font-size: 17px; margin: 0 0 2px; }
.about { color: #444; max-width: 1200px; }
.cmd { font: 12px ui-monospace, monospace; color: #555; }
.failure { background: #fde2e1; border: 1px solid #e06c6c; padding: 4px 8px; margin-top: 4px;
  font: 12px ui-monospace, monospace; white-space: pre-wrap; }
#controls { display: flex; gap: 6px; align-items: center; padding: 4px 14px; flex-wrap: wrap; }
#controls button { font-size: 13px; min-width: 30px; }
#scrub { flex: 1; min-width: 300px; }
#where { font: 12px ui-monospace, monospace; min-width: 260px; }
#overview, #timeline { display: block; margin: 0 14px; }
#bottom { display: flex; gap: 12px; padding: 6px 14px; align-items: flex-start; }
#logs { flex: 1 1 auto; min-width: 0; overflow-x: auto; }
#pane { flex: 0 0 560px; min-width: 0; font: 12px ui-monospace, monospace; background: #fff; border: 1px solid #ccc;
  padding: 6px; min-height: 120px; }
#pane .now { background: #ffe9a8; }
#pane div { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; cursor: pointer; }
#pane .detail { white-space: normal; cursor: default; border-bottom: 1px solid #ddd;
  margin-bottom: 4px; padding-bottom: 4px; }
table.log { border-collapse: separate; border-spacing: 2px 3px; font: 11px ui-monospace, monospace; }
table.log td { min-width: 22px; height: 20px; text-align: center; }
table.log td.name { text-align: left; min-width: 120px; padding-right: 6px; white-space: nowrap; }
table.log td.info { text-align: left; white-space: nowrap; padding-left: 8px; color: #555; }
table.log th { font-weight: normal; color: #888; font-size: 10px; }
td.e { border: 1px solid #0003; border-radius: 3px; }
td.unc { opacity: 0.45; border-style: dashed; }
td.app { box-shadow: inset 0 -3px 0 #1a7f37; }
td.cm { outline: 2px solid #111; }
td.noop { font-style: italic; }
td.snap { background: repeating-linear-gradient(45deg, #ddd, #ddd 4px, #eee 4px, #eee 8px);
  border: 1px solid #aaa; color: #444; }
td.none { color: #bbb; }
.legend { color: #555; font-size: 12px; padding: 0 14px; }
.legend span { display: inline-block; margin-right: 12px; }
.sw { display: inline-block; width: 18px; height: 4px; vertical-align: middle; margin-right: 3px; }
</style></head>
<body>
<header>
  <h1 id="title"></h1>
  <div class="about" id="about"></div>
  <div class="cmd" id="cmd"></div>
  <div class="failure" id="failure" hidden></div>
</header>
<div id="controls">
  <button id="first" title="first event (Home)">|◀</button>
  <button id="prev" title="previous event (←; shift: 10)">◀</button>
  <button id="play" title="play / pause (space)">▶︎ play</button>
  <button id="next" title="next event (→; shift: 10)">▶</button>
  <button id="last" title="last event (End)">▶|</button>
  <button id="nextrole" title="next role change or crash">next election ▸</button>
  <input id="scrub" type="range" min="0" max="0" value="0">
  <label>window <select id="span"></select></label>
  <span id="where"></span>
</div>
<canvas id="overview" height="40"></canvas>
<canvas id="timeline" height="300"></canvas>
<div class="legend" id="legend"></div>
<div id="bottom">
  <div id="logs"></div>
  <div id="pane"></div>
</div>
<script id="data" type="application/json">@DATA@</script>
<script>
@SCRIPT@
</script>
</body></html>
"#;

const SCRIPT: &str = r#"
'use strict';
const D = JSON.parse(document.getElementById('data').textContent);
const N = D.nodes, EV = D.events, MS = D.msgs, END = Math.max(D.end, 1);
const ROLE = ['Follower', 'Candidate', 'Leader'];
const ROLE_COLOR = ['#9fb8a8', '#f0a030', '#2f6fdf'];
const KIND = {
  PreVote: '#c27ba0', PreVoteReply: '#e3b5cf', Vote: '#8e3fb5', VoteReply: '#c79be0',
  Append: '#1f6fd1', AppendReply: '#7fb0ec', Heartbeat: '#9aa5b1', HeartbeatReply: '#c9d0d8',
  Snapshot: '#d4572a', SnapshotReply: '#eea58a', Other: '#000000'
};
const GROUP_TINT = ['#e8f0ff', '#fff1db', '#e9f7e6', '#fbe6f0', '#eeeeee', '#e6f7f7', '#f7f7e0'];
function termColor(t) { return 'hsl(' + Math.round((t * 137.5) % 360) + ',62%,' + (t === 0 ? 90 : 70 + (t % 2) * 8) + '%)'; }

// ------------------------------------------------------------ derived timelines
// Per node: role segments [t0, t1, role, term], down segments, disconnected segments,
// partition-group segments [t0, t1, group, ngroups].
const lanes = [];
for (let i = 0; i < N; i++) lanes.push({ roles: [], down: [], disc: [], group: [] });
(function () {
  const cur = [];
  for (let i = 0; i < N; i++) cur.push({ role: 0, term: 0, rt: 0, up: true, ut: 0, disc: false, dt: 0, g: 0, ng: 1, gt: 0 });
  function closeRole(i, t) { const c = cur[i]; if (c.up && t > c.rt) lanes[i].roles.push([c.rt, t, c.role, c.term]); c.rt = t; }
  for (const e of EV) {
    const t = e[0], k = e[1];
    if (k === 'role') { const i = e[2] - 1; closeRole(i, t); cur[i].role = e[3]; cur[i].term = e[4]; }
    else if (k === 'crash') { const i = e[2] - 1; closeRole(i, t); cur[i].up = false; cur[i].ut = t; }
    else if (k === 'start') {
      const i = e[2] - 1;
      if (!cur[i].up) lanes[i].down.push([cur[i].ut, t]);
      cur[i].up = true; cur[i].rt = t; cur[i].role = 0; cur[i].term = 0;
    } else if (k === 'net') {
      const disc = new Set(e[2]);
      const blocked = new Set(e[3].map(p => p[0] + ',' + p[1]));
      // groups: nodes that can talk both ways (union-find)
      const parent = []; for (let i = 0; i < N; i++) parent.push(i);
      const find = x => parent[x] === x ? x : (parent[x] = find(parent[x]));
      for (let a = 1; a <= N; a++) for (let b = a + 1; b <= N; b++) {
        if (disc.has(a) || disc.has(b)) continue;
        if (blocked.has(a + ',' + b) || blocked.has(b + ',' + a)) continue;
        parent[find(a - 1)] = find(b - 1);
      }
      const roots = [];
      for (let i = 0; i < N; i++) if (!disc.has(i + 1) && roots.indexOf(find(i)) < 0) roots.push(find(i));
      for (let i = 0; i < N; i++) {
        const c = cur[i];
        const d = disc.has(i + 1);
        if (d !== c.disc) { if (c.disc) lanes[i].disc.push([c.dt, t]); c.disc = d; c.dt = t; }
        const g = d ? -1 : roots.indexOf(find(i)), ng = roots.length;
        if (g !== c.g || ng !== c.ng) { if (c.ng > 1 && c.g >= 0) lanes[i].group.push([c.gt, t, c.g, c.ng]); c.g = g; c.ng = ng; c.gt = t; }
      }
    }
  }
  for (let i = 0; i < N; i++) {
    const c = cur[i];
    closeRole(i, END);
    if (!c.up) lanes[i].down.push([c.ut, END]);
    if (c.disc) lanes[i].disc.push([c.dt, END]);
    if (c.ng > 1 && c.g >= 0) lanes[i].group.push([c.gt, END, c.g, c.ng]);
  }
})();

// ------------------------------------------------------------ node state at an event
// State after applying events 0..=k. Checkpoints every CP events keep scrubbing fast.
function emptyState() {
  const s = [];
  for (let i = 0; i < N; i++) s.push({ up: true, role: 0, term: 0, log: [], snap: 0, snapTerm: 0,
    last: 0, commit: 0, applied: 0, reads: 0 });
  return s;
}
function cloneState(s) { return s.map(n => Object.assign({}, n, { log: n.log.slice() })); }
function applyEvent(s, e) {
  const k = e[1];
  if (k === 'start') { const n = s[e[2] - 1]; n.up = true; n.role = 0; n.term = 0; }
  else if (k === 'crash') { s[e[2] - 1].up = false; }
  else if (k === 'wipe') { const n = s[e[2] - 1]; n.log = []; n.snap = 0; n.snapTerm = 0; }
  else if (k === 'role') { const n = s[e[2] - 1]; n.role = e[3]; n.term = e[4]; }
  else if (k === 'append') {
    const n = s[e[2] - 1], es = e[3];
    // entries replace the log from es[0].index on; log[j] is index snap + 1 + j
    const from = es[0][0] - n.snap - 1;
    if (from >= 0) { n.log.length = Math.min(n.log.length, from); }
    for (const x of es) { const j = x[0] - n.snap - 1; if (j >= 0) n.log[j] = [x[1], x[2]]; }
  } else if (k === 'snapshot') {
    const n = s[e[2] - 1], idx = e[3];
    const keep = idx - n.snap;
    n.log = keep >= 0 ? n.log.slice(keep) : [];
    n.snap = idx; n.snapTerm = e[4];
  } else if (k === 'marks') { const n = s[e[2] - 1]; n.last = e[3]; n.commit = e[4]; n.applied = e[5]; }
}
const CP = 400, checkpoints = [];
(function () {
  let s = emptyState();
  checkpoints.push(cloneState(s));
  for (let k = 0; k < EV.length; k++) {
    applyEvent(s, EV[k]);
    if ((k + 1) % CP === 0) checkpoints.push(cloneState(s));
  }
})();
function stateAt(k) {
  // state after events 0..=k (k = -1: before any)
  const c = Math.floor((k + 1) / CP);
  const s = cloneState(checkpoints[Math.min(c, checkpoints.length - 1)]);
  for (let j = Math.min(c, checkpoints.length - 1) * CP; j <= k; j++) applyEvent(s, EV[j]);
  return s;
}

// ------------------------------------------------------------ words for an event
function msgText(i) {
  const m = MS[i];
  let fate;
  if (m[5] === 1) fate = 'delivered at ' + m[6] + ' ms (' + (m[6] - m[3]) + ' ms on the way)';
  else if (m[5] === 2) fate = 'LOST at ' + m[6] + ' ms: ' + m[7];
  else fate = 'still in flight at the end (due ' + m[4] + ' ms)';
  return { line: m[8], fate: fate, kind: m[2] };
}
function describe(e) {
  const k = e[1];
  switch (k) {
    case 'start': return 'n' + e[2] + ' starts from its storage (term, vote, log, snapshot)';
    case 'crash': return 'n' + e[2] + ' ' + e[3] + ': it loses what it had not persisted';
    case 'wipe': return 'n' + e[2] + '\u2019s disk is replaced by an empty one';
    case 'role': return 'n' + e[2] + ' becomes ' + ROLE[e[3]] + ' in term ' + e[4];
    case 'append': {
      const es = e[3], a = es[0], b = es[es.length - 1];
      return 'n' + e[2] + ' persists ' + es.length + ' entr' + (es.length === 1 ? 'y' : 'ies') + ' ' +
        a[0] + '@' + a[1] + (es.length > 1 ? ' .. ' + b[0] + '@' + b[1] : '') +
        (es.some(x => x[2]) ? ' (with a no-op)' : '') + ' (index@term; any later entries are replaced)';
    }
    case 'snapshot': return 'n' + e[2] + ' persists a snapshot through ' + e[3] + '@' + e[4] + ' and drops the log before it';
    case 'marks': return 'n' + e[2] + ': last ' + e[3] + ', commit ' + e[4] + ', applied ' + e[5] + (e[6] ? ', snapshot ' + e[6] : '');
    case 'send': { const m = msgText(e[2]); return 'send ' + m.line; }
    case 'deliver': { const m = msgText(e[2]); return 'deliver ' + m.line; }
    case 'lose': { const m = msgText(e[2]); return 'lost (' + MS[e[2]][7] + ') ' + m.line; }
    case 'net': {
      const parts = [];
      if (e[2].length) parts.push('disconnected: ' + e[2].map(x => 'n' + x).join(' '));
      if (e[3].length) parts.push('blocked links: ' + e[3].map(p => 'n' + p[0] + '\u2192n' + p[1]).join(' '));
      return 'network: ' + (parts.length ? parts.join('; ') : 'all links up');
    }
    case 'propose': return e[3] < 0 ? 'client proposes on n' + e[2] + ': refused (not leader)'
      : 'client proposes on n' + e[2] + ': appended at index ' + e[3] + ' in term ' + e[4];
    case 'read': return 'client asks n' + e[2] + ' for a read index (ctx ' + e[3] + ')';
    case 'readstate': return 'n' + e[2] + ' answers read ' + e[3] + ': serve it once applied through ' + e[4];
  }
  return k;
}

// ------------------------------------------------------------ view state
let cur = 0, span = Math.min(1500, END), playing = null, walked = 0;
const SPANS = [100, 300, 1000, 1500, 3000, 10000, 30000];
const spanSel = document.getElementById('span');
function fillSpans() {
  const opts = SPANS.filter(s => s < END).concat([END]);
  if (opts.indexOf(span) < 0) opts.push(span);
  opts.sort((a, b) => a - b);
  spanSel.innerHTML = '';
  for (const s of opts) {
    const o = document.createElement('option');
    o.value = s; o.textContent = s === END ? 'whole run' : s + ' ms';
    if (s === span) o.selected = true;
    spanSel.appendChild(o);
  }
}

const tl = document.getElementById('timeline'), ov = document.getElementById('overview');
const LEFT = 64, AXIS = 22;
function laneH() { return Math.max(34, Math.min(84, Math.floor(460 / N))); }
function sizeCanvases() {
  const w = Math.max(600, document.documentElement.clientWidth - 28);
  tl.width = w; tl.height = AXIS + N * laneH() + 6;
  ov.width = w; ov.height = 8 + N * 5 + 6;
}
function winAt(t) {
  let t0 = t - span * 0.6;
  t0 = Math.max(0, Math.min(t0, END - span));
  return [t0, t0 + span];
}
function hatch(ctx, x0, y0, w, h, color) {
  ctx.save(); ctx.beginPath(); ctx.rect(x0, y0, w, h); ctx.clip();
  ctx.strokeStyle = color; ctx.lineWidth = 1;
  for (let x = x0 - h; x < x0 + w; x += 7) { ctx.beginPath(); ctx.moveTo(x, y0 + h); ctx.lineTo(x + h, y0); ctx.stroke(); }
  ctx.restore();
}

function drawOverview() {
  const ctx = ov.getContext('2d'), W = ov.width - LEFT;
  ctx.clearRect(0, 0, ov.width, ov.height);
  ctx.fillStyle = '#666'; ctx.font = '10px system-ui'; ctx.fillText('whole run', 4, 12);
  const x = t => LEFT + t / END * W;
  for (let i = 0; i < N; i++) {
    const y = 4 + i * 5;
    for (const r of lanes[i].roles) { ctx.fillStyle = ROLE_COLOR[r[2]]; ctx.fillRect(x(r[0]), y, Math.max(1, x(r[1]) - x(r[0])), 4); }
    for (const d of lanes[i].down) { ctx.fillStyle = '#333'; ctx.fillRect(x(d[0]), y, Math.max(1, x(d[1]) - x(d[0])), 4); }
  }
  const [t0, t1] = winAt(EV.length ? EV[cur][0] : 0);
  ctx.strokeStyle = '#d00'; ctx.lineWidth = 1.5;
  ctx.strokeRect(x(t0), 1, Math.max(2, x(t1) - x(t0)), N * 5 + 8);
}

function drawTimeline() {
  const ctx = tl.getContext('2d'), W = tl.width - LEFT - 8, H = laneH();
  ctx.clearRect(0, 0, tl.width, tl.height);
  const tc = EV.length ? EV[cur][0] : 0;
  const [t0, t1] = winAt(tc);
  const x = t => LEFT + (t - t0) / (t1 - t0) * W;
  const top = i => AXIS + i * H, mid = i => AXIS + i * H + H * 0.58;
  // axis
  ctx.fillStyle = '#555'; ctx.font = '10px system-ui'; ctx.strokeStyle = '#ddd'; ctx.lineWidth = 1;
  const step = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000].find(s => (t1 - t0) / s <= 12) || 100000;
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    ctx.beginPath(); ctx.moveTo(x(t), AXIS - 4); ctx.lineTo(x(t), AXIS + N * H); ctx.stroke();
    ctx.fillText(t + ' ms', x(t) + 2, 11);
  }
  for (let i = 0; i < N; i++) {
    const L = lanes[i], y = top(i);
    const seg = (a, b) => [Math.max(x(a), LEFT), Math.min(x(b), LEFT + W)];
    for (const g of L.group) { if (g[1] < t0 || g[0] > t1) continue; const [a, b] = seg(g[0], g[1]); ctx.fillStyle = GROUP_TINT[g[2] % GROUP_TINT.length]; ctx.fillRect(a, y + 1, b - a, H - 2); }
    for (const d of L.disc) { if (d[1] < t0 || d[0] > t1) continue; const [a, b] = seg(d[0], d[1]); ctx.fillStyle = '#e4e4e4'; ctx.fillRect(a, y + 1, b - a, H - 2); hatch(ctx, a, y + 1, b - a, H - 2, '#c8c8c8'); }
    for (const r of L.roles) {
      if (r[1] < t0 || r[0] > t1) continue;
      const [a, b] = seg(r[0], r[1]);
      ctx.fillStyle = ROLE_COLOR[r[2]]; ctx.fillRect(a, y + 3, Math.max(1, b - a), 12);
      if (b - a > 26) { ctx.fillStyle = r[2] === 0 ? '#123' : '#fff'; ctx.font = '10px system-ui'; ctx.fillText('t' + r[3] + (r[2] === 2 ? ' leader' : r[2] === 1 ? ' cand.' : ''), a + 3, y + 13); }
    }
    for (const d of L.down) { if (d[1] < t0 || d[0] > t1) continue; const [a, b] = seg(d[0], d[1]); ctx.fillStyle = '#555'; ctx.fillRect(a, y + 1, b - a, H - 2); hatch(ctx, a, y + 1, b - a, H - 2, '#777'); if (b - a > 40) { ctx.fillStyle = '#fff'; ctx.font = '11px system-ui'; ctx.fillText('down', a + 4, y + H / 2 + 4); } }
    ctx.strokeStyle = '#ccc'; ctx.beginPath(); ctx.moveTo(LEFT, y + H); ctx.lineTo(LEFT + W, y + H); ctx.stroke();
    ctx.fillStyle = '#222'; ctx.font = 'bold 13px system-ui'; ctx.fillText('n' + (i + 1), 8, mid(i) + 4);
  }
  // messages overlapping the window, clipped to the lanes (not over the names)
  ctx.save(); ctx.beginPath(); ctx.rect(LEFT, AXIS - 6, W, N * H + 6); ctx.clip();
  const curMsg = EV.length && ['send', 'deliver', 'lose'].indexOf(EV[cur][1]) >= 0 ? EV[cur][2] : -1;
  let lo = 0, hi = MS.length;
  while (lo < hi) { const m = (lo + hi) >> 1; if (MS[m][3] < t0 - 2500) lo = m + 1; else hi = m; }
  for (let j = lo; j < MS.length && MS[j][3] <= t1; j++) {
    const m = MS[j];
    const end = m[6];
    if (end < t0) continue;
    const past = m[3] <= tc;
    const x0 = x(m[3]), y0 = mid(m[0] - 1), y1 = mid(m[1] - 1);
    let x1 = x(end), yy1 = y1;
    const lost = m[5] === 2;
    if (lost && m[4] < 0) { x1 = x0 + Math.max(10, Math.min(30, (x(m[3] + 5) - x0))); yy1 = y0 + (y1 - y0) * 0.3; }
    ctx.globalAlpha = j === curMsg ? 1 : (past ? 0.85 : 0.25);
    ctx.strokeStyle = KIND[m[2]] || '#000';
    ctx.lineWidth = j === curMsg ? 3.5 : (m[2].indexOf('Heartbeat') === 0 ? 1 : 1.6);
    ctx.setLineDash(lost ? [4, 3] : (m[5] === 0 ? [1, 3] : []));
    ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, yy1); ctx.stroke();
    ctx.setLineDash([]);
    if (lost) {
      ctx.strokeStyle = '#d00'; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.moveTo(x1 - 4, yy1 - 4); ctx.lineTo(x1 + 4, yy1 + 4); ctx.moveTo(x1 + 4, yy1 - 4); ctx.lineTo(x1 - 4, yy1 + 4); ctx.stroke();
    } else {
      const a = Math.atan2(yy1 - y0, x1 - x0);
      ctx.fillStyle = KIND[m[2]] || '#000';
      ctx.beginPath(); ctx.moveTo(x1, yy1);
      ctx.lineTo(x1 - 7 * Math.cos(a - 0.4), yy1 - 7 * Math.sin(a - 0.4));
      ctx.lineTo(x1 - 7 * Math.cos(a + 0.4), yy1 - 7 * Math.sin(a + 0.4)); ctx.fill();
    }
  }
  ctx.globalAlpha = 1;
  ctx.restore();
  // client marks, crashes
  let k0 = firstAt(t0);
  for (let k = k0; k < EV.length && EV[k][0] <= t1; k++) {
    const e = EV[k], X = x(e[0]);
    if (e[1] === 'propose') { const y = mid(e[2] - 1) - 10; ctx.fillStyle = e[3] < 0 ? '#aaa' : '#0a7d32'; ctx.beginPath(); ctx.moveTo(X, y - 6); ctx.lineTo(X + 5, y); ctx.lineTo(X, y + 6); ctx.lineTo(X - 5, y); ctx.fill(); }
    else if (e[1] === 'read' || e[1] === 'readstate') { const y = mid(e[2] - 1) - 10; ctx.strokeStyle = '#0a7d32'; ctx.lineWidth = 1.5; ctx.beginPath(); ctx.arc(X, y, 4, 0, 7); ctx.stroke(); if (e[1] === 'readstate') { ctx.fillStyle = '#0a7d32'; ctx.fill(); } }
    else if (e[1] === 'crash') { const y = mid(e[2] - 1); ctx.strokeStyle = '#d00'; ctx.lineWidth = 3; ctx.beginPath(); ctx.moveTo(X - 7, y - 7); ctx.lineTo(X + 7, y + 7); ctx.moveTo(X + 7, y - 7); ctx.lineTo(X - 7, y + 7); ctx.stroke(); }
  }
  // cursor
  ctx.strokeStyle = '#d00'; ctx.lineWidth = 1.5;
  ctx.beginPath(); ctx.moveTo(x(tc), AXIS - 6); ctx.lineTo(x(tc), AXIS + N * H); ctx.stroke();
  if (EV.length) { const e = EV[cur]; if (typeof e[2] === 'number' && ['send','deliver','lose','net'].indexOf(e[1]) < 0) { ctx.fillStyle = '#d00'; ctx.beginPath(); ctx.arc(x(tc), mid(e[2] - 1), 4, 0, 7); ctx.fill(); } }
}
function firstAt(t) {
  let lo = 0, hi = EV.length;
  while (lo < hi) { const m = (lo + hi) >> 1; if (EV[m][0] < t) lo = m + 1; else hi = m; }
  return lo;
}

const logsDiv = document.getElementById('logs');
function drawLogs() {
  const s = stateAt(cur);
  let maxLast = 0, minSnap = Infinity;
  for (const n of s) { maxLast = Math.max(maxLast, n.snap + n.log.length); minSnap = Math.min(minSnap, n.snap); }
  // As many index columns as fit beside the names and the summary (cells are ~26 px).
  const WIDTH = Math.max(8, Math.min(64, Math.floor((logsDiv.clientWidth - 400) / 26)));
  const from = Math.max(1, maxLast - WIDTH + 1);
  let h = '<table class="log"><tr><th></th>';
  if (from > 1) h += '<th>…</th>';
  for (let i = from; i <= maxLast; i++) h += '<th>' + i + '</th>';
  h += '<th></th></tr>';
  for (let i = 0; i < N; i++) {
    const n = s[i];
    h += '<tr><td class="name"><b>n' + (i + 1) + '</b> ' + (n.up ? ROLE[n.role] + ' t' + n.term : '<span style="color:#b00">down</span>') + '</td>';
    if (from > 1) h += n.snap >= from - 1 ? '<td class="snap" title="snapshot">snap</td>' : '<td class="none">…</td>';
    for (let idx = from; idx <= maxLast; idx++) {
      if (idx <= n.snap) { h += '<td class="e snap" title="in the snapshot through ' + n.snap + '@' + n.snapTerm + '">s</td>'; continue; }
      const x = n.log[idx - n.snap - 1];
      if (!x) { h += '<td class="none">·</td>'; continue; }
      const cls = ['e'];
      if (idx > n.commit) cls.push('unc');
      if (idx <= n.applied) cls.push('app');
      if (idx === n.commit) cls.push('cm');
      if (x[1]) cls.push('noop');
      h += '<td class="' + cls.join(' ') + '" style="background:' + termColor(x[0]) + '" title="index ' + idx + ', term ' + x[0] + (x[1] ? ', no-op' : '') + (idx <= n.commit ? ', committed' : ', not known committed') + (idx <= n.applied ? ', applied' : '') + '">' + x[0] + (x[1] ? '°' : '') + '</td>';
    }
    h += '<td class="info">last ' + (n.snap + n.log.length) + ' · commit ' + n.commit + ' · applied ' + n.applied + (n.snap ? ' · snap ' + n.snap : '') + '</td></tr>';
  }
  h += '</table><div class="legend" style="padding:0">cell = term of the entry at that index (° a leader\u2019s no-op); ' +
    'solid: committed (outlined: the commit index); faded, dashed: not known committed; green underline: applied; s: in the snapshot</div>';
  logsDiv.innerHTML = h;
}

const pane = document.getElementById('pane');
function drawPane() {
  if (!EV.length) { pane.textContent = 'no events'; return; }
  const e = EV[cur];
  let d = '<div class="detail"><b>event ' + cur + ' of ' + EV.length + ', t = ' + e[0] + ' ms</b><br>' + esc(describe(e));
  if (['send', 'deliver', 'lose'].indexOf(e[1]) >= 0) { const m = msgText(e[2]); d += '<br>kind ' + m.kind + '; sent at ' + MS[e[2]][3] + ' ms; ' + esc(m.fate); }
  d += '</div>';
  const a = Math.max(0, cur - 7), b = Math.min(EV.length, cur + 9);
  for (let k = a; k < b; k++) d += '<div data-k="' + k + '"' + (k === cur ? ' class="now"' : '') + '>' + String(EV[k][0]).padStart(6, '\u00a0') + ' ' + esc(describe(EV[k])) + '</div>';
  pane.innerHTML = d;
}
function esc(s) { return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;'); }

const scrub = document.getElementById('scrub'), where = document.getElementById('where');
function render() {
  drawTimeline(); drawOverview(); drawLogs(); drawPane();
  scrub.value = cur;
  where.textContent = EV.length ? 'event ' + cur + '/' + (EV.length - 1) + '  t=' + EV[cur][0] + ' ms' : '';
}
function go(k, updateUrl) {
  cur = Math.max(0, Math.min(EV.length - 1, k));
  render();
  if (updateUrl !== false) { try { history.replaceState(null, '', '#e=' + cur + '&span=' + span); } catch (err) { /* file: URLs may refuse */ } }
}
function nextRole() {
  for (let k = cur + 1; k < EV.length; k++) if (EV[k][1] === 'role' || EV[k][1] === 'crash') return go(k);
}

// ------------------------------------------------------------ wiring
document.getElementById('title').textContent = D.title + '  (seed ' + D.seed + ', ' + N + ' nodes, ' + END + ' ms simulated, ' + EV.length + ' events, ' + MS.length + ' messages)';
document.getElementById('about').textContent = D.about;
document.getElementById('cmd').textContent = D.command;
if (D.failure) { const f = document.getElementById('failure'); f.hidden = false; f.textContent = 'FAILED: ' + D.failure; }
(function legend() {
  let h = '<span><b>roles</b></span>';
  for (let r = 0; r < 3; r++) h += '<span><i class="sw" style="height:10px;background:' + ROLE_COLOR[r] + '"></i>' + ROLE[r] + '</span>';
  h += '<span><i class="sw" style="height:10px;background:#555"></i>down</span><span><i class="sw" style="height:10px;background:#e4e4e4"></i>disconnected</span><span><i class="sw" style="height:10px;background:' + GROUP_TINT[1] + '"></i>partition group</span> <span><b>messages</b></span>';
  for (const k in KIND) if (k !== 'Other') h += '<span><i class="sw" style="background:' + KIND[k] + '"></i>' + k + '</span>';
  h += '<span style="color:#d00">✕ lost (dashed)</span><span style="color:#0a7d32">◆ proposal ○ read ● read answered</span>';
  document.getElementById('legend').innerHTML = h;
})();
scrub.max = Math.max(0, EV.length - 1);
scrub.addEventListener('input', () => go(+scrub.value));
document.getElementById('first').onclick = () => go(0);
document.getElementById('last').onclick = () => go(EV.length - 1);
document.getElementById('prev').onclick = ev => go(cur - (ev.shiftKey ? 10 : 1));
document.getElementById('next').onclick = ev => go(cur + (ev.shiftKey ? 10 : 1));
document.getElementById('nextrole').onclick = nextRole;
const playBtn = document.getElementById('play');
function togglePlay() {
  if (playing) { clearInterval(playing); playing = null; playBtn.textContent = '▶︎ play'; return; }
  playBtn.textContent = '❚❚ pause';
  playing = setInterval(() => { if (cur >= EV.length - 1) togglePlay(); else go(cur + 1); }, 120);
}
playBtn.onclick = togglePlay;
spanSel.onchange = () => { span = +spanSel.value; go(cur); };
pane.addEventListener('click', ev => { const d = ev.target.closest('[data-k]'); if (d) go(+d.dataset.k); });
function timeAtX(canvas, px, t0, t1) { return t0 + (px - LEFT) / (canvas.width - LEFT - 8) * (t1 - t0); }
ov.addEventListener('click', ev => { const r = ov.getBoundingClientRect(); go(firstAt(Math.max(0, (ev.clientX - r.left - LEFT) / (ov.width - LEFT) * END))); });
tl.addEventListener('click', ev => { const r = tl.getBoundingClientRect(); const [t0, t1] = winAt(EV[cur][0]); go(firstAt(timeAtX(tl, ev.clientX - r.left, t0, t1))); });
document.addEventListener('keydown', ev => {
  if (ev.target.tagName === 'SELECT') return;
  const n = ev.shiftKey ? 10 : 1;
  if (ev.key === 'ArrowRight') { go(cur + n); ev.preventDefault(); }
  else if (ev.key === 'ArrowLeft') { go(cur - n); ev.preventDefault(); }
  else if (ev.key === 'Home') go(0);
  else if (ev.key === 'End') go(EV.length - 1);
  else if (ev.key === ' ') { togglePlay(); ev.preventDefault(); }
});
window.addEventListener('resize', () => { sizeCanvases(); render(); });

// ------------------------------------------------------------ the URL fragment
const frag = new URLSearchParams(location.hash.replace(/^#/, ''));
if (frag.has('span')) { const s = +frag.get('span'); if (s > 0) span = Math.min(s, END); }
fillSpans();
sizeCanvases();
let start = 0;
if (frag.has('e')) start = +frag.get('e') || 0;
else if (frag.has('t')) start = firstAt(+frag.get('t') || 0);
if (frag.has('walk')) {
  // Self-test: step through the events (every one, or every `walk=K`th) with the code the
  // buttons use.
  const stride = Math.max(1, Math.floor(+frag.get('walk')) || 1);
  for (let k = 0; k < EV.length; k += stride) { go(k, false); walked++; }
}
go(start, false);
const ready = document.createElement('div');
ready.id = 'viz-ready';
ready.dataset.event = String(cur);
ready.dataset.walked = String(walked);
ready.dataset.events = String(EV.length);
ready.hidden = true;
document.body.appendChild(ready);
"#;
