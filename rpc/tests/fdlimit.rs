//! Issue 7, item 6 (in part): `max_connections` is checked against the open-file limit at
//! bind. The limit is lowered in a child process (this test binary run again), so the
//! test runner itself keeps its own.

use std::process::Command;

use proto::echo::{EchoReply, EchoRequest, EchoService, EchoServiceServer};
use rpc::{Reply, ServerBuilder};

struct Echo;

impl EchoService for Echo {
    fn echo(&self, req: EchoRequest, reply: Reply<EchoReply>) {
        reply.send(EchoReply {
            payload: req.payload,
        });
    }
}

const CHILD: &str = "RPC_FDLIMIT_CHILD";
const LIMIT: u64 = 256;

/// The child: lowers its soft RLIMIT_NOFILE, binds with the default 16,384 connections,
/// prints the limit in force.
#[test]
fn child_binds_under_a_low_fd_limit() {
    if std::env::var_os(CHILD).is_none() {
        return; // only meaningful in the child started below
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable `rlimit`.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur = LIMIT as libc::rlim_t;
    // SAFETY: `lim` is a valid `rlimit`; lowering the soft limit is always allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let s = ServerBuilder::new()
        .register_inline(EchoServiceServer::new(Echo))
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    println!("MAX_CONNECTIONS {}", s.max_connections());
}

#[test]
fn max_connections_is_lowered_to_fit_the_fd_limit() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_binds_under_a_low_fd_limit", "--nocapture"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("MAX_CONNECTIONS "))
        .unwrap_or_else(|| panic!("child printed no limit: {text}"))
        .trim()
        .parse()
        .unwrap();
    assert!(
        n > 0 && n < LIMIT as usize,
        "max_connections {n} under an fd limit of {LIMIT}"
    );
}

const EMFILE_CHILD: &str = "RPC_EMFILE_CHILD";

/// The child: a server and a client in a process whose descriptors are all taken but
/// one (the client's socket). The server's `accept` fails with EMFILE; the new client
/// must get an error at once, not wait for its deadline. Prints the call's outcome, then
/// the outcome of a call once descriptors are free again.
#[test]
fn child_calls_a_server_out_of_descriptors() {
    if std::env::var_os(EMFILE_CHILD).is_none() {
        return; // only meaningful in the child started below
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable `rlimit`.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur = 128;
    // SAFETY: `lim` is a valid `rlimit`; lowering the soft limit is always allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let rt = rpc::ClientRuntime::new(rpc::ClientConfig::default()).unwrap();
    let s = ServerBuilder::new()
        .register_inline(EchoServiceServer::new(Echo))
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let c = proto::echo::EchoServiceClient::new(rt.channel(s.local_addr()));
    // Take every descriptor left, then give one back for the client's socket.
    let mut fill = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        fill.push(f);
        assert!(fill.len() < 1000, "the fd limit is not in force");
    }
    fill.pop();
    let req = EchoRequest {
        payload: "x".into(),
    };
    // Generous: only a server that leaves the newcomer waiting reaches it.
    let r = c.echo(&req, std::time::Duration::from_secs(10));
    println!("OUTCOME {:?}", r.as_ref().map(|_| ()));
    drop(fill);
    let r = c.echo(&req, std::time::Duration::from_secs(10));
    println!("AFTER {:?}", r.map(|_| ()));
}

/// Issue 7, item 6: at the fd limit a new client gets `Unavailable` (its connection is
/// accepted and closed at once through a reserved descriptor) instead of `Timeout`; once
/// descriptors are free the same client is served.
#[test]
fn a_server_out_of_descriptors_refuses_new_clients_at_once() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_calls_a_server_out_of_descriptors",
            "--nocapture",
        ])
        .env(EMFILE_CHILD, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("child printed no {key}: {text}"))
            .to_string()
    };
    let first = line("OUTCOME ");
    assert!(
        first.starts_with("Err(Unavailable"),
        "a new client at the fd limit got {first}, not Unavailable"
    );
    assert_eq!(
        line("AFTER "),
        "Ok(())",
        "not served once descriptors were free"
    );
}
