//! Repository checks for the whole workspace: every module has a `//!` doc, library code does
//! not print to stdout or stderr, and tests bind no fixed ports.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_are_documented_libraries_do_not_print_and_tests_use_free_ports() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut checked = 0;
    for krate in fs::read_dir(crates).unwrap() {
        let krate = krate.unwrap().path();
        let is_binary = krate.ends_with("drover");
        let (src, tests) = (krate.join("src"), krate.join("tests"));
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        rust_files(&tests, &mut files);
        for path in files {
            checked += 1;
            let text = fs::read_to_string(&path).unwrap();
            assert!(text.starts_with("//!"), "{} has no //! module doc", path.display());
            let library_code = path.starts_with(&src) && !is_binary && !path.starts_with(src.join("bin"));
            if library_code {
                for needle in ["println!", "print!(", "eprintln!", "eprint!(", "dbg!("] {
                    assert!(!text.contains(needle), "{} uses {needle}", path.display());
                }
            }
            // Tests bind 127.0.0.1:0 and read the port back; a fixed port collides with
            // parallel runs.
            if path.starts_with(&tests) {
                for (at, _) in text.match_indices("127.0.0.1:") {
                    let next = text[at + "127.0.0.1:".len()..].chars().next();
                    let fixed = next.is_some_and(|c| c.is_ascii_digit() && c != '0');
                    assert!(!fixed, "{} uses a fixed port", path.display());
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} files found: is the workspace layout what this test expects?");
}
