//! End-to-end tests over real sockets on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use proto::echo::{EchoReply, EchoRequest, EchoService, EchoServiceClient, EchoServiceServer};
use proto::rpc::ErrorHeader;
use rpc::frame::{self, FrameKind};
use rpc::{CallError, Caller, ClientConfig, ClientRuntime, Reply, Server, ServerBuilder, Status};

const T: Duration = Duration::from_secs(10);

/// Echoes, except for a few magic payloads that misbehave on purpose.
struct TestEcho;

impl EchoService for TestEcho {
    fn echo(&self, req: EchoRequest, reply: Reply<EchoReply>) {
        match &req.payload[..] {
            b"panic" => panic!("test handler panics on purpose"),
            b"stall" => {
                std::thread::sleep(Duration::from_millis(400));
                reply.send(EchoReply {
                    payload: req.payload,
                })
            }
            b"drop" => drop(reply),
            b"later" => {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    reply.send(EchoReply {
                        payload: Bytes::from_static(b"answered later"),
                    })
                });
            }
            _ => reply.send(EchoReply {
                payload: req.payload,
            }),
        }
    }
}

fn server(inline: bool) -> Server {
    let b = ServerBuilder::new();
    let b = if inline {
        b.register_inline(EchoServiceServer::new(TestEcho))
    } else {
        b.register(EchoServiceServer::new(TestEcho))
    };
    b.bind("127.0.0.1:0".parse().unwrap()).unwrap()
}

fn runtime() -> ClientRuntime {
    ClientRuntime::new(ClientConfig::default()).unwrap()
}

fn req(p: &[u8]) -> EchoRequest {
    EchoRequest {
        payload: Bytes::copy_from_slice(p),
    }
}

#[test]
fn echo_round_trip_inline_and_pool() {
    let rt = runtime();
    for inline in [true, false] {
        let s = server(inline);
        let c = EchoServiceClient::new(rt.channel(s.local_addr()));
        let r = c.echo(&req(b"hello"), T).unwrap();
        assert_eq!(&r.payload[..], b"hello");
        // Empty message: a zero-length body.
        assert_eq!(c.echo(&req(b""), T).unwrap().payload.len(), 0);
    }
}

