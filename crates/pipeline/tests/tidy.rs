//! Repository checks for this crate: every module has a `//!` doc, and library code does not
//! print to stdout.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_are_documented_and_do_not_print() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    assert!(!files.is_empty());
    for path in files {
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("//!"), "{} has no //! module doc", path.display());
        let in_src = path.starts_with(root.join("src")) && !path.starts_with(root.join("src/bin"));
        let printing = ["println!", "print!("].iter().any(|needle| text.contains(needle));
        let is_self = path.ends_with("tidy.rs");
        assert!(!(in_src && printing) || is_self, "{} prints to stdout", path.display());
    }
}
