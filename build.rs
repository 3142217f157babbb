//! Compiles every `proto/*.proto` into Rust with prost.
//!
//! `protox` is a pure-Rust protobuf compiler, so no system `protoc` is needed on a fresh
//! machine. Generated modules land in `OUT_DIR`, one file per protobuf package
//! (e.g. `corral.snapshot.rs`), and are `include!`d by the module that owns them.
//! `bytes` fields become `bytes::Bytes` so znode data can be shared without copying.

use std::error::Error;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut files: Vec<PathBuf> = std::fs::read_dir("proto")?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let descriptors = protox::compile(&files, ["proto"])?;
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
