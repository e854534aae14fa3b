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

/// The child: a server alone in a process whose descriptors are all taken, so its
/// `accept` fails with EMFILE. Clients run in the parent (their sockets are the parent's),
/// and nothing else in the child opens descriptors, so every count is exact. Prints
/// `ADDR <addr>`, frees its descriptors when a line comes on stdin (then prints `FREED`),
/// exits at its end.
#[test]
fn child_serves_out_of_descriptors() {
    use std::io::BufRead;
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
    let s = ServerBuilder::new()
        .register_inline(EchoServiceServer::new(Echo))
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let mut fill = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        fill.push(f);
        assert!(fill.len() < 1000, "the fd limit is not in force");
    }
    println!("ADDR {}", s.local_addr());
    let mut lines = std::io::stdin().lock().lines();
    let _ = lines.next(); // the parent's cue: free the descriptors
    drop(fill);
    println!("FREED");
    let _ = lines.next(); // end of stdin: the parent is done
    println!("FD_REFUSED {}", s.stats().fd_refused);
}

/// Kills the child if the test ends early.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One call; a call refused by the client's own reconnect backoff never reached the
/// server, so wait the backoff out (bounded) and call again.
fn call_past_backoff(
    c: &proto::echo::EchoServiceClient<rpc::Channel>,
    req: &EchoRequest,
) -> Result<EchoReply, rpc::CallError> {
    // Generous: only a server that leaves the newcomer waiting reaches it.
    let mut r = c.echo(req, std::time::Duration::from_secs(10));
    for _ in 0..200 {
        match &r {
            Err(rpc::CallError::Unavailable { reason, .. }) if reason.contains("backing off") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
                r = c.echo(req, std::time::Duration::from_secs(10));
            }
            _ => break,
        }
    }
    r
}

/// Issue 7, item 6: at the fd limit a new client gets `Unavailable` (its connection is
/// accepted and closed at once through a reserved descriptor) instead of `Timeout`, and
/// so does the next one (the server took its spare back); once descriptors are free a
/// client is served.
#[test]
fn a_server_out_of_descriptors_refuses_new_clients_at_once() {
    use std::io::{BufRead, Write};
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_serves_out_of_descriptors", "--nocapture"])
        .env(EMFILE_CHILD, "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut out = std::io::BufReader::new(child.0.stdout.take().unwrap());
    let mut seen = String::new();
    let addr: std::net::SocketAddr = loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the child ended without an address: {seen}"
        );
        if let Some(a) = line.trim().strip_prefix("ADDR ") {
            break a.parse().unwrap();
        }
        seen.push_str(&line);
    };
    let rt = rpc::ClientRuntime::new(rpc::ClientConfig::default()).unwrap();
    let req = EchoRequest {
        payload: "x".into(),
    };
    for n in ["first", "second"] {
        // A new channel each time: a new connection the server must accept.
        let c = proto::echo::EchoServiceClient::new(rt.channel(addr));
        let r = call_past_backoff(&c, &req);
        assert!(
            matches!(&r, Err(rpc::CallError::Unavailable { reason, .. }) if !reason.contains("backing off")),
            "the {n} new client at the fd limit got {:?}, not Unavailable from the server \
             (the second fails if the server did not take its spare descriptor back)",
            r.map(|_| ())
        );
    }
    let mut stdin = child.0.stdin.take().unwrap();
    writeln!(stdin, "free").unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        "FREED",
        "the child did not free its descriptors"
    );
    let c = proto::echo::EchoServiceClient::new(rt.channel(addr));
    let r = call_past_backoff(&c, &req);
    assert!(r.is_ok(), "not served once descriptors were free: {r:?}");
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let refused: u64 = rest
        .lines()
        .find_map(|l| l.strip_prefix("FD_REFUSED "))
        .unwrap_or_else(|| panic!("the child printed no FD_REFUSED: {rest}"))
        .trim()
        .parse()
        .unwrap();
    assert!(refused >= 2, "the server counted {refused} refusals, not 2");
    assert!(
        child.0.wait().unwrap().success(),
        "the child failed: {rest}"
    );
}
