//! Where the cluster is: a list of `(node id, address)` pairs.
//!
//! The servers' leader hints name a node by its Raft id, so the Clerk needs each endpoint's
//! id to follow a hint. Two spellings are accepted, comma- or whitespace-separated:
//!
//! - `1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003`: ids given explicitly (the form
//!   the `kvserver --peers` flag and the `kvcluster` endpoints file use);
//! - `127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003`: ids 1, 2, 3, … by position.
//!
//! An address may be a host name (`localhost:7001`); it is resolved once, here.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::Error;

/// One server of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The node's Raft id (what a `leader_hint` names). Never 0: 0 means "unknown leader".
    pub id: u64,
    /// Where its `KvService` listens.
    pub addr: SocketAddr,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "n{} {}", self.id, self.addr)
    }
}

/// The environment variable that `kvcli` reads the endpoints from when `--endpoints` is not
/// given.
pub const ENDPOINTS_ENV: &str = "RAFTKV_ENDPOINTS";

/// Parses an endpoint list (see the module docs for the two forms).
///
/// # Errors
/// [`Error::InvalidEndpoints`] for an empty list, an address that does not parse or
/// resolve, an id of 0, a repeated id, or a mix of the two forms.
pub fn parse_endpoints(text: &str) -> Result<Vec<Endpoint>, Error> {
    let items: Vec<&str> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return Err(Error::InvalidEndpoints(format!(
            "no endpoints in {text:?}; expected e.g. 1=127.0.0.1:7001,2=127.0.0.1:7002"
        )));
    }
    let explicit = items[0].contains('=');
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let (id, addr) = match (explicit, item.split_once('=')) {
            (true, Some((id, addr))) => {
                let id: u64 = id.trim().parse().map_err(|_| {
                    Error::InvalidEndpoints(format!(
                        "{item:?}: the node id before '=' must be a positive integer"
                    ))
                })?;
                (id, addr)
            }
            (false, None) => (i as u64 + 1, *item),
            _ => {
                return Err(Error::InvalidEndpoints(format!(
                    "{text:?} mixes ID=ADDR and bare ADDR items; use one form for all"
                )));
            }
        };
        if id == 0 {
            return Err(Error::InvalidEndpoints(format!(
                "{item:?}: node id 0 is reserved (it means \"no leader known\")"
            )));
        }
        if out.iter().any(|e: &Endpoint| e.id == id) {
            return Err(Error::InvalidEndpoints(format!(
                "node id {id} appears twice in {text:?}"
            )));
        }
        let addr = resolve(addr)?;
        out.push(Endpoint { id, addr });
    }
    Ok(out)
}

fn resolve(addr: &str) -> Result<SocketAddr, Error> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    let mut it = addr.to_socket_addrs().map_err(|e| {
        Error::InvalidEndpoints(format!(
            "{addr:?} is not HOST:PORT or does not resolve: {e}"
        ))
    })?;
    it.next()
        .ok_or_else(|| Error::InvalidEndpoints(format!("{addr:?} resolves to no address")))
}

/// Formats endpoints in the explicit form that [`parse_endpoints`] reads back.
pub fn format_endpoints(eps: &[Endpoint]) -> String {
    eps.iter()
        .map(|e| format!("{}={}", e.id, e.addr))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_and_positional_forms() {
        let e = parse_endpoints("2=127.0.0.1:7002, 5=127.0.0.1:7005").unwrap();
        assert_eq!(e[0].id, 2);
        assert_eq!(e[1].id, 5);
        assert_eq!(e[1].addr, "127.0.0.1:7005".parse().unwrap());
        let e = parse_endpoints("127.0.0.1:1 127.0.0.1:2\n127.0.0.1:3").unwrap();
        assert_eq!(e.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(
            parse_endpoints(&format_endpoints(&e)).unwrap(),
            e,
            "format_endpoints reads back"
        );
    }

    #[test]
    fn bad_lists_say_what_is_wrong() {
        for (text, needle) in [
            ("", "no endpoints"),
            ("1=127.0.0.1:1,127.0.0.1:2", "mixes"),
            ("0=127.0.0.1:1", "reserved"),
            ("1=127.0.0.1:1,1=127.0.0.1:2", "twice"),
            ("x=127.0.0.1:1", "positive integer"),
            ("127.0.0.1", "HOST:PORT"),
        ] {
            let err = parse_endpoints(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
