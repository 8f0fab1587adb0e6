//! Helpers every provider's tests share: fixtures and the shared conformance
//! corpus (`shared/conformance/<provider>`, real payloads read in place).

use std::path::{Path, PathBuf};

/// The conformance corpus directory of `provider`, or `None` when it is absent,
/// after a loud SKIPPED line on stderr (so a checkout without the corpus cannot
/// pass the conformance tests silently).
pub(crate) fn conformance_dir(provider: &str) -> Option<PathBuf> {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/conformance"
    ))
    .join(provider);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: conformance corpus not found at {} — {provider} conformance checks did NOT run",
            dir.display()
        );
        None
    }
}

/// The names of the `.json` files in a corpus directory, sorted.
pub(crate) fn json_file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// The bytes of `name` in `dir`, panicking with the path when unreadable.
pub(crate) fn read_file(dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `name` in `dir` as JSON, panicking with the path when unreadable.
pub(crate) fn read_json(dir: &Path, name: &str) -> serde_json::Value {
    let path = dir.join(name);
    serde_json::from_slice(&read_file(dir, name))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fixture of our own: `src/<provider>/fixtures/<name>`.
pub(crate) fn fixture(provider: &str, name: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(provider)
        .join("fixtures");
    read_file(&dir, name)
}