#[test]
fn ten_thousand_calls_from_sixteen_threads_match_their_replies() {
    let rt = runtime();
    let s = server(false);
    let ch = rt.channel(s.local_addr());
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let c = EchoServiceClient::new(ch.clone());
            std::thread::spawn(move || {
                for i in 0..625 {
                    let p = format!("thread {t} call {i}");
                    let r = c.echo(&req(p.as_bytes()), T).unwrap();
                    assert_eq!(r.payload, p.as_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn async_calls_complete_once_each() {
    let rt = runtime();
    let s = server(true);
    let c = EchoServiceClient::new(rt.channel(s.local_addr()));
    let (tx, rx) = crossbeam_channel::unbounded();
    for i in 0..1000u32 {
        let tx = tx.clone();
        c.echo_async(&req(&i.to_be_bytes()), T, move |r| {
            tx.send((i, r)).unwrap();
        });
    }
    let mut seen = vec![false; 1000];
    for _ in 0..1000 {
        let (i, r) = rx.recv_timeout(T).unwrap();
        assert_eq!(&r.unwrap().payload[..], &i.to_be_bytes());
        assert!(!seen[i as usize]);
        seen[i as usize] = true;
    }
}

/// Encodes one echo request frame.
fn echo_frame(id: u64, p: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode_request(
        &mut out,
        id,
        EchoServiceServer::<TestEcho>::NAME,
        "Echo",
        &req(p),
    );
    out
}

/// Reads frames from a raw socket until `n` arrived.
fn read_frames(s: &mut TcpStream, n: usize) -> Vec<(FrameKind, u64, Vec<u8>, Vec<u8>)> {
    s.set_read_timeout(Some(T)).unwrap();
    let mut buf = Vec::new();
    let mut got = Vec::new();
    let mut chunk = [0u8; 65536];
    while got.len() < n {
        let k = s.read(&mut chunk).unwrap();
        assert!(k > 0, "server closed the connection");
        buf.extend_from_slice(&chunk[..k]);
        while let Some((f, used)) = frame::decode(&buf, 1 << 30).unwrap() {
            got.push((f.kind, f.request_id, f.envelope.to_vec(), f.body.to_vec()));
            buf.drain(..used);
        }
    }
    got
}

#[test]
fn frames_split_byte_by_byte_and_coalesced() {
    let s = server(true);
    let mut sock = TcpStream::connect(s.local_addr()).unwrap();
    sock.set_nodelay(true).unwrap();
    // One byte per write.
    for b in echo_frame(1, b"split") {
        sock.write_all(&[b]).unwrap();
    }
    let r = read_frames(&mut sock, 1);
    assert_eq!((r[0].0, r[0].1), (FrameKind::Response, 1));
    assert_eq!(
        EchoReply::decode(&r[0].3[..]).unwrap().payload,
        &b"split"[..]
    );
    // 500 frames in one write, the last one split across two writes.
    let mut all = Vec::new();
    for i in 0..500u64 {
        all.extend_from_slice(&echo_frame(100 + i, &i.to_be_bytes()));
    }
    let cut = all.len() - 7;
    sock.write_all(&all[..cut]).unwrap();
    // The server has read up to the cut (it holds the 7-byte-short frame) before the rest.
    while s.stats().partial_frame_bytes == 0 {
        std::thread::yield_now();
    }
    sock.write_all(&all[cut..]).unwrap();
    let r = read_frames(&mut sock, 500);
    for (i, f) in r.iter().enumerate() {
        assert_eq!(f.1, 100 + i as u64);
        assert_eq!(
            EchoReply::decode(&f.3[..]).unwrap().payload,
            &(i as u64).to_be_bytes()[..]
        );
    }
}

#[test]
fn sixteen_mib_message() {
    let rt = runtime();
    let s = server(false);
    let c = EchoServiceClient::new(rt.channel(s.local_addr()));
    let big: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
    let r = c.echo(&req(&big), T).unwrap();
    assert!(r.payload == big);
    // And the connection still works for small calls.
    assert_eq!(&c.echo(&req(b"x"), T).unwrap().payload[..], b"x");
}

#[test]
fn client_reconnects_after_server_restart() {
    let rt = runtime();
    let s = server(true);
    let addr = s.local_addr();
    let c = EchoServiceClient::new(rt.channel(addr));
    c.echo(&req(b"one"), T).unwrap();
    drop(s);
    // With the server gone, calls fail (Unavailable, not a Timeout after T).
    for _ in 0..5 {
        match c.echo(&req(b"down"), T) {
            Err(CallError::Unavailable { .. }) => {}
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    let s2 = ServerBuilder::new()
        .register_inline(EchoServiceServer::new(TestEcho))
        .bind(addr)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match c.echo(&req(b"two"), T) {
            Ok(r) => {
                assert_eq!(&r.payload[..], b"two");
                break;
            }
            Err(CallError::Unavailable { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("no reconnect: {e}"),
        }
    }
    for _ in 0..10 {
        c.echo(&req(b"three"), T).unwrap();
    }
    drop(s2);
}

#[test]
fn stalled_handler_times_out_at_the_deadline() {
    let rt = runtime();
    let s = server(false);
    let c = EchoServiceClient::new(rt.channel(s.local_addr()));
    // Blocking call, on a thread so that a deadline that never fires fails the test
    // instead of hanging it.
    let (tx, rx) = crossbeam_channel::bounded(1);
    {
        let c = c.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let r = c.echo(&req(b"stall"), Duration::from_millis(100));
            tx.send((r, t0.elapsed())).unwrap();
        });
    }
    let (r, took) = rx.recv_timeout(T).expect("the deadline never fired");
    // Timeout, not the reply (due at 400 ms), and never before the deadline.
    assert!(matches!(r, Err(CallError::Timeout)), "{r:?}");
    assert!(took >= Duration::from_millis(100), "{took:?}");
    // Non-blocking call: the I/O thread times it out.
    let (tx, rx) = crossbeam_channel::bounded(1);
    let t0 = Instant::now();
    c.echo_async(&req(b"stall"), Duration::from_millis(100), move |r| {
        tx.send((r, t0.elapsed())).unwrap();
    });
    let (r, took) = rx.recv_timeout(T).expect("the deadline never fired");
    assert!(matches!(r, Err(CallError::Timeout)), "{r:?}");
    assert!(took >= Duration::from_millis(100), "{took:?}");
    // Other calls go on meanwhile (the pool has more workers).
    assert_eq!(&c.echo(&req(b"ok"), T).unwrap().payload[..], b"ok");
}

#[test]
fn unknown_service_and_method_are_named_in_the_error() {
    let rt = runtime();
    let s = server(true);
    let ch = rt.channel(s.local_addr());
    match ch.call("raftkv.echo.EchoService", "Nope", &req(b""), T) {
        Err(CallError::Remote { status, message }) => {
            assert_eq!(status, Status::UnknownMethod);
            assert!(message.contains("Nope"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    match ch.call("no.Such", "Echo", &req(b""), T) {
        Err(CallError::Remote { status, message }) => {
            assert_eq!(status, Status::UnknownService);
            assert!(message.contains("no.Such"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // An undecodable body (valid frame) gets a Decode error; the connection stays usable.
    let bad = RawBody(vec![0x0A, 0x7F]);
    match ch.call("raftkv.echo.EchoService", "Echo", &bad, T) {
        Err(CallError::Remote { status, .. }) => assert_eq!(status, Status::Decode),
        other => panic!("{other:?}"),
    }
    EchoServiceClient::new(ch)
        .echo(&req(b"still fine"), T)
        .unwrap();
}

/// A body of raw bytes, to send what no message would encode to.
struct RawBody(Vec<u8>);

impl proto::service::Body for RawBody {
    fn body_len(&self) -> usize {
        self.0.len()
    }
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

#[test]
fn handler_panic_and_dropped_reply_answer_with_errors() {
    let rt = runtime();
    for inline in [true, false] {
        let s = server(inline);
        let c = EchoServiceClient::new(rt.channel(s.local_addr()));
        match c.echo(&req(b"panic"), T) {
            Err(CallError::Remote { status, .. }) => assert_eq!(status, Status::HandlerPanic),
            other => panic!("{other:?}"),
        }
        match c.echo(&req(b"drop"), T) {
            Err(CallError::Remote { status, .. }) => assert_eq!(status, Status::Unavailable),
            other => panic!("{other:?}"),
        }
        // A handle answered later from another thread.
        assert_eq!(
            &c.echo(&req(b"later"), T).unwrap().payload[..],
            b"answered later"
        );
        assert_eq!(&c.echo(&req(b"after"), T).unwrap().payload[..], b"after");
    }
}

/// Runs `bad` while a well-behaved client calls in a loop. `bad` gets a `served` function
/// to call while its bad connection is in its bad state: it returns once the good client
/// has completed 10 more calls meanwhile, and must be called at least once. The good client
/// must also be served afterwards.
fn while_served(s: &Server, bad: impl FnOnce(SocketAddr, &dyn Fn())) {
    let rt = runtime();
    let c = EchoServiceClient::new(rt.channel(s.local_addr()));
    c.echo(&req(b"warm"), T).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (served_tx, served) = crossbeam_channel::unbounded::<()>();
    let good = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = c
                    .echo(&req(b"good"), T)
                    .expect("good client must be served");
                assert_eq!(&r.payload[..], b"good");
                let _ = served_tx.send(());
            }
        })
    };
    let checks = AtomicUsize::new(0);
    let progress = || {
        checks.fetch_add(1, Ordering::Relaxed);
        while served.try_recv().is_ok() {} // calls completed before now do not count
        for _ in 0..10 {
            // The good client's own calls have a deadline of T: a failure ends its thread
            // (and the channel) before this does.
            served
                .recv_timeout(T + T)
                .expect("good client stalled or failed");
        }
    };
    bad(s.local_addr(), &progress);
    assert!(
        checks.load(Ordering::Relaxed) > 0,
        "the bad input never checked the good client"
    );
    // And still afterwards.
    progress();
    stop.store(true, Ordering::Relaxed);
    good.join().unwrap();
}

/// Asserts the server closes `sock` (after answering nothing more).
fn expect_closed(sock: &mut TcpStream) {
    sock.set_read_timeout(Some(T)).unwrap();
    let mut b = [0u8; 1024];
    loop {
        match sock.read(&mut b) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("expected close, got {e}"),
        }
    }
}

#[test]
fn garbage_bytes_close_only_that_connection() {
    let s = server(true);
    while_served(&s, |addr, served| {
        let mut sock = TcpStream::connect(addr).unwrap();
        let mut x: u64 = 0x243F_6A88_85A3_08D3;
        let garbage: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = sock.write_all(&garbage);
        served();
        expect_closed(&mut sock);
    });
}

#[test]
fn four_gib_length_prefix_closes_before_allocating() {
    let s = server(true);
    while_served(&s, |addr, served| {
        let mut sock = TcpStream::connect(addr).unwrap();
        sock.write_all(&[0xFF, 0xFF, 0xFF, 0xFF, b'R', b'K', 1, 1])
            .unwrap();
        served();
        expect_closed(&mut sock);
    });
}

#[test]
fn truncated_frame_then_close() {
    let s = server(true);
    while_served(&s, |addr, served| {
        let mut sock = TcpStream::connect(addr).unwrap();
        let f = echo_frame(1, &[7; 1000]);
        sock.write_all(&f[..f.len() / 2]).unwrap();
        // The server holds half a frame for this connection while serving the other.
        served();
        drop(sock);
    });
}

#[test]
fn wrong_magic_closes_the_connection() {
    let s = server(true);
    while_served(&s, |addr, served| {
        let mut sock = TcpStream::connect(addr).unwrap();
        let mut f = echo_frame(1, b"x");
        f[4] = b'X';
        sock.write_all(&f).unwrap();
        served();
        expect_closed(&mut sock);
    });
}

#[test]
fn undecodable_body_gets_an_error_reply() {
    let s = server(true);
    while_served(&s, |addr, served| {
        let mut sock = TcpStream::connect(addr).unwrap();
        let mut f = Vec::new();
        frame::encode_request(
            &mut f,
            5,
            "raftkv.echo.EchoService",
            "Echo",
            &RawBody(vec![0xFF; 9]),
        );
        // And a header envelope that is not a RequestHeader.
        let mut g = echo_frame(6, b"x");
        g[20] = 0xFF; // first envelope byte: a bad key
        f.extend_from_slice(&g);
        sock.write_all(&f).unwrap();
        served();
        let r = read_frames(&mut sock, 2);
        for (want_id, got) in [5, 6].iter().zip(&r) {
            assert_eq!((got.0, got.1), (FrameKind::Error, *want_id));
            let h = ErrorHeader::decode(&got.2[..]).unwrap();
            assert_eq!(h.status, Status::Decode as i32);
        }
    });
}

#[test]
fn a_thousand_connections_opened_and_dropped() {
    let s = server(true);
    while_served(&s, |addr, served| {
        let mut open = Vec::new();
        for i in 0..1000 {
            let mut sock = TcpStream::connect(addr).unwrap();
            if i % 2 == 0 {
                let _ = sock.write_all(&echo_frame(1, b"and gone"));
            }
            if i % 100 == 99 {
                // Stay under the listen backlog (128), or dropped SYNs retransmit after 1 s.
                std::thread::sleep(Duration::from_millis(1));
            }
            if i % 10 == 0 {
                open.push(sock); // dropped later, with the good client served meanwhile
            }
            if i == 500 {
                served();
            }
        }
        served();
        drop(open);
    });
}

#[test]
fn graceful_shutdown_fails_new_calls_fast() {
    let rt = runtime();
    let s = ServerBuilder::new()
        .register(EchoServiceServer::new(TestEcho))
        .register_inline(proto::kv::KvServiceServer::new(FakeKv))
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let ch = rt.channel(s.local_addr());
    let c = EchoServiceClient::new(ch.clone());
    // A call in flight during shutdown finishes (grace of 1 s > 400 ms stall).
    let (tx, rx) = crossbeam_channel::bounded(1);
    c.echo_async(&req(b"stall"), T, move |r| tx.send(r).unwrap());
    // Answered inline after the loop has read (and dispatched) the stall: it is in flight.
    proto::kv::KvServiceClient::new(ch)
        .get(&Default::default(), T)
        .unwrap();
    drop(s);
    assert_eq!(&rx.recv_timeout(T).unwrap().unwrap().payload[..], b"stall");
    assert!(matches!(
        c.echo(&req(b"x"), T),
        Err(CallError::Unavailable { .. })
    ));
}

#[test]
fn connection_limit_closes_only_the_connections_over_it() {
    // No idle timeout: a close can only come from the limit.
    let s = ServerBuilder::new()
        .config(rpc::ServerConfig {
            idle_timeout: None,
            max_connections: 2,
            ..Default::default()
        })
        .register_inline(EchoServiceServer::new(TestEcho))
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let mut a = TcpStream::connect(s.local_addr()).unwrap();
    let mut b = TcpStream::connect(s.local_addr()).unwrap();
    // Both accepted (each answered) before the third connects.
    a.write_all(&echo_frame(1, b"a")).unwrap();
    b.write_all(&echo_frame(2, b"b")).unwrap();
    assert_eq!(read_frames(&mut a, 1)[0].1, 1);
    assert_eq!(read_frames(&mut b, 1)[0].1, 2);
    let mut c = TcpStream::connect(s.local_addr()).unwrap();
    expect_closed(&mut c); // over the limit
    // The two under it are still served.
    a.write_all(&echo_frame(3, b"a")).unwrap();
    b.write_all(&echo_frame(4, b"b")).unwrap();
    assert_eq!(read_frames(&mut a, 1)[0].1, 3);
    assert_eq!(read_frames(&mut b, 1)[0].1, 4);
    // Once one leaves, a new one is served.
    drop(a);
    let t0 = Instant::now();
    loop {
        let mut d = TcpStream::connect(s.local_addr()).unwrap();
        d.set_read_timeout(Some(T)).unwrap();
        d.write_all(&echo_frame(5, b"d")).unwrap();
        let mut buf = [0u8; 64];
        match d.read(&mut buf) {
            Ok(n) if n > 0 => break,
            _ => assert!(t0.elapsed() < T, "a freed slot is never reused"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn idle_timeout_closes_idle_connections_but_not_busy_ones() {
    let s = ServerBuilder::new()
        .config(rpc::ServerConfig {
            idle_timeout: Some(Duration::from_millis(100)),
            ..Default::default()
        })
        .register(EchoServiceServer::new(TestEcho))
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let mut idle = TcpStream::connect(s.local_addr()).unwrap();
    // A call that takes 400 ms: four idle timeouts with nothing on the wire.
    let mut busy = TcpStream::connect(s.local_addr()).unwrap();
    busy.write_all(&echo_frame(1, b"stall")).unwrap();
    let r = read_frames(&mut busy, 1);
    assert_eq!((r[0].0, r[0].1), (FrameKind::Response, 1));
    // Each within T (the read timeout of `expect_closed`), not at the default 10 minutes.
    expect_closed(&mut idle);
    expect_closed(&mut busy); // idle now that it is answered
}

#[test]
fn blocking_call_from_a_completion_fails_instead_of_deadlocking() {
    let rt = runtime();
    let s = server(true);
    let c = EchoServiceClient::new(rt.channel(s.local_addr()));
    let (tx, rx) = crossbeam_channel::bounded(1);
    let c2 = c.clone();
    c.echo_async(&req(b"outer"), T, move |r| {
        r.unwrap();
        tx.send(c2.echo(&req(b"inner"), T)).unwrap();
    });
    match rx.recv_timeout(T).unwrap() {
        Err(CallError::Unavailable { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn calls_to_a_dead_address_fail_fast_and_back_off() {
    let rt = runtime();
    // Bind and drop to get a port nobody listens on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let c = EchoServiceClient::new(rt.channel(addr));
    // Unavailable at once (refused, then backing off), not a Timeout after T.
    for _ in 0..50 {
        assert!(matches!(
            c.echo(&req(b"x"), T),
            Err(CallError::Unavailable { .. })
        ));
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    c.echo_async(&req(b"x"), T, move |r| tx.send(r).unwrap());
    assert!(matches!(
        rx.recv_timeout(T).unwrap(),
        Err(CallError::Unavailable { .. })
    ));
}

#[test]
fn in_flight_bound_gives_overloaded_and_every_ending_frees_its_place() {
    let rt = ClientRuntime::new(ClientConfig {
        max_in_flight: 2,
        ..Default::default()
    })
    .unwrap();
    let s = server(false);
    let c = EchoServiceClient::new(rt.channel(s.local_addr()));
    c.echo(&req(b"connect"), T).unwrap();
    let async_call = |p: &'static [u8], timeout: Duration| {
        let (tx, rx) = crossbeam_channel::bounded(1);
        c.echo_async(&req(p), timeout, move |r| tx.send(r).unwrap());
        rx
    };
    // Two stalls fill the bound; the third fails at once, without being sent.
    let a = async_call(b"stall", T);
    let b = async_call(b"stall", T);
    let over = async_call(b"over", T);
    assert!(matches!(
        over.recv_timeout(T).unwrap(),
        Err(CallError::Overloaded)
    ));
    assert!(a.recv_timeout(T).unwrap().is_ok());
    assert!(b.recv_timeout(T).unwrap().is_ok());
    // Calls ended by their deadline give their places back (the server still runs them).
    let a = async_call(b"stall", Duration::from_millis(50));
    let b = async_call(b"stall", Duration::from_millis(50));
    assert!(matches!(
        a.recv_timeout(T).unwrap(),
        Err(CallError::Timeout)
    ));
    assert!(matches!(
        b.recv_timeout(T).unwrap(),
        Err(CallError::Timeout)
    ));
    for _ in 0..2 {
        assert!(matches!(
            c.echo(&req(b"stall"), Duration::from_millis(50)),
            Err(CallError::Timeout)
        ));
    }
    let a = async_call(b"one", T);
    let b = async_call(b"two", T);
    assert_eq!(&a.recv_timeout(T).unwrap().unwrap().payload[..], b"one");
    assert_eq!(&b.recv_timeout(T).unwrap().unwrap().payload[..], b"two");
    // Calls in flight while the server shuts down end one way or another (answered in
    // the grace, refused, or failed with the connection), never hang.
    let a = async_call(b"stall", T);
    let b = async_call(b"stall", T);
    drop(s);
    for r in [a, b] {
        let _ = r.recv_timeout(T).unwrap();
    }
}

#[test]
fn frames_over_the_limit_are_refused_with_errors() {
    let s = ServerBuilder::new()
        .config(rpc::ServerConfig {
            max_frame: 4096,
            ..Default::default()
        })
        .register_inline(EchoServiceServer::new(TestEcho))
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let rt = ClientRuntime::new(ClientConfig {
        max_frame: 4096,
        ..Default::default()
    })
    .unwrap();
    let c = EchoServiceClient::new(rt.channel(s.local_addr()));
    match c.echo(&req(&[1; 5000]), T) {
        Err(CallError::Remote { status, .. }) => assert_eq!(status, Status::ResourceExhausted),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.echo(&req(&[2; 3000]), T).unwrap().payload.len(), 3000);
    // A client with a larger limit: the server closes that connection, the call fails.
    let rt2 = runtime();
    let c2 = EchoServiceClient::new(rt2.channel(s.local_addr()));
    assert!(matches!(
        c2.echo(&req(&[3; 5000]), T),
        Err(CallError::Unavailable { .. })
    ));
    assert_eq!(c.echo(&req(b"still"), T).unwrap().payload.len(), 5);
}

/// A KV service that answers every Get with the key and every write with OK.
struct FakeKv;

impl proto::kv::KvService for FakeKv {
    fn get(&self, req: proto::kv::GetRequest, reply: Reply<proto::kv::GetReply>) {
        reply.send(proto::kv::GetReply {
            value: req.key,
            ..Default::default()
        });
    }
    fn put(&self, _: proto::kv::PutAppendRequest, reply: Reply<proto::kv::WriteReply>) {
        reply.send(Default::default());
    }
    fn append(&self, _: proto::kv::PutAppendRequest, reply: Reply<proto::kv::WriteReply>) {
        reply.send(Default::default());
    }
    fn delete(&self, _: proto::kv::DeleteRequest, reply: Reply<proto::kv::WriteReply>) {
        // Answered later from another thread, as the KV server does after apply.
        std::thread::spawn(move || reply.send(Default::default()));
    }
    fn status(&self, _: proto::kv::StatusRequest, reply: Reply<proto::kv::StatusReply>) {
        reply.send(Default::default());
    }
}

#[test]
fn several_services_share_one_port_and_one_connection() {
    let s = ServerBuilder::new()
        .register_inline(EchoServiceServer::new(TestEcho))
        .register(proto::kv::KvServiceServer::new(FakeKv))
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let rt = runtime();
    let ch = rt.channel(s.local_addr());
    let echo = EchoServiceClient::new(ch.clone());
    let kv = proto::kv::KvServiceClient::new(ch);
    for i in 0..100u32 {
        let key = Bytes::from(i.to_string());
        let r = kv
            .get(
                &proto::kv::GetRequest {
                    key: key.clone(),
                    ..Default::default()
                },
                T,
            )
            .unwrap();
        assert_eq!(r.value, key);
        assert_eq!(&echo.echo(&req(&key), T).unwrap().payload[..], &key[..]);
    }
    kv.delete(&Default::default(), T).unwrap();
}

/// A fake server that reads one request and answers with `answer`'s bytes, then closes.
fn fake_server(
    answer: impl Fn(u64) -> Vec<u8> + Send + 'static,
) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let f = read_frames(&mut s, 1);
        let _ = s.write_all(&answer(f[0].1));
        std::thread::sleep(Duration::from_millis(50));
    });
    (addr, h)
}

#[test]
fn bad_bytes_from_a_server_fail_the_call_not_the_client() {
    let rt = runtime();
    let cases: Vec<Box<dyn Fn(u64) -> Vec<u8> + Send>> = vec![
        Box::new(|_| b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()),
        Box::new(|id| {
            let mut f = vec![0xFF, 0xFF, 0xFF, 0xF0, b'R', b'K', 1, 2];
            f.extend_from_slice(&id.to_be_bytes());
            f
        }),
        Box::new(|_| Vec::new()), // close without answering
    ];
    for answer in cases {
        let (addr, h) = fake_server(answer);
        let c = EchoServiceClient::new(rt.channel(addr));
        // Unavailable when the bad bytes arrive, not a Timeout after T.
        match c.echo(&req(b"x"), T) {
            Err(CallError::Unavailable { .. }) => {}
            other => panic!("{other:?}"),
        }
        h.join().unwrap();
    }
    // A reply that does not decode as the method's output.
    let (addr, h) = fake_server(|id| {
        let mut f = Vec::new();
        frame::encode_response(&mut f, id, &RawBody(vec![0x0A, 0x7F]));
        f
    });
    let c = EchoServiceClient::new(rt.channel(addr));
    assert!(matches!(c.echo(&req(b"x"), T), Err(CallError::Decode(_))));
    h.join().unwrap();
}

#[test]
fn async_timeout_fires_for_a_call_on_a_connection_opened_during_a_completion() {
    let rt = runtime();
    let s = server(true);
    let c = EchoServiceClient::new(rt.channel(s.local_addr()));
    // Accepts connections (in its backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mute = EchoServiceClient::new(rt.channel(silent.local_addr().unwrap()));
    // Keep the I/O thread busy in a completion ...
    let (started_tx, started_rx) = crossbeam_channel::bounded(1);
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
    c.echo_async(&req(b"busy"), T, move |r| {
        r.unwrap();
        started_tx.send(()).unwrap();
        let _ = go_rx.recv_timeout(T);
    });
    started_rx.recv_timeout(T).unwrap();
    // ... while a non-blocking call opens a new connection, and let its deadline pass.
    let (tx, rx) = crossbeam_channel::bounded(1);
    mute.echo_async(
        &req(b"never answered"),
        Duration::from_millis(50),
        move |r| tx.send(r).unwrap(),
    );
    std::thread::sleep(Duration::from_millis(100));
    go_tx.send(()).unwrap();
    let r = rx
        .recv_timeout(T)
        .expect("the call never completed: its deadline was lost");
    assert!(matches!(r, Err(CallError::Timeout)), "{r:?}");
}

/// Writes `first`, runs `between`, pauses so the peer reads `first` on its own, then
/// writes `second`.
fn write_in_two(sock: &mut TcpStream, first: &[u8], between: &dyn Fn(), second: &[u8]) {
    sock.set_nodelay(true).unwrap();
    sock.write_all(first).unwrap();
    between();
    std::thread::sleep(Duration::from_millis(100));
    let _ = sock.write_all(second);
}

#[test]
fn a_bad_header_is_refused_before_the_announced_length_arrives() {
    let s = server(true);
    while_served(&s, |addr, served| {
        // A length prefix of 1 MiB (under the limit), then a wrong magic.
        let mut sock = TcpStream::connect(addr).unwrap();
        write_in_two(&mut sock, &[0, 0x10, 0, 0], served, b"XK\x01\x01");
        expect_closed(&mut sock);
        // A valid header up to the id, then an envelope length past the frame.
        let mut sock = TcpStream::connect(addr).unwrap();
        let mut head = vec![0, 0x10, 0, 0, b'R', b'K', 1, 1];
        head.extend_from_slice(&7u64.to_be_bytes());
        write_in_two(&mut sock, &head, served, &[0xFF, 0xFF, 0xFF, 0xFF]);
        expect_closed(&mut sock);
    });
}

#[test]
fn a_bad_reply_header_fails_the_call_before_the_announced_length_arrives() {
    let rt = runtime();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let f = read_frames(&mut s, 1);
        let mut head = vec![0, 0x10, 0, 0, b'R', b'K', 1, 2];
        head.extend_from_slice(&f[0].1.to_be_bytes());
        write_in_two(&mut s, &head, &|| {}, &[0xFF, 0xFF, 0xFF, 0xFF]);
        // Hold the connection open: only the bad header may end the call.
        let mut b = [0u8; 16];
        s.set_read_timeout(Some(T)).unwrap();
        let _ = s.read(&mut b);
    });
    let c = EchoServiceClient::new(rt.channel(addr));
    match c.echo(&req(b"x"), Duration::from_secs(5)) {
        Err(CallError::Unavailable { .. }) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    h.join().unwrap();
}

#[test]
fn a_client_that_half_closes_still_gets_its_whole_reply() {
    let s = server(true);
    let mut sock = TcpStream::connect(s.local_addr()).unwrap();
    let big = vec![9u8; 16 << 20];
    sock.write_all(&echo_frame(1, &big)).unwrap();
    sock.shutdown(std::net::Shutdown::Write).unwrap();
    let r = read_frames(&mut sock, 1);
    assert_eq!((r[0].0, r[0].1), (FrameKind::Response, 1));
    assert!(EchoReply::decode(&r[0].3[..]).unwrap().payload == big);
    expect_closed(&mut sock);
}

/// An echo whose "gate" payload holds the thread it runs on (the event loop, when
/// registered inline) until the test lets it go.
struct GateEcho {
    started: crossbeam_channel::Sender<()>,
    go: crossbeam_channel::Receiver<()>,
}

impl EchoService for GateEcho {
    fn echo(&self, req: EchoRequest, reply: Reply<EchoReply>) {
        if &req.payload[..] == b"gate" {
            self.started.send(()).unwrap();
            let _ = self.go.recv_timeout(T);
        }
        reply.send(EchoReply {
            payload: req.payload,
        });
    }
}

/// An inline gated echo server, with the sender that reports a held gate and the one that
/// releases it.
fn gate_server() -> (
    Server,
    crossbeam_channel::Receiver<()>,
    crossbeam_channel::Sender<()>,
) {
    let (started_tx, started_rx) = crossbeam_channel::unbounded();
    let (go_tx, go_rx) = crossbeam_channel::unbounded();
    let s = ServerBuilder::new()
        .register_inline(EchoServiceServer::new(GateEcho {
            started: started_tx,
            go: go_rx,
        }))
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    (s, started_rx, go_tx)
}

#[test]
fn a_request_and_its_end_of_stream_in_one_readiness_event_are_both_seen() {
    let (s, started, go) = gate_server();
    // Hold the event loop in an inline handler ...
    let mut holder = TcpStream::connect(s.local_addr()).unwrap();
    holder.write_all(&echo_frame(1, b"gate")).unwrap();
    started.recv_timeout(T).unwrap();
    // ... while another client sends a request and shuts down its sending side, so the
    // loop finds both the bytes and the end of stream in one event.
    let mut sock = TcpStream::connect(s.local_addr()).unwrap();
    sock.write_all(&echo_frame(2, b"last words")).unwrap();
    sock.shutdown(std::net::Shutdown::Write).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    go.send(()).unwrap();
    let r = read_frames(&mut sock, 1);
    assert_eq!((r[0].0, r[0].1), (FrameKind::Response, 2));
    // The server saw the end of stream and closes (its idle timeout is 10 minutes).
    expect_closed(&mut sock);
    assert_eq!(read_frames(&mut holder, 1)[0].1, 1);
}

#[test]
fn a_reply_and_the_close_after_it_in_one_readiness_event_fail_the_other_calls_fast() {
    let rt = runtime();
    // A server that reads two requests and, when told, answers the first and closes.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (got_tx, got_rx) = crossbeam_channel::bounded(1);
    let (answer_tx, answer_rx) = crossbeam_channel::bounded::<()>(1);
    let fake = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let f = read_frames(&mut s, 2);
        got_tx.send(()).unwrap();
        answer_rx.recv_timeout(T).unwrap();
        let mut out = Vec::new();
        frame::encode_response(&mut out, f[0].1, &EchoReply::default());
        s.write_all(&out).unwrap();
    });
    let c = EchoServiceClient::new(rt.channel(addr));
    let (tx, rx) = crossbeam_channel::unbounded();
    for p in [&b"first"[..], b"second"] {
        let tx = tx.clone();
        c.echo_async(&req(p), T, move |r| tx.send((p, r)).unwrap());
    }
    got_rx.recv_timeout(T).unwrap();
    // Hold the client's I/O thread in a completion while the reply and the close arrive.
    let s = server(true);
    let other = EchoServiceClient::new(rt.channel(s.local_addr()));
    let (held_tx, held_rx) = crossbeam_channel::bounded(1);
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
    other.echo_async(&req(b"x"), T, move |_| {
        held_tx.send(()).unwrap();
        let _ = go_rx.recv_timeout(T);
    });
    held_rx.recv_timeout(T).unwrap();
    answer_tx.send(()).unwrap();
    fake.join().unwrap(); // answered and closed
    std::thread::sleep(Duration::from_millis(50));
    go_tx.send(()).unwrap();
    let mut got: Vec<_> = (0..2).map(|_| rx.recv_timeout(T).unwrap()).collect();
    got.sort_by_key(|(p, _)| *p);
    assert!(got[0].1.is_ok(), "{:?}", got[0]);
    // Unavailable when the close is seen, not a Timeout after T.
    assert!(
        matches!(got[1].1, Err(CallError::Unavailable { .. })),
        "{:?}",
        got[1]
    );
}

#[test]
fn shutdown_does_not_wait_for_calls_still_queued_after_the_grace() {
    let s = ServerBuilder::new()
        .config(rpc::ServerConfig {
            workers: 1,
            shutdown_grace: Duration::from_millis(200),
            ..Default::default()
        })
        .register(EchoServiceServer::new(TestEcho))
        .register_inline(proto::kv::KvServiceServer::new(FakeKv))
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let rt = runtime();
    let ch = rt.channel(s.local_addr());
    let c = EchoServiceClient::new(ch.clone());
    let (tx, rx) = crossbeam_channel::unbounded();
    // 30 calls of 400 ms each for one worker: 12 s of queued work.
    for _ in 0..30 {
        let tx = tx.clone();
        c.echo_async(&req(b"stall"), T, move |r| tx.send(r).unwrap());
    }
    // Answered inline once the loop has read (and queued) every call before it.
    proto::kv::KvServiceClient::new(ch)
        .get(&Default::default(), T)
        .unwrap();
    drop(s);
    // Had the shutdown waited for the queue, all 30 would have run and been answered.
    let answered = (0..30)
        .filter(|_| rx.recv_timeout(T).expect("a call never ended").is_ok())
        .count();
    assert!(answered < 30, "shutdown waited for every queued call");
}

#[test]
fn error_replies_do_not_echo_huge_names_back() {
    let s = server(true);
    let mut sock = TcpStream::connect(s.local_addr()).unwrap();
    // Control characters print as \u{1}: six bytes of error text for each byte sent.
    let name = "\u{1}".repeat(1 << 20);
    let mut f = Vec::new();
    frame::encode_request(&mut f, 1, &name, "Echo", &req(b""));
    frame::encode_request(
        &mut f,
        2,
        EchoServiceServer::<TestEcho>::NAME,
        &name,
        &req(b""),
    );
    sock.write_all(&f).unwrap();
    let r = read_frames(&mut sock, 2);
    for (got, (id, status)) in r
        .iter()
        .zip([(1, Status::UnknownService), (2, Status::UnknownMethod)])
    {
        assert_eq!((got.0, got.1), (FrameKind::Error, id));
        let h = ErrorHeader::decode(&got.2[..]).unwrap();
        assert_eq!(h.status, status as i32);
        assert!(
            h.message.len() < 1024,
            "{} bytes of error text",
            h.message.len()
        );
        assert!(h.message.contains("\\u{1}"), "{}", &h.message[..100]);
    }
}

#[test]
fn dropping_the_client_fails_its_calls_in_flight_at_once() {
    let (s, started, go) = gate_server();
    let rt = runtime();
    let c = EchoServiceClient::new(rt.channel(s.local_addr()));
    let (tx, rx) = crossbeam_channel::unbounded();
    for _ in 0..3 {
        let tx = tx.clone();
        c.echo_async(&req(b"gate"), T, move |r| tx.send(r).unwrap());
    }
    started.recv_timeout(T).unwrap(); // in flight: the server holds the first one
    drop(c);
    drop(rt);
    // Unavailable at once, not a Timeout after T.
    for _ in 0..3 {
        let r = rx.recv_timeout(T).unwrap();
        assert!(matches!(r, Err(CallError::Unavailable { .. })), "{r:?}");
    }
    for _ in 0..3 {
        let _ = go.send(());
    }
}

#[test]
fn an_unbounded_timeout_is_accepted() {
    let rt = runtime();
    let s = server(true);
    let c = EchoServiceClient::new(rt.channel(s.local_addr()));
    assert_eq!(
        &c.echo(&req(b"a"), Duration::MAX).unwrap().payload[..],
        b"a"
    );
    let (tx, rx) = crossbeam_channel::bounded(1);
    c.echo_async(&req(b"b"), Duration::MAX, move |r| tx.send(r).unwrap());
    assert_eq!(&rx.recv_timeout(T).unwrap().unwrap().payload[..], b"b");
    // And the far deadline does not hide a near one.
    let (tx, rx) = crossbeam_channel::bounded(1);
    let s2 = server(false);
    let c2 = EchoServiceClient::new(rt.channel(s2.local_addr()));
    c2.echo_async(&req(b"stall"), Duration::MAX, |_| {});
    c2.echo_async(&req(b"stall"), Duration::from_millis(50), move |r| {
        tx.send(r).unwrap()
    });
    assert!(matches!(
        rx.recv_timeout(T).unwrap(),
        Err(CallError::Timeout)
    ));
}

#[test]
fn unbounded_idle_timeout_and_grace_are_accepted() {
    let s = ServerBuilder::new()
        .config(rpc::ServerConfig {
            idle_timeout: Some(Duration::MAX),
            shutdown_grace: Duration::MAX,
            ..Default::default()
        })
        .register_inline(EchoServiceServer::new(TestEcho))
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let rt = runtime();
    let c = EchoServiceClient::new(rt.channel(s.local_addr()));
    assert_eq!(&c.echo(&req(b"a"), T).unwrap().payload[..], b"a");
    // Nothing in flight: no grace needed. On a thread, so that waiting for the unbounded
    // grace fails the test instead of hanging it.
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        drop(s);
        tx.send(()).unwrap();
    });
    rx.recv_timeout(T)
        .expect("shutdown waited for an unbounded grace");
}

#[test]
fn requests_cut_at_random_points_are_all_answered() {
    for (inline, seed) in [(true, 1u64), (true, 2), (false, 3)] {
        let s = server(inline);
        let mut sock = TcpStream::connect(s.local_addr()).unwrap();
        sock.set_nodelay(true).unwrap();
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut rand = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        // Small frames and large ones (read in place), back to back.
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for id in 0..150u64 {
            let len = match rand(10) {
                0 | 1 => 16_000 + rand(60_000) as usize,
                _ => rand(200) as usize,
            };
            let p: Vec<u8> = (0..len).map(|i| (i as u64 * 7 + id) as u8).collect();
            stream.extend_from_slice(&echo_frame(id, &p));
            want.push(p);
        }
        let reader = {
            let mut sock = sock.try_clone().unwrap();
            std::thread::spawn(move || read_frames(&mut sock, 150))
        };
        let mut pos = 0;
        while pos < stream.len() {
            let n = match rand(4) {
                0 => 1 + rand(3),
                1 => 1 + rand(40),
                2 => 1 + rand(5_000),
                _ => 1 + rand(100_000),
            } as usize;
            let end = (pos + n).min(stream.len());
            sock.write_all(&stream[pos..end]).unwrap();
            pos = end;
            if rand(8) == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let mut got = reader.join().unwrap();
        if !inline {
            got.sort_by_key(|f| f.1); // the pool answers in any order
        }
        for (id, (f, p)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                (f.0, f.1),
                (FrameKind::Response, id as u64),
                "inline {inline} seed {seed}"
            );
            assert!(
                EchoReply::decode(&f.3[..]).unwrap().payload == p[..],
                "frame {id}"
            );
        }
    }
}

#[test]
fn a_panicking_completion_does_not_take_the_client_down() {
    let rt = runtime();
    let s = server(true);
    let c = EchoServiceClient::new(rt.channel(s.local_addr()));
    let (tx, rx) = crossbeam_channel::bounded(1);
    c.echo_async(&req(b"boom"), T, move |_| {
        tx.send(()).unwrap();
        panic!("completion panics on purpose");
    });
    rx.recv_timeout(T).unwrap();
    // Blocking and non-blocking calls on the same runtime still complete.
    assert_eq!(&c.echo(&req(b"a"), T).unwrap().payload[..], b"a");
    let (tx, rx) = crossbeam_channel::bounded(1);
    c.echo_async(&req(b"b"), T, move |r| tx.send(r).unwrap());
    assert_eq!(&rx.recv_timeout(T).unwrap().unwrap().payload[..], b"b");
}

#[test]
fn without_polling_before_sleep_calls_still_complete() {
    let s = ServerBuilder::new()
        .config(rpc::ServerConfig {
            spin: Duration::ZERO,
            ..Default::default()
        })
        .register_inline(EchoServiceServer::new(TestEcho))
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let rt = ClientRuntime::new(ClientConfig {
        spin: Duration::ZERO,
        ..Default::default()
    })
    .unwrap();
    let c = EchoServiceClient::new(rt.channel(s.local_addr()));
    for i in 0..100u32 {
        let p = i.to_string();
        assert_eq!(c.echo(&req(p.as_bytes()), T).unwrap().payload, p.as_bytes());
    }
    assert_eq!(
        &c.echo(&req(b"later"), T).unwrap().payload[..],
        b"answered later"
    );
    let (tx, rx) = crossbeam_channel::bounded(1);
    c.echo_async(&req(b"async"), T, move |r| tx.send(r).unwrap());
    assert_eq!(&rx.recv_timeout(T).unwrap().unwrap().payload[..], b"async");
}

/// Issue 7, item 7: valid requests followed by bad bytes in the same write (so, on
/// loopback, the same read) are answered before the connection closes, on the inline
/// path and on the pool.
#[test]
fn a_framing_error_after_valid_requests_closes_only_after_their_replies() {
    for inline in [true, false] {
        let s = server(inline);
        while_served(&s, |addr, served| {
            let mut sock = TcpStream::connect(addr).unwrap();
            let mut bytes = echo_frame(1, b"one");
            bytes.extend_from_slice(&echo_frame(2, b"two"));
            let mut bad = echo_frame(3, b"x");
            bad[4] = b'X'; // wrong magic: framing is lost here
            bytes.extend_from_slice(&bad);
            sock.write_all(&bytes).unwrap();
            let r = read_frames(&mut sock, 2);
            let mut ids: Vec<u64> = r.iter().map(|f| f.1).collect();
            ids.sort();
            assert_eq!(ids, [1, 2], "inline={inline}");
            served();
            expect_closed(&mut sock);
        });
    }
}

/// A 64 KiB echo request.
fn big_echo(id: u64) -> Vec<u8> {
    echo_frame(id, &[0x5A; 64 * 1024])
}

/// Issue 7, item 1: a client that pipelines 64 KiB echoes and never reads its replies
/// makes the server stop reading it once its reply queue passes the cap, instead of
/// queueing without bound; a second client is served meanwhile. Observed through the
/// server's counters, not memory or time.
#[test]
fn a_client_that_never_reads_is_paused_at_the_write_queue_cap() {
    const CAP: usize = 1 << 20;
    let s = ServerBuilder::new()
        .config(rpc::ServerConfig {
            max_write_queue: CAP,
            ..Default::default()
        })
        .register_inline(EchoServiceServer::new(TestEcho))
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    while_served(&s, |addr, served| {
        let sock = TcpStream::connect(addr).unwrap();
        let mut w = sock.try_clone().unwrap();
        // 64 MiB of requests: far more than the cap plus every kernel buffer on the way.
        let writer = std::thread::spawn(move || {
            for id in 0..1024 {
                if w.write_all(&big_echo(id)).is_err() {
                    return false;
                }
            }
            true
        });
        let t0 = Instant::now();
        while s.stats().read_paused == 0 && !writer.is_finished() {
            assert!(t0.elapsed() < T, "never paused: {:?}", s.stats());
            std::thread::sleep(Duration::from_millis(1));
        }
        let st = s.stats();
        assert_eq!(st.read_paused, 1, "the flood was read to its end: {st:?}");
        // One read's worth of replies (at most 64 KiB of requests) may land past the cap.
        assert!(
            st.max_queued_reply_bytes <= CAP + 256 * 1024,
            "queue passed the cap: {st:?}"
        );
        served();
        // Paused, not closed; the flooder's writes are blocked by TCP itself.
        assert!(!writer.is_finished());
        sock.shutdown(std::net::Shutdown::Both).unwrap();
        writer.join().unwrap();
    });
}

/// Issue 7, item 1: a peer that half-closes and then never reads is closed by the idle
/// timeout even though replies are still queued for it.
#[test]
fn a_peer_that_reads_nothing_is_closed_at_the_idle_timeout_even_with_replies_queued() {
    let s = ServerBuilder::new()
        .config(rpc::ServerConfig {
            idle_timeout: Some(Duration::from_millis(200)),
            max_write_queue: 64 << 20,
            ..Default::default()
        })
        .register_inline(EchoServiceServer::new(TestEcho))
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    let mut sock = TcpStream::connect(s.local_addr()).unwrap();
    // 32 MiB of requests: more replies than the kernel buffers on the way take, less than
    // the cap, so the connection is not paused. On a loaded machine the writes can take
    // longer than the idle timeout, and the server may close the connection (what this
    // test is about) before the last of them.
    for id in 0..512 {
        if sock.write_all(&big_echo(id)).is_err() {
            break;
        }
    }
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let t0 = Instant::now();
    while s.stats().max_queued_reply_bytes == 0 {
        assert!(t0.elapsed() < T, "no reply queued: {:?}", s.stats());
        std::thread::sleep(Duration::from_millis(1));
    }
    // Never read: the server must give the connection and its queue up.
    while s.stats().connections > 0 {
        assert!(
            t0.elapsed() < T,
            "a stuck queue is kept forever: {:?}",
            s.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(s.stats().queued_reply_bytes, 0);
    drop(sock);
}

/// Issue 7, item 2: a client that pipelines 64 KiB echoes and reads its replies as fast
/// as it can gets a bounded share of each turn of the event loop (the server's counter of
/// the most bytes read from one connection in one turn stays within the budget plus one
/// read), and a second client is served meanwhile.
#[test]
fn a_pipelining_client_gets_a_bounded_share_of_each_turn() {
    let s = server(true);
    while_served(&s, |addr, served| {
        let sock = TcpStream::connect(addr).unwrap();
        let mut w = sock.try_clone().unwrap();
        let mut r = sock.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            // Bounded: 4096 x 64 KiB = 256 MiB at most, or until the socket is shut down.
            for id in 0..4096 {
                if w.write_all(&big_echo(id)).is_err() {
                    return;
                }
            }
        });
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
        });
        // The flood is on (the server has read a few MiB of it) while the good client is
        // checked.
        let t0 = Instant::now();
        while s.stats().max_read_per_turn < 2 * 1024 * 1024 && !writer.is_finished() {
            assert!(t0.elapsed() < T, "flood never got going: {:?}", s.stats());
            served();
        }
        served();
        sock.shutdown(std::net::Shutdown::Both).unwrap();
        writer.join().unwrap();
        reader.join().unwrap();
    });
    let st = s.stats();
    assert!(
        st.max_read_per_turn <= rpc::READ_BUDGET + 128 * 1024,
        "one connection took more than its share of a turn: {st:?}"
    );
}

/// Issue 7, item 3: headers announcing 64 MiB frames, followed by a few KB each, cost the
/// server what was sent (buffers grow as bytes arrive), not the announced size; a second
/// client is served meanwhile, and a frame that does complete is still answered.
#[test]
fn announced_sizes_are_not_allocated_before_the_bytes_arrive() {
    const CONNS: usize = 62;
    const SENT: usize = 3000;
    let s = server(true);
    while_served(&s, |addr, served| {
        let big = echo_frame(1, &vec![7u8; 64 * 1024 * 1024 - 64]);
        let mut socks = Vec::new();
        for _ in 0..CONNS {
            let mut sock = TcpStream::connect(addr).unwrap();
            sock.write_all(&big[..SENT]).unwrap();
            socks.push(sock);
        }
        let t0 = Instant::now();
        while s.stats().partial_frame_bytes < CONNS * SENT {
            assert!(
                t0.elapsed() < T,
                "partial frames never arrived: {:?}",
                s.stats()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        served();
        let st = s.stats();
        // Each buffer is at most twice what arrived, or 16 KiB: 62 x 16 KiB, not 4 GiB.
        assert!(
            st.partial_frame_bytes <= CONNS * 16 * 1024,
            "announced sizes were allocated up front: {st:?}"
        );
        // One of them completes its 64 MiB frame and is answered.
        let mut first = socks.swap_remove(0);
        first.write_all(&big[SENT..]).unwrap();
        let r = read_frames(&mut first, 1);
        assert_eq!((r[0].0, r[0].1), (FrameKind::Response, 1));
    });
}

/// Issue 7, item 4 (in part): the client's in-flight cap counts queued bytes as well as
/// calls: 400 calls of 1 MiB to a peer that never reads are not all queued; the ones over
/// the byte cap fail at once with `Overloaded`.
#[test]
fn requests_to_a_peer_that_never_reads_stop_at_the_queued_byte_cap() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let rt = ClientRuntime::new(ClientConfig {
        max_queued_bytes: 4 << 20,
        ..Default::default()
    })
    .unwrap();
    let c = EchoServiceClient::new(rt.channel(addr));
    // Connect (the first call), then accept and never read.
    c.echo_async(&req(b"first"), T, |_| {});
    let peer = l.accept().unwrap();
    let payload = vec![1u8; 1 << 20];
    let overloaded = Arc::new(AtomicUsize::new(0));
    for _ in 0..400 {
        let o = overloaded.clone();
        c.echo_async(&req(&payload), T, move |r| {
            if matches!(r, Err(CallError::Overloaded)) {
                o.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    // The kernel takes a few MiB at most; 4 MiB more are queued; the rest are refused.
    let n = overloaded.load(Ordering::Relaxed);
    assert!(
        n >= 300,
        "only {n} of 400 calls refused: the queue grows without bound"
    );
    drop(peer);
}

/// Issue 7, item 5: one peer streaming valid replies with ids nobody waits for, as fast as
/// it can, does not hold the client's I/O thread: calls on another channel of the same
/// runtime complete (blocking ones, whose replies the I/O thread must read, and
/// non-blocking ones, whose deadlines it keeps).
#[test]
fn a_peer_streaming_unknown_replies_does_not_starve_the_other_channels() {
    let rt = runtime();
    let s = server(true);
    let healthy = EchoServiceClient::new(rt.channel(s.local_addr()));
    healthy.echo(&req(b"warm"), T).unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hostile_addr = l.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let streamed = Arc::new(AtomicUsize::new(0));
    let hostile = {
        let (stop, streamed) = (stop.clone(), streamed.clone());
        std::thread::spawn(move || {
            let (mut sock, _) = l.accept().unwrap();
            // 1 MiB of 20-byte replies to ids the client never used.
            let mut burst = Vec::new();
            let mut id = 1u64 << 40;
            while burst.len() < 1 << 20 {
                frame::encode_response(&mut burst, id, &EchoReply::default());
                id += 1;
            }
            // Bounded: 16 GiB at most, or until the test is done. Writes time out so that
            // the stop is seen even when the client has closed with a zero window (its
            // orphaned socket can hold the writer for a minute or more).
            sock.set_write_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            for _ in 0..16 * 1024 {
                let mut off = 0;
                while off < burst.len() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    match sock.write(&burst[off..]) {
                        Ok(0) => return,
                        Ok(n) => off += n,
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock
                                    | std::io::ErrorKind::TimedOut
                                    | std::io::ErrorKind::Interrupted
                            ) => {}
                        Err(_) => return,
                    }
                }
                streamed.fetch_add(burst.len(), Ordering::Relaxed);
            }
        })
    };
    let bad = EchoServiceClient::new(rt.channel(hostile_addr));
    bad.echo_async(&req(b"connect"), T, |_| {});
    // The stream is on: the client has taken 64 MiB of it (more than any socket buffers).
    while streamed.load(Ordering::Relaxed) < 64 << 20 {
        assert!(!hostile.is_finished(), "the hostile peer stopped early");
        std::thread::sleep(Duration::from_millis(1));
    }
    for i in 0..50u32 {
        let p = i.to_string();
        let r = healthy
            .echo(&req(p.as_bytes()), T)
            .expect("a healthy channel was starved by a streaming peer");
        assert_eq!(r.payload, p.as_bytes());
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    for _ in 0..20 {
        let tx = tx.clone();
        healthy.echo_async(&req(b"async"), T, move |r| tx.send(r).unwrap());
    }
    for _ in 0..20 {
        let r = rx.recv_timeout(T + T).unwrap();
        assert_eq!(&r.expect("async call starved").payload[..], b"async");
    }
    assert!(
        !hostile.is_finished(),
        "the stream ended before the healthy calls were checked"
    );
    let st = rt.stats();
    assert!(
        st.max_read_per_turn > 0 && st.max_read_per_turn <= rpc::READ_BUDGET + 64 * 1024,
        "one connection took more than its share of a turn: {st:?}"
    );
    stop.store(true, Ordering::Relaxed);
    drop(bad);
    hostile.join().unwrap();
}

/// Issue 7, item 4: 400 calls of 1 MiB with a 20 ms deadline to a peer that accepts and
/// never reads (16 at a time, each one that ends starting the next, so the byte cap never
/// refuses one). Every call ends with `Timeout`; the bytes of calls that ended before
/// being written leave the queue, so the client's queued bytes fall back to 0; and the
/// connection that took nothing for a deadline is reset: later calls reconnect, even
/// while an earlier call (one with a 5 s deadline) still waits on the old connection.
#[test]
fn timed_out_calls_to_a_peer_that_never_reads_leave_nothing_queued() {
    const CALLS: usize = 400;
    const AT_ONCE: usize = 16;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // Small receive buffers on the accepted sockets: the kernel holds little, the
    // client's own queue fills.
    let small: libc::c_int = 64 * 1024;
    // SAFETY: a valid socket and a pointer to a c_int of the given length.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&l),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&small as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    let addr = l.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let acceptor = {
        let (stop, accepted) = (stop.clone(), accepted.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            // Bounded: one connection per call at most.
            for _ in 0..CALLS + 1 {
                let (sock, _) = l.accept().unwrap();
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                accepted.fetch_add(1, Ordering::Relaxed);
                held.push(sock); // never read
            }
        })
    };
    let rt = runtime();
    let c = EchoServiceClient::new(rt.channel(addr));
    let payload = Bytes::from(vec![1u8; 1 << 20]);
    let started = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = crossbeam_channel::unbounded();
    // Keeps a call waiting on the first connection while the others come and go.
    let (long_tx, long_rx) = crossbeam_channel::bounded(1);
    c.echo_async(&req(b"long"), Duration::from_secs(5), move |r| {
        long_tx.send(r).unwrap()
    });
    type Echo = EchoServiceClient<rpc::Channel>;
    fn chain(
        c: Echo,
        payload: Bytes,
        started: Arc<AtomicUsize>,
        tx: crossbeam_channel::Sender<Result<EchoReply, CallError>>,
    ) {
        if started.fetch_add(1, Ordering::Relaxed) >= CALLS {
            return;
        }
        let next = (c.clone(), payload.clone(), started.clone(), tx.clone());
        c.echo_async(
            &EchoRequest { payload },
            Duration::from_millis(20),
            move |r| {
                tx.send(r).unwrap();
                chain(next.0, next.1, next.2, next.3);
            },
        );
    }
    for _ in 0..AT_ONCE {
        chain(c.clone(), payload.clone(), started.clone(), tx.clone());
    }
    let mut timeouts = 0;
    let mut other = Vec::new();
    for _ in 0..CALLS {
        match rx.recv_timeout(T).expect("a call never ended") {
            Err(CallError::Timeout) => timeouts += 1,
            r => other.push(r),
        }
    }
    assert_eq!(timeouts, CALLS, "not all Timeout: {other:?}");
    assert!(
        accepted.load(Ordering::Relaxed) >= 2,
        "the stuck connection was not reset while a call still waited on it"
    );
    let long = long_rx.recv_timeout(T).expect("the long call never ended");
    assert!(matches!(long, Err(CallError::Timeout)), "{long:?}");
    let t0 = Instant::now();
    while rt.stats().queued_bytes != 0 {
        assert!(
            t0.elapsed() < T,
            "bytes of ended calls stay queued: {:?}",
            rt.stats()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = TcpStream::connect(addr);
    acceptor.join().unwrap();
}

/// Issue 7, item 3 (the cap across connections): twelve connections each send 3 MiB of a
/// 4 MiB request and stop, 36 MiB of incomplete requests against a cap of 8 MiB. The
/// server never holds much more than the cap: it closes the connections whose frames
/// began last, the first one can still complete its request and is answered, and a
/// second client is served meanwhile.
#[test]
fn bytes_held_for_incomplete_requests_are_capped_across_connections() {
    const CAP: usize = 8 << 20;
    const FRAME: usize = 4 << 20;
    const SENT: usize = 3 << 20;
    const CONNS: usize = 12;
    // The first buffer of a large frame is allocated before the cap is checked again.
    const SLACK: usize = 256 * 1024;
    let s = ServerBuilder::new()
        .config(rpc::ServerConfig {
            max_partial_bytes: CAP,
            ..Default::default()
        })
        .register_inline(EchoServiceServer::new(TestEcho))
        .bind("127.0.0.1:0".parse().unwrap())
        .unwrap();
    while_served(&s, |addr, served| {
        let big = Arc::new(echo_frame(1, &vec![3u8; FRAME - 64]));
        // The first frame has begun (and been read) before the others start.
        let mut first = TcpStream::connect(addr).unwrap();
        first.write_all(&big[..SENT]).unwrap();
        let t0 = Instant::now();
        while s.stats().partial_frame_bytes < SENT {
            assert!(t0.elapsed() < T, "the first frame never arrived");
            std::thread::sleep(Duration::from_millis(1));
        }
        let others: Vec<_> = (1..CONNS)
            .map(|_| {
                let big = big.clone();
                std::thread::spawn(move || {
                    let mut sock = TcpStream::connect(addr).unwrap();
                    let _ = sock.write_all(&big[..SENT]); // fails once closed
                    sock
                })
            })
            .collect();
        // The cap is reached and acted on (without a cap: passed).
        loop {
            let st = s.stats();
            if st.partial_cap_closes > 0 || st.max_partial_frame_bytes > CAP + SLACK {
                break;
            }
            assert!(t0.elapsed() < T, "the abuse never reached the cap: {st:?}");
            std::thread::sleep(Duration::from_millis(1));
        }
        served();
        let others: Vec<TcpStream> = others.into_iter().map(|h| h.join().unwrap()).collect();
        served();
        // The frame that began first completes and is answered.
        first.write_all(&big[SENT..]).unwrap();
        let r = read_frames(&mut first, 1);
        assert_eq!((r[0].0, r[0].1), (FrameKind::Response, 1));
        let st = s.stats();
        assert!(
            st.max_partial_frame_bytes <= CAP + SLACK,
            "held more than the cap for incomplete requests: {st:?}"
        );
        assert!(st.partial_cap_closes > 0, "{st:?}");
        drop(others);
    });
}
