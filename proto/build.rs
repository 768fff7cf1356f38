//! Compiles Parley's protobuf schemas (`schemas/parley/v1/*.proto`) into Rust
//! types with `protox` (a pure-Rust protobuf compiler, so no `protoc` is
//! needed) and `prost-build`.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

/// Root of the include tree; file names inside it match their packages.
const SCHEMA_ROOT: &str = "schemas";

/// Directory of the `parley.v1` package below [`SCHEMA_ROOT`].
const V1_DIR: &str = "parley/v1";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={SCHEMA_ROOT}");

    let files = proto_files(&Path::new(SCHEMA_ROOT).join(V1_DIR))?;
    let descriptors = protox::compile(&files, [SCHEMA_ROOT])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}

/// The `.proto` files directly inside `dir`, sorted so builds are repeatable.
fn proto_files(dir: &Path) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "proto") {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(format!("no .proto files in {}", dir.display()).into());
    }
    files.sort();
    Ok(files)
}
