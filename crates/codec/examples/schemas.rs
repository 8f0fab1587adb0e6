//! Rewrites the `view` field of `schemas/customer_projection.avsc` and
//! `schemas/order_projection.avsc` from the Rust views of storefold-codec,
//! keeping the rest of each file.
//!
//! ```text
//! cargo run -p storefold-codec --example schemas [-- <schemas dir>]
//! ```

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool: it reports what it did

use std::path::PathBuf;
use std::process::ExitCode;

use storefold_codec::view_schema;

fn main() -> ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            manifest
                .parent()
                .and_then(std::path::Path::parent)
                .map_or_else(
                    || manifest.join("../../schemas"),
                    |root| root.join("schemas"),
                )
        });
    let mut failed = false;
    for kind in view_schema::KINDS {
        let path = dir.join(kind.file_name());
        let result = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|current| {
                let generated =
                    view_schema::regenerate(kind, &current).map_err(|e| e.to_string())?;
                if generated == current {
                    return Ok("up to date");
                }
                std::fs::write(&path, generated).map_err(|e| e.to_string())?;
                Ok("rewritten")
            });
        match result {
            Ok(what) => println!("{}: {what}", path.display()),
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
