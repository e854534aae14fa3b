//! Generates the message types from `proto/*.proto` with prost-build, and for every
//! `service` block a server trait, a dispatcher and a client stub (see `src/service.rs`).
//!
//! protoc comes from the `protoc-bin-vendored` crate, so a fresh machine needs only cargo.

use std::fmt::Write as _;
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/rpc.proto",
    "proto/echo.proto",
    "proto/raft.proto",
    "proto/kv.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    let protoc: PathBuf = protoc_bin_vendored::protoc_bin_path()
        .map_err(|e| format!("protoc-bin-vendored has no protoc for this platform: {e}"))?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    // `bytes` fields as `bytes::Bytes`: a body decoded from a frame shares its buffer.
    config.bytes(["."]);
    config.service_generator(Box::new(ServiceGen));
    config.compile_protos(PROTOS, &["proto/"])?;
    Ok(())
}

/// Emits, per service, the server trait `Foo`, the dispatcher `FooServer<T>` and the client
/// stub `FooClient<C>`, written against the traits in `crate::service`.
struct ServiceGen;

fn doc(out: &mut String, indent: &str, lines: &[String]) {
    for l in lines {
        let _ = writeln!(
            out,
            "{indent}///{}",
            if l.is_empty() {
                String::new()
            } else {
                format!(" {}", l.trim_start())
            }
        );
    }
}

