//! Generates the message types from `proto/*.proto` with prost-build.
//!
//! protoc comes from the `protoc-bin-vendored` crate, so a fresh machine needs only cargo.

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
    config.compile_protos(PROTOS, &["proto/"])?;
    Ok(())
}
