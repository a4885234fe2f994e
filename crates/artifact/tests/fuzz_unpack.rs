//! Fuzz target `unpack`: uploaded source tarballs through [`ArtifactStore::unpack_source`].
//!
//! Drover's fuzz targets are plain tests (see issue 9): this one first replays every file of the
//! committed corpus in `fuzz/corpus/unpack/` (gzip'd tarballs: a plain tree, and crafted ones
//! with `..`, absolute paths, a symlink then a write through it, hard links, devices, a huge
//! claimed size, PAX paths), then runs a bounded number of proptest cases: the seeds' tar
//! streams mutated (bit flips, insertions, removals, truncation, splicing; header checksums
//! recomputed so that mutated headers get past the first check) and regzipped, the raw gzip
//! bytes mutated, and tarballs generated entry by entry from hostile parts. `DROVER_FUZZ_CASES`
//! sets the number of cases; failures are not persisted: a failing input is printed, and
//! belongs in the corpus once fixed.
//!
//! What must hold for any input, per the documented contract of `unpack_source`:
//! - no panic;
//! - nothing is written outside the destination: the directories around it (three levels, so
//!   `../../..` would show) hold nothing new, and a canary directory next to it is unchanged;
//! - on success the tree holds only directories, regular files with one link each, and
//!   symlinks whose targets stay inside it, with contents within the limit;
//! - on error nothing is left: a destination the call created is gone, one that existed empty
//!   is empty again.

use artifact::ArtifactStore;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use testkit::fuzz::{cases, Mutations};

/// Proptest cases when `DROVER_FUZZ_CASES` is unset; each unpacks into a fresh temp dir.
const DEFAULT_CASES: u32 = 800;
/// The upload limit used here: small, so that size checks are reached.
const LIMIT: u64 = 64 * 1024;
const CANARY: &[u8] = b"must not change";

/// How the tar streams and the gzip bytes are mutated: every change as often, long removals and
/// splices, and a splice of one 512-byte block (a header) as often as all other splices.
const MUTATIONS: Mutations = Mutations {
    tokens: &[],
    token_weight: 0,
    set_byte: true,
    max_insert: 16,
    max_remove: 600,
    max_splice: 1100,
    block: Some(512),
};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/unpack")
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let files = testkit::fuzz::corpus(&corpus_dir());
    assert!(files.len() >= 5, "the corpus has its seeds");
    files
}

// ---------------------------------------------------------------------------------------------
// The properties

