//! Repository checks for this crate: every module has a `//!` doc, library code does not print
//! to stdout or stderr, and tests bind no fixed ports.

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
fn modules_are_documented_do_not_print_and_tests_use_free_ports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    assert!(!files.is_empty());
    for path in files {
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("//!"), "{} has no //! module doc", path.display());
        if path.starts_with(root.join("src")) {
            for needle in ["println!", "print!(", "eprintln!", "eprint!(", "dbg!("] {
                assert!(!text.contains(needle), "{} uses {needle}", path.display());
            }
        }
        // Tests bind 127.0.0.1:0 and read the port back; a fixed port collides with parallel runs.
        for (at, _) in text.match_indices("127.0.0.1:") {
            let next = text[at + "127.0.0.1:".len()..].chars().next();
            let fixed = next.is_some_and(|c| c.is_ascii_digit() && c != '0');
            assert!(!fixed || !path.starts_with(root.join("tests")), "{} uses a fixed port", path.display());
        }
    }
}
