//! lincheck: is a recorded history of a concurrent object linearizable?
//!
//! A history is linearizable (Herlihy & Wing, 1990) if its operations can be put in one
//! order that (1) a sequential object — the [`Model`] — accepts with the same outputs, and
//! (2) respects real time: if `a` returned before `b` was called, `a` comes first. This is
//! the property a Raft-replicated store promises its clients; checking it on histories
//! recorded under faults is how Jepsen, Knossos and Porcupine test etcd, TiKV and the MIT
//! 6.5840 labs.
//!
//! - [`check`] runs Wing & Gong's search with Lowe's memoization, as Porcupine does (the
//!   algorithm is described in the [`checker`] module), per key, with a time budget after
//!   which it answers [`Verdict::Unknown`] rather than guess.
//! - Models: [`RegisterModel`] (read / write / cas, Jepsen's etcd register) and [`KvModel`]
//!   (get / put / append / delete; "no such key" is distinct from `""`). A new model is an
//!   implementation of the [`Model`] trait.
//! - An operation whose outcome is unknown (timed out, never returned: `output == None`)
//!   may take effect at any moment after its call, or never.
//! - [`Recorder`] records a history from many client threads; [`check_kv_history`] checks
//!   one and, on a violation, writes the history file and an HTML picture ([`html`]) next
//!   to the test output and prints their paths.
//! - The `lincheck` binary checks a file: `lincheck FILE [--format ...] [--timeout SECS]
//!   [--html OUT.html] [--stats]`.
//!
//! # The `raftkv` history format (version 1)
//!
//! UTF-8 JSON lines. The first line may be the header
//! `{"lincheck":"raftkv-history","version":1}` (the [`Recorder`]'s files have it); blank
//! lines are skipped; every other line is one operation, an object with:
//!
//! | field     | type                | meaning |
//! |-----------|---------------------|---------|
//! | `client`  | integer ≥ 0         | the client (one lane in the picture) |
//! | `f`       | `"get"`, `"put"`, `"append"`, `"delete"` | the operation |
//! | `key`     | string              | the key (each key is checked alone) |
//! | `value`   | string              | for `put` and `append`: the value written / appended |
//! | `call`    | integer ≥ 0         | when the call started, in nanoseconds from any fixed origin (the recorder's creation) |
//! | `return`  | integer ≥ `call`, optional | when the answer arrived; required for `"ok"` |
//! | `outcome` | `"ok"`, `"info"`, `"fail"` | `ok`: answered; `info`: unknown (timeout, lost connection: may have taken effect at any time after `call`); `fail`: certainly did not take effect (the line is ignored) |
//! | `output`  | string or `null`    | for a `get` with outcome `ok`: the value read; `null` means "no such key" (`NoKey`), distinct from `""` |
//!
//! ```text
//! {"lincheck":"raftkv-history","version":1}
//! {"client":0,"call":1000,"f":"put","key":"a","value":"1","return":2500,"outcome":"ok"}
//! {"client":1,"call":1200,"f":"get","key":"a","return":2600,"outcome":"ok","output":"1"}
//! {"client":2,"call":1300,"f":"get","key":"b","return":1900,"outcome":"ok","output":null}
//! {"client":3,"call":3000,"f":"append","key":"a","value":"x","return":9000,"outcome":"info"}
//! ```
//!
//! Keys start absent. Field order does not matter. [`format::write_raftkv`] writes it,
//! [`format::parse_raftkv`] reads it; parse errors name the line.

pub mod browser;
pub mod checker;
pub mod format;
pub mod generate;
pub mod history;
pub mod html;
pub mod model;
mod recorder;
mod report;

pub use checker::{Candidate, CheckOptions, CheckReport, Failure, PartitionResult, Verdict, check};
pub use format::{Format, ParseError, Parsed};
pub use history::{History, Operation};
pub use model::{KvInput, KvModel, KvOutput, Model, RegisterInput, RegisterModel, RegisterOutput};
pub use recorder::{ClientRecorder, PendingCall, Recorder};
pub use report::{
    Artifacts, KvCheck, assert_kv_linearizable, check_kv_history, default_output_dir,
};