/// Names in `dir`, sorted.
fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .map(|items| items.map(|item| item.expect("list").file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// Whether a symlink at `link` (relative to the tree's root) pointing to `target` resolves,
/// lexically, to a path inside the tree.
fn lexically_inside(link: &Path, target: &Path) -> bool {
    let mut depth: Vec<&std::ffi::OsStr> = Vec::new();
    let parent = link.parent().unwrap_or(Path::new(""));
    for component in parent.components().chain(target.components()) {
        match component {
            Component::Normal(part) => depth.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Checks a successfully unpacked tree; returns its total file size.
fn check_tree(root: &Path, rel: &Path) -> Result<u64, String> {
    let mut total = 0;
    for item in fs::read_dir(root.join(rel)).map_err(|e| format!("list {}: {e}", rel.display()))? {
        let item = item.map_err(|e| e.to_string())?;
        let rel = rel.join(item.file_name());
        let meta = fs::symlink_metadata(root.join(&rel)).map_err(|e| e.to_string())?;
        let kind = meta.file_type();
        if kind.is_dir() {
            total += check_tree(root, &rel)?;
        } else if kind.is_file() {
            if meta.nlink() != 1 {
                return Err(format!("{} has {} links", rel.display(), meta.nlink()));
            }
            total += meta.len();
        } else if kind.is_symlink() {
            let target = fs::read_link(root.join(&rel)).map_err(|e| e.to_string())?;
            if !lexically_inside(&rel, &target) {
                return Err(format!("symlink {} -> {} leaves the tree", rel.display(), target.display()));
            }
        } else {
            return Err(format!("{} is a special file: {kind:?}", rel.display()));
        }
    }
    Ok(total)
}

/// Unpacks `gz` into `base/l1/l2/dest` and checks the contract; `existing` makes `dest` an
/// empty directory beforehand.
fn check(gz: &[u8], existing: bool) -> Result<(), String> {
    let base = tempfile::tempdir().expect("create a temp dir");
    let canary_dir = base.path().join("outside");
    fs::create_dir(&canary_dir).expect("create the canary dir");
    fs::write(canary_dir.join("canary"), CANARY).expect("write the canary");
    let parent = base.path().join("l1/l2");
    fs::create_dir_all(&parent).expect("create the parent dirs");
    let dest = parent.join("dest");
    if existing {
        fs::create_dir(&dest).expect("create dest");
    }

    let result = ArtifactStore::unpack_source(gz, &dest, LIMIT);

    let set = |names: &[&str]| names.iter().map(|name| (*name).to_owned()).collect::<BTreeSet<String>>();
    if names(base.path()) != set(&["l1", "outside"]) || names(&base.path().join("l1")) != set(&["l2"]) {
        return Err(format!("wrote next to the destination: {:?}", names(base.path())));
    }
    if names(&canary_dir) != set(&["canary"]) || fs::read(canary_dir.join("canary")).ok().as_deref() != Some(CANARY) {
        return Err("the canary next to the destination changed".to_owned());
    }
    let dest_left = dest.exists();
    match &result {
        Ok(()) => {
            if names(&parent) != set(&["dest"]) {
                return Err(format!("the parent holds {:?}", names(&parent)));
            }
            let total = check_tree(&dest, Path::new(""))?;
            if total > LIMIT {
                return Err(format!("unpacked {total} bytes, more than the limit {LIMIT}"));
            }
        }
        Err(error) if existing => {
            if names(&parent) != set(&["dest"]) || !names(&dest).is_empty() {
                return Err(format!("{error}: left {:?} in an existing destination", names(&dest)));
            }
        }
        Err(error) => {
            if !names(&parent).is_empty() || dest_left {
                return Err(format!("{error}: left {:?} where the destination was", names(&parent)));
            }
        }
    }
    if let Err(error) = &result {
        if error.to_string().is_empty() {
            return Err("an empty error message".to_owned());
        }
    }
    Ok(())
}

#[test]
fn unpack_corpus_replays() {
    for (name, gz) in corpus() {
        for existing in [false, true] {
            if let Err(problem) = check(&gz, existing) {
                panic!("corpus file {name} (existing dest: {existing}): {problem}");
            }
        }
    }
}

/// The crafted seeds are refused, and the plain ones unpack: the corpus stays meaningful.
#[test]
fn unpack_corpus_verdicts() {
    for (name, gz) in corpus() {
        let base = tempfile::tempdir().expect("create a temp dir");
        let result = ArtifactStore::unpack_source(gz.as_slice(), &base.path().join("dest"), LIMIT);
        let expect_ok = name.starts_with("ok_");
        assert_eq!(result.is_ok(), expect_ok, "{name}: {result:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs

fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut tar = Vec::new();
    let _ = MultiGzDecoder::new(gz).read_to_end(&mut tar);
    tar
}

fn gzip(tar: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(tar).expect("gzip to memory");
    encoder.finish().expect("gzip to memory")
}

/// Recomputes the checksum of every 512-byte block that looks like a ustar or GNU header, so
/// that a mutated header is parsed rather than refused for its checksum.
fn fix_checksums(tar: &mut [u8]) {
    for block in tar.chunks_exact_mut(512) {
        if &block[257..262] != b"ustar" {
            continue;
        }
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }
}

/// A raw ustar header: the path and link name are written as bytes, so `..` and `/` get in.
fn header(path: &[u8], kind: u8, mode: u32, size: u64, link: &[u8]) -> [u8; 512] {
    let mut header = tar::Header::new_ustar();
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    let bytes = header.as_mut_bytes();
    bytes[..path.len().min(100)].copy_from_slice(&path[..path.len().min(100)]);
    bytes[156] = kind;
    bytes[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    header.set_cksum();
    *header.as_bytes()
}

/// One entry of a generated tarball.
#[derive(Debug, Clone)]
struct Spec {
    path: Vec<&'static str>,
    kind: u8,
    exec: bool,
    data: Data,
    link: &'static str,
    /// Puts the path in a PAX record instead of the header, whose name is then `pax_cover`.
    pax: bool,
}

#[derive(Debug, Clone)]
enum Data {
    Bytes(Vec<u8>),
    /// A header claiming this many bytes, followed by none: a truncated or oversized entry.
    Claim(u64),
}

const PARTS: &[&str] = &["a", "b", "l", "x", ".", "..", "", "/", "/tmp", ".git", "outside", "dest", "é"];
const LINKS: &[&str] =
    &["a", "b/c", "l", "l/x", ".", "..", "../outside", "../../..", "/", "/tmp/x", "a/../..", "x/../a", ""];
const KINDS: &[u8] = b"0\x00125673xgLKS7Z";

fn spec() -> impl Strategy<Value = Spec> {
    let data = prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..600).prop_map(Data::Bytes),
        1 => prop_oneof![Just(LIMIT), Just(LIMIT + 1), Just(1 << 33), Just(u64::MAX / 2), 1u64..4096]
            .prop_map(Data::Claim),
    ];
    (
        prop::collection::vec(prop::sample::select(PARTS), 1..4),
        prop::sample::select(KINDS),
        any::<bool>(),
        data,
        prop::sample::select(LINKS),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(path, kind, exec, data, link, pax)| Spec { path, kind, exec, data, link, pax })
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = 1 + key.len() + 1 + value.len() + 1;
    let mut len = body_len + 1;
    while len.to_string().len() + body_len != len {
        len = len.to_string().len() + body_len;
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn build(specs: &[Spec], end_blocks: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for spec in specs {
        let path = spec.path.join("/").into_bytes();
        let mode = if spec.exec { 0o755 } else { 0o644 };
        let header_path: &[u8] = if spec.pax {
            let record = pax_record("path", &path);
            out.extend_from_slice(&header(b"pax_header", b'x', 0o644, record.len() as u64, b""));
            out.extend_from_slice(&record);
            pad(&mut out);
            b"pax_cover"
        } else {
            &path
        };
        match &spec.data {
            Data::Bytes(bytes) => {
                out.extend_from_slice(&header(header_path, spec.kind, mode, bytes.len() as u64, spec.link.as_bytes()));
                out.extend_from_slice(bytes);
                pad(&mut out);
            }
            Data::Claim(size) => {
                out.extend_from_slice(&header(header_path, spec.kind, mode, *size, spec.link.as_bytes()));
            }
        }
    }
    if end_blocks {
        out.extend_from_slice(&[0; 1024]);
    }
    out
}

fn run(cases: u32, strategy: impl Strategy<Value = (Vec<u8>, bool)>) {
    let config = ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() };
    let result = TestRunner::new(config).run(&strategy, |(gz, existing)| {
        check(&gz, existing).map_err(|problem| TestCaseError::fail(format!("{problem}\ngzip'd input: {gz:?}")))
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

#[test]
fn unpack_survives_mutated_tar_streams() {
    let seeds: Vec<Vec<u8>> = corpus().into_iter().map(|(_, gz)| gunzip(&gz)).collect();
    let strategy = (0..seeds.len(), prop::collection::vec(MUTATIONS.strategy(), 1..5), any::<bool>(), any::<bool>())
        .prop_map(move |(seed_idx, mutations, fix, existing)| {
            let mut tar = MUTATIONS.apply(&seeds, seeds[seed_idx].clone(), &mutations);
            if fix {
                fix_checksums(&mut tar);
            }
            (gzip(&tar), existing)
        });
    run(cases(DEFAULT_CASES), strategy);
}

#[test]
fn unpack_survives_mutated_gzip_bytes() {
    let seeds: Vec<Vec<u8>> = corpus().into_iter().map(|(_, gz)| gz).collect();
    let strategy = (0..seeds.len(), prop::collection::vec(MUTATIONS.strategy(), 1..3), any::<bool>()).prop_map(
        move |(seed_idx, mutations, existing)| (MUTATIONS.apply(&seeds, seeds[seed_idx].clone(), &mutations), existing),
    );
    run(cases(DEFAULT_CASES) / 4 + 1, strategy);
}

#[test]
fn unpack_survives_generated_tarballs() {
    let strategy = (prop::collection::vec(spec(), 1..8), any::<bool>(), any::<bool>())
        .prop_map(|(specs, end_blocks, existing)| (gzip(&build(&specs, end_blocks)), existing));
    run(cases(DEFAULT_CASES), strategy);
}

fn leak(text: &str) -> &'static str {
    String::from(text).leak()
}

fn seed_file(path: &str, data: &[u8]) -> Spec {
    let path = path.split('/').map(leak).collect();
    Spec { path, kind: b'0', exec: false, data: Data::Bytes(data.to_vec()), link: "", pax: false }
}

fn seed_entry(path: &str, kind: u8, link: &str) -> Spec {
    Spec { kind, link: leak(link), ..seed_file(path, b"") }
}

/// Writes the crafted seeds of `fuzz/corpus/unpack/` when `DROVER_FUZZ_WRITE_CORPUS=1`, and
/// otherwise checks that the committed files hold what this function makes, so that the corpus
/// and the code that explains it cannot drift apart. Files found by fuzzing are added by hand
/// and are not listed here. `ok_` seeds must unpack, all others must be refused.
#[test]
fn unpack_corpus_seeds_are_reproducible() {
    let seeds: Vec<(&str, Vec<Spec>)> = vec![
        (
            "ok_tree.tar.gz",
            vec![
                seed_entry("app", b'5', ""),
                seed_file("app/drover.yml", b"app: hello\nprocesses:\n  web: ./server\n"),
                Spec { exec: true, ..seed_file("app/server", b"#!/bin/sh\nexec python3 -m http.server $PORT\n") },
                seed_entry("app/current", b'2', "server"),
                Spec { pax: true, ..seed_file("app/lib/named-by-pax", b"PAX path") },
            ],
        ),
        ("bad_parent_dir.tar.gz", vec![seed_file("a/../../../../outside/canary", b"overwritten")]),
        ("bad_absolute.tar.gz", vec![seed_file("/tmp/drover-fuzz-absolute", b"x")]),
        (
            "bad_symlink_then_write_through.tar.gz",
            vec![seed_entry("a", b'5', ""), seed_entry("l", b'2', "a"), seed_file("l/x", b"through the link")],
        ),
        ("bad_symlink_outside.tar.gz", vec![seed_entry("l", b'2', "../outside")]),
        ("bad_hardlink.tar.gz", vec![seed_file("a", b"data"), seed_entry("b", b'1', "a")]),
        ("bad_char_device.tar.gz", vec![seed_entry("null", b'3', "")]),
        ("bad_fifo.tar.gz", vec![seed_entry("pipe", b'6', "")]),
        ("bad_huge_size.tar.gz", vec![Spec { data: Data::Claim(1 << 40), ..seed_file("big", b"") }]),
        ("bad_pax_parent_dir.tar.gz", vec![Spec { pax: true, ..seed_file("../../../outside/canary", b"overwritten") }]),
    ];
    let dir = corpus_dir();
    let write = std::env::var("DROVER_FUZZ_WRITE_CORPUS").is_ok_and(|v| v == "1");
    for (name, specs) in seeds {
        let tar = build(&specs, true);
        let path = dir.join(name);
        match write {
            true => fs::write(&path, gzip(&tar)).expect("write a corpus file"),
            false => assert_eq!(gunzip(&fs::read(&path).expect("read a corpus file")), tar, "{name} differs"),
        }
    }
}
