//! Dropping a server and a client runtime joins every thread they started (a test binary
//! of its own, so that no other test's threads are counted).

use std::time::Duration;

use bytes::Bytes;
use proto::echo::{EchoReply, EchoRequest, EchoService, EchoServiceClient, EchoServiceServer};
use rpc::{ClientConfig, ClientRuntime, Reply, ServerBuilder};

struct Echo;

impl EchoService for Echo {
    fn echo(&self, req: EchoRequest, reply: Reply<EchoReply>) {
        if &req.payload[..] == b"stall" {
            std::thread::sleep(Duration::from_millis(300));
        }
        reply.send(EchoReply {
            payload: req.payload,
        });
    }
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn drop_joins_every_thread() {
    let before = threads();
    {
        let server = ServerBuilder::new()
            .register(EchoServiceServer::new(Echo))
            .bind("127.0.0.1:0".parse().unwrap())
            .unwrap();
        let rt = ClientRuntime::new(ClientConfig::default()).unwrap();
        let c = EchoServiceClient::new(rt.channel(server.local_addr()));
        let r = c.echo(
            &EchoRequest {
                payload: Bytes::from_static(b"x"),
            },
            Duration::from_secs(5),
        );
        assert_eq!(&r.unwrap().payload[..], b"x");
        assert!(threads() > before);
        drop(c);
        drop(rt);
        drop(server);
    }
    assert_eq!(threads(), before);
    // Again with calls in flight on both sides when everything is dropped.
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let server = ServerBuilder::new()
            .config(rpc::ServerConfig {
                workers: 9,
                ..Default::default()
            })
            .register(EchoServiceServer::new(Echo))
            .bind("127.0.0.1:0".parse().unwrap())
            .unwrap();
        let rt = ClientRuntime::new(ClientConfig::default()).unwrap();
        let c = EchoServiceClient::new(rt.channel(server.local_addr()));
        for _ in 0..8 {
            let tx = tx.clone();
            c.echo_async(
                &EchoRequest {
                    payload: Bytes::from_static(b"stall"),
                },
                Duration::from_secs(10),
                move |r| tx.send(r.is_ok()).unwrap(),
            );
        }
        // Answered by the ninth worker once the eight stalls are running.
        let r = c.echo(
            &EchoRequest {
                payload: Bytes::from_static(b"x"),
            },
            Duration::from_secs(10),
        );
        assert_eq!(&r.unwrap().payload[..], b"x");
        drop(c);
        drop(rt);
        drop(server);
    }
    assert_eq!(threads(), before);
    drop(tx);
    // Every call ended (one way or another) by the time the runtime was gone.
    assert_eq!(rx.try_iter().count(), 8);
}