impl prost_build::ServiceGenerator for ServiceGen {
    fn generate(&mut self, service: prost_build::Service, buf: &mut String) {
        let name = &service.name;
        let full = if service.package.is_empty() {
            service.proto_name.clone()
        } else {
            format!("{}.{}", service.package, service.proto_name)
        };
        let s = &mut String::new();
        // Server trait.
        doc(s, "", &service.comments.leading);
        if !service.comments.leading.is_empty() {
            let _ = writeln!(s, "///");
        }
        let _ = writeln!(
            s,
            "/// Server side of `{full}`: implement it, wrap it in [`{name}Server`], register that."
        );
        let _ = writeln!(s, "pub trait {name}: Send + Sync + 'static {{");
        for m in &service.methods {
            doc(s, "    ", &m.comments.leading);
            // A method whose comment has a line starting "Optional for a server" gets a
            // default body answering UNKNOWN_METHOD, so that servers written before it was
            // added (test fakes, older services) still compile and answer clearly.
            let optional = m
                .comments
                .leading
                .iter()
                .flat_map(|c| c.lines())
                .any(|l| l.trim_start().starts_with("Optional for a server"));
            if optional {
                let _ = writeln!(
                    s,
                    "    fn {}(&self, request: {}, reply: crate::service::Reply<{}>) {{\n        \
                     let _ = request;\n        \
                     reply.fail(crate::service::Status::UnknownMethod, \"this server does not serve {}\");\n    }}",
                    m.name, m.input_type, m.output_type, m.proto_name
                );
            } else {
                let _ = writeln!(
                    s,
                    "    fn {}(&self, request: {}, reply: crate::service::Reply<{}>);",
                    m.name, m.input_type, m.output_type
                );
            }
        }
        let _ = writeln!(s, "}}\n");

        // Dispatcher.
        let _ = writeln!(
            s,
            "/// Dispatches `{full}` calls to a [`{name}`] handler; register it on a server."
        );
        let _ = writeln!(s, "pub struct {name}Server<T> {{ inner: T }}\n");
        let _ = writeln!(s, "impl<T: {name}> {name}Server<T> {{");
        let _ = writeln!(
            s,
            "    /// Full service name, as on the wire.\n    pub const NAME: &'static str = \"{full}\";"
        );
        let _ = writeln!(
            s,
            "    /// Wraps a handler.\n    pub fn new(inner: T) -> Self {{ {name}Server {{ inner }} }}"
        );
        let _ = writeln!(
            s,
            "    /// The wrapped handler.\n    pub fn get_ref(&self) -> &T {{ &self.inner }}"
        );
        let _ = writeln!(s, "}}\n");
        let _ = writeln!(s, "impl<T> ::core::fmt::Debug for {name}Server<T> {{");
        let _ = writeln!(
            s,
            "    fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {{ f.write_str(\"{name}Server\") }}\n}}\n"
        );
        let _ = writeln!(
            s,
            "impl<T: {name}> crate::service::Service for {name}Server<T> {{"
        );
        let _ = writeln!(s, "    fn name(&self) -> &'static str {{ \"{full}\" }}");
        let names: Vec<String> = service
            .methods
            .iter()
            .map(|m| format!("\"{}\"", m.proto_name))
            .collect();
        let _ = writeln!(
            s,
            "    fn methods(&self) -> &'static [&'static str] {{ &[{}] }}",
            names.join(", ")
        );
        let _ = writeln!(
            s,
            "    fn call(&self, method: usize, body: ::bytes::Bytes, reply: crate::service::RawReply) {{"
        );
        let _ = writeln!(s, "        match method {{");
        for (i, m) in service.methods.iter().enumerate() {
            let _ = writeln!(
                s,
                "            {i} => match <{} as ::prost::Message>::decode(body) {{",
                m.input_type
            );
            let _ = writeln!(
                s,
                "                Ok(request) => self.inner.{}(request, crate::service::Reply::new(reply)),",
                m.name
            );
            let _ = writeln!(
                s,
                "                Err(e) => reply.fail(crate::service::Status::Decode, &format!(\"{full}/{}: request does not decode as {}: {{e}}\")),",
                m.proto_name, m.input_proto_type
            );
            let _ = writeln!(s, "            }},");
        }
        let _ = writeln!(
            s,
            "            other => reply.fail(crate::service::Status::UnknownMethod, &format!(\"{full} has no method number {{other}}\")),"
        );
        let _ = writeln!(s, "        }}\n    }}\n}}\n");

        // Client stub.
        let _ = writeln!(
            s,
            "/// Typed client stub for `{full}` over any [`crate::service::Caller`] (e.g. `rpc::Channel`)."
        );
        let _ = writeln!(
            s,
            "#[derive(Debug, Clone)]\npub struct {name}Client<C> {{ caller: C }}\n"
        );
        let _ = writeln!(s, "impl<C: crate::service::Caller> {name}Client<C> {{");
        let _ = writeln!(
            s,
            "    /// Full service name, as on the wire.\n    pub const NAME: &'static str = \"{full}\";"
        );
        let _ = writeln!(
            s,
            "    /// A stub calling through `caller`.\n    pub fn new(caller: C) -> Self {{ {name}Client {{ caller }} }}"
        );
        let _ = writeln!(
            s,
            "    /// The underlying caller.\n    pub fn caller(&self) -> &C {{ &self.caller }}"
        );
        for m in &service.methods {
            doc(s, "    ", &m.comments.leading);
            if !m.comments.leading.is_empty() {
                let _ = writeln!(s, "    ///");
            }
            let _ = writeln!(
                s,
                "    /// Blocking `{}`: waits at most `timeout` for the reply.",
                m.proto_name
            );
            let _ = writeln!(
                s,
                "    pub fn {}(&self, request: &{}, timeout: ::std::time::Duration) -> ::core::result::Result<{}, crate::service::CallError> {{",
                m.name, m.input_type, m.output_type
            );
            let _ = writeln!(
                s,
                "        let body = self.caller.call(\"{full}\", \"{}\", request, timeout)?;",
                m.proto_name
            );
            let _ = writeln!(s, "        crate::service::decode_reply(body)\n    }}");
            let _ = writeln!(
                s,
                "    /// Non-blocking `{}`: `done` runs once, on the transport's I/O thread, with the reply or the error.",
                m.proto_name
            );
            let _ = writeln!(
                s,
                "    pub fn {}_async<F>(&self, request: &{}, timeout: ::std::time::Duration, done: F)",
                m.name, m.input_type
            );
            let _ = writeln!(
                s,
                "    where F: FnOnce(::core::result::Result<{}, crate::service::CallError>) + Send + 'static {{",
                m.output_type
            );
            let _ = writeln!(
                s,
                "        self.caller.call_async(\"{full}\", \"{}\", request, timeout, Box::new(move |r| done(r.and_then(crate::service::decode_reply))));\n    }}",
                m.proto_name
            );
        }
        let _ = writeln!(s, "}}");
        buf.push_str(s);
    }
}
