//! Dropping a server and a client runtime joins every thread they started (a test binary
//! of its own, so that no other test's threads are counted).

use std::time::Duration;

use bytes::Bytes;
use proto::echo::{EchoReply, EchoRequest, EchoService, EchoServiceClient, EchoServiceServer};
use rpc::{ClientConfig, ClientRuntime, Reply, ServerBuilder};

struct Echo;

impl EchoService for Echo {
    fn echo(&self, req: EchoRequest, reply: Reply<EchoReply>) {
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
}
