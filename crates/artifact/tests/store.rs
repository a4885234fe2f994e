//! The artifact store through its public API, with real files, real tarballs and a real `sh`.
//!
//! Malicious tarballs are made by hand with the `tar` crate's `Header` API, because its
//! `Builder` refuses to write the very paths these tests need.

use artifact::{ArtifactStore, Built, Control};
use flate2::write::GzEncoder;
use flate2::Compression;
use model::{BuildStep, Digest};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File, FileTimes, Permissions};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant, SystemTime};
use tar::{EntryType, Header};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Hand-made tarballs

/// One entry of a hand-made tarball.
enum Tar {
    File(String, String),
    Exec(String, String),
    Dir(String),
    Symlink(String, String),
    Hardlink(String, &'static str),
    Fifo(String),
    CharDevice(String),
    /// A file whose header names `header` while a PAX record says its path is really `pax`.
    PaxPath {
        header: String,
        pax: String,
    },
    /// The PAX global header `git archive` starts its output with.
    GlobalHeader,
    /// A path too long for the header itself, written as a GNU long-name extension.
    LongName(String, &'static str),
    /// An empty file whose name, `a` repeated this many times, is in a GNU long-name extension,
    /// as a gzip bomb would write it.
    HugeLongName(usize),
}

fn file(path: &str, contents: &str) -> Tar {
    Tar::File(path.to_owned(), contents.to_owned())
}

fn exec(path: &str, contents: &str) -> Tar {
    Tar::Exec(path.to_owned(), contents.to_owned())
}

/// A gzip'd tarball of `entries`, in order.
fn tarball(entries: &[Tar]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for entry in entries {
        match entry {
            Tar::File(path, contents) => append(&mut builder, path, EntryType::Regular, 0o644, contents),
            Tar::Exec(path, contents) => append(&mut builder, path, EntryType::Regular, 0o755, contents),
            Tar::Dir(path) => append(&mut builder, path, EntryType::Directory, 0o755, ""),
            Tar::Fifo(path) => append(&mut builder, path, EntryType::Fifo, 0o644, ""),
            Tar::CharDevice(path) => append(&mut builder, path, EntryType::Char, 0o644, ""),
            Tar::Symlink(path, target) => append_link(&mut builder, path, EntryType::Symlink, target),
            Tar::Hardlink(path, target) => append_link(&mut builder, path, EntryType::Link, target),
            Tar::PaxPath { header, pax } => {
                let record = pax_record("path", pax);
                append(&mut builder, "PaxHeaders/x", EntryType::XHeader, 0o644, &record);
                append(&mut builder, header, EntryType::Regular, 0o644, "smuggled");
            }
            Tar::GlobalHeader => {
                let record = pax_record("comment", "0123456789abcdef0123456789abcdef01234567");
                append(&mut builder, "pax_global_header", EntryType::XGlobalHeader, 0o644, &record);
            }
            Tar::LongName(path, contents) => {
                let mut header = Header::new_gnu();
                header.set_size(contents.len() as u64);
                header.set_mode(0o644);
                builder.append_data(&mut header, path, contents.as_bytes()).unwrap();
            }
            Tar::HugeLongName(len) => {
                append(&mut builder, "././@LongLink", EntryType::GNULongName, 0o644, &"a".repeat(*len));
                append(&mut builder, "a", EntryType::Regular, 0o644, "");
            }
        }
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// Appends an entry whose name is written raw: `Header::set_path` refuses `..` and absolute
/// paths, which is exactly what these tests need to write.
fn append(builder: &mut tar::Builder<impl std::io::Write>, name: &str, entry_type: EntryType, mode: u32, data: &str) {
    let header = raw_header(name, entry_type, mode, data.len() as u64, None);
    builder.append(&header, data.as_bytes()).unwrap();
}

fn append_link(builder: &mut tar::Builder<impl std::io::Write>, name: &str, entry_type: EntryType, target: &str) {
    let header = raw_header(name, entry_type, 0o777, 0, Some(target));
    builder.append(&header, &[][..]).unwrap();
}

fn raw_header(name: &str, entry_type: EntryType, mode: u32, size: u64, link: Option<&str>) -> Header {
    let mut header = Header::new_gnu();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_size(size);
    if let Some(target) = link {
        header.set_link_name(target).unwrap();
    }
    header.set_cksum();
    header
}

/// A PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts the whole record.
fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}")
}

// ---------------------------------------------------------------------------------------------
// Trees

fn write(root: &Path, rel: &str, contents: &str, mode: u32) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, contents).unwrap();
    fs::set_permissions(&path, Permissions::from_mode(mode)).unwrap();
}

/// A small app: a Procfile, an executable, a nested file with odd permissions, an empty
/// directory and some git history, none of which may end up in the slug.
fn app(root: &Path) -> PathBuf {
    write(root, "Procfile", "web: ./bin/web\n", 0o644);
    write(root, "bin/web", "#!/bin/sh\necho hi\n", 0o755);
    write(root, "lib/deep/nested/data.txt", "data\n", 0o600);
    write(root, ".git/HEAD", "ref: refs/heads/main\n", 0o644);
    fs::create_dir_all(root.join("empty")).unwrap();
    root.to_owned()
}

const BUILD: &[&str] = &["mkdir -p out && echo built > out/result.txt", "cp Procfile out/Procfile.copy"];

fn commands(commands: &[&str]) -> Vec<BuildStep> {
    commands.iter().map(|command| BuildStep::command(*command)).collect()
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
}

/// Every file and directory under `root`, sorted: `dir/` and `file <mode> <contents>`.
fn listing(root: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    list_into(root, root, &mut lines);
    lines.sort();
    lines
}

fn list_into(root: &Path, dir: &Path, lines: &mut Vec<String>) {
    for item in fs::read_dir(dir).unwrap() {
        let path = item.unwrap().path();
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let metadata = fs::symlink_metadata(&path).unwrap();
        if metadata.is_dir() {
            lines.push(format!("{rel}/"));
            list_into(root, &path, lines);
        } else if metadata.is_symlink() {
            lines.push(format!("{rel} -> {}", fs::read_link(&path).unwrap().display()));
        } else {
            let mode = metadata.permissions().mode() & 0o7777;
            lines.push(format!("{rel} {mode:o} {}", fs::read_to_string(&path).unwrap().trim_end()));
        }
    }
}

/// The modes of `root` and every directory below it.
fn dir_modes(root: &Path) -> Vec<u32> {
    let mut modes = vec![fs::metadata(root).unwrap().permissions().mode() & 0o7777];
    for line in listing(root).iter().filter(|line| line.ends_with('/')) {
        modes.push(fs::metadata(root.join(line)).unwrap().permissions().mode() & 0o7777);
    }
    modes
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|item| item.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn open_store(dir: &Path, name: &str) -> ArtifactStore {
    ArtifactStore::open(dir.join(name)).unwrap()
}

fn build(store: &ArtifactStore, src: &Path, build: &[&str], env: &BTreeMap<String, String>) -> (Built, Vec<String>) {
    let mut lines = Vec::new();
    let built = store
        .build(src, &commands(build), env, &Control::default(), &mut |line| lines.push(line.to_owned()), &mut |_| {})
        .unwrap();
    (built, lines)
}

fn slug_bytes(root: &Path, digest: &Digest) -> Vec<u8> {
    fs::read(root.join("slugs").join(format!("{}.tar.gz", digest.hex()))).unwrap()
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::from_sha256(&Sha256::digest(bytes).into())
}

/// Every entry's header in a gzip'd tarball: `path type mode uid:gid mtime`.
fn tar_headers(bytes: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut lines = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        let kind = match header.entry_type() {
            EntryType::Directory => "d",
            EntryType::Regular => "f",
            EntryType::Symlink => "l",
            other => panic!("unexpected entry type {other:?}"),
        };
        lines.push(format!(
            "{} {kind} {:o} {}:{} {}",
            entry.path().unwrap().display(),
            header.mode().unwrap(),
            header.uid().unwrap(),
            header.gid().unwrap(),
            header.mtime().unwrap()
        ));
    }
    lines
}

// ---------------------------------------------------------------------------------------------
// Unpacking sources

/// Where `unpack_source` is asked to unpack.
#[derive(Debug, Clone, Copy)]
enum DestState {
    Missing,
    Empty,
}

/// Unpacks `bytes` into a missing and into an empty `dest` and expects `error` both times, with
/// nothing left behind: not in `dest`, not next to it.
fn check_rejected(bytes: &[u8], limit: u64, dir: &TempDir, error: &str) {
    for state in [DestState::Missing, DestState::Empty] {
        let dest = dir.path().join("dest");
        if let DestState::Empty = state {
            fs::create_dir(&dest).unwrap();
        }
        let result = ArtifactStore::unpack_source(bytes, &dest, limit);
        assert_eq!(result.unwrap_err().to_string(), error, "{state:?}");
        match state {
            DestState::Missing => assert_eq!(names(dir.path()), Vec::<String>::new(), "{state:?}"),
            DestState::Empty => {
                assert_eq!(names(dir.path()), ["dest"], "{state:?}");
                assert_eq!(names(&dest), Vec::<String>::new(), "{state:?}");
                fs::remove_dir(&dest).unwrap();
            }
        }
    }
}

#[test]
fn unpack_source_rejects_unsafe_entries_and_leaves_nothing() {
    let dir = TempDir::new().unwrap();
    let outside = dir.path().join("evil").display().to_string();
    // Each tarball starts with a harmless entry, so a partial unpack would leave something.
    let ok = || Tar::Dir("ok".to_owned());
    let cases: Vec<(Vec<Tar>, String)> = vec![
        (
            vec![ok(), file("ok/a", "a"), file("../x", "evil")],
            r#"tarball entry "../x": `..` components are not allowed"#.to_owned(),
        ),
        (
            vec![ok(), file("a/../../x", "evil")],
            r#"tarball entry "a/../../x": `..` components are not allowed"#.to_owned(),
        ),
        (vec![ok(), file(&outside, "evil")], format!("tarball entry {outside:?}: absolute paths are not allowed")),
        (vec![ok(), file("/etc/x", "evil")], r#"tarball entry "/etc/x": absolute paths are not allowed"#.to_owned()),
        (
            vec![ok(), Tar::Symlink("link".to_owned(), dir.path().display().to_string()), file("link/evil", "evil")],
            format!(
                "tarball entry \"link\" is a symlink to {:?}: a link must be relative and stay inside the tree",
                dir.path().display().to_string()
            ),
        ),
        (
            vec![ok(), Tar::Symlink("ok/rel".to_owned(), "../../evil".to_owned())],
            r#"tarball entry "ok/rel" is a symlink to "../../evil": a link must be relative and stay inside the tree"#
                .to_owned(),
        ),
        (
            vec![ok(), Tar::Symlink("ok/rel".to_owned(), "a/../../..".to_owned())],
            r#"tarball entry "ok/rel" is a symlink to "a/../../..": a link must be relative and stay inside the tree"#
                .to_owned(),
        ),
        // A link inside the tree is fine, but nothing may be written through it: it could be
        // swapped for one pointing out in a tarball made to look harmless.
        (
            vec![ok(), Tar::Symlink("up".to_owned(), "ok".to_owned()), file("up/evil", "evil")],
            r#"tarball entry "up/evil" would be written through the symlink "up""#.to_owned(),
        ),
        (
            vec![ok(), Tar::Symlink("up".to_owned(), "ok".to_owned()), file("up", "evil")],
            r#"tarball entry "up" would be written through the symlink "up""#.to_owned(),
        ),
        (
            vec![ok(), file("a", "a"), Tar::Symlink("a".to_owned(), "ok".to_owned())],
            r#"tarball entry "a" is a symlink where another entry already is"#.to_owned(),
        ),
        (
            vec![ok(), Tar::Hardlink("hard".to_owned(), "/etc/passwd")],
            r#"tarball entry "hard" is a hard link: hard links are not allowed"#.to_owned(),
        ),
        (
            vec![ok(), Tar::Fifo("pipe".to_owned())],
            r#"tarball entry "pipe" is a fifo: only files, directories and symlinks are allowed"#.to_owned(),
        ),
        (
            vec![ok(), Tar::CharDevice("null".to_owned())],
            r#"tarball entry "null" is a character device: only files, directories and symlinks are allowed"#
                .to_owned(),
        ),
        (
            vec![ok(), Tar::PaxPath { header: "harmless".to_owned(), pax: "../pax-evil".to_owned() }],
            r#"tarball entry "../pax-evil": `..` components are not allowed"#.to_owned(),
        ),
    ];
    for (entries, error) in &cases {
        check_rejected(&tarball(entries), u64::MAX, &dir, error);
    }
    check_rejected(b"not a tarball", u64::MAX, &dir, "cannot read tarball");
}

#[test]
fn unpack_source_enforces_the_size_limit() {
    let dir = TempDir::new().unwrap();
    let bytes = tarball(&[file("a", "123456"), file("b", "123456")]);
    check_rejected(&bytes, 11, &dir, r#"tarball entry "b": unpacked size exceeds the limit of 11 bytes"#);
    // Exactly at the limit is fine.
    check_unpacks(&[file("a", "123456"), file("b", "123456")], 12, &["a 644 123456", "b 644 123456"]);
}

/// Unpacks a tarball of `entries` into a new directory and expects its [`listing`].
fn check_unpacks(entries: &[Tar], limit: u64, expected: &[&str]) {
    let dir = TempDir::new().unwrap();
    let dest = dir.path().join("dest");
    ArtifactStore::unpack_source(&tarball(entries)[..], &dest, limit).unwrap();
    assert_eq!(listing(&dest), expected);
}

#[test]
fn unpack_source_writes_files_and_directories() {
    check_unpacks(
        &[Tar::Dir("bin".to_owned()), exec("bin/web", "#!/bin/sh"), file("README", "hi")],
        u64::MAX,
        &["README 644 hi", "bin/", "bin/web 755 #!/bin/sh"],
    );
    // Parent directories need no entries of their own; `./` prefixes are fine.
    check_unpacks(&[Tar::Dir("./".to_owned()), file("./a/b/c", "c")], u64::MAX, &["a/", "a/b/", "a/b/c 644 c"]);
    // `git archive` output starts with a PAX global header, which is not a file.
    check_unpacks(&[Tar::GlobalHeader, file("a", "a")], u64::MAX, &["a 644 a"]);
    let long = format!("{}/file", "d".repeat(120));
    check_unpacks(
        &[Tar::LongName(long.clone(), "long")],
        u64::MAX,
        &[&format!("{}/", "d".repeat(120)), &format!("{long} 644 long")],
    );
    // As with any tar, a later entry for the same path wins.
    check_unpacks(&[file("a", "first"), file("a", "second")], u64::MAX, &["a 644 second"]);
    // Symlinks that stay inside the tree, as in `node_modules/.bin`, are kept as links.
    check_unpacks(
        &[
            file("node_modules/tool/cli.js", "cli"),
            Tar::Symlink("node_modules/.bin/tool".to_owned(), "../tool/cli.js".to_owned()),
            Tar::Symlink("current".to_owned(), "node_modules".to_owned()),
        ],
        u64::MAX,
        &[
            "current -> node_modules",
            "node_modules/",
            "node_modules/.bin/",
            "node_modules/.bin/tool -> ../tool/cli.js",
            "node_modules/tool/",
            "node_modules/tool/cli.js 644 cli",
        ],
    );
}

#[test]
fn unpack_source_caps_headers_read_into_memory() {
    // The tar crate reads a long name into memory whole; a few kilobytes of gzip could
    // otherwise claim gigabytes.
    let dir = TempDir::new().unwrap();
    let bytes = tarball(&[Tar::HugeLongName(2 << 20)]);
    check_rejected(&bytes, u64::MAX, &dir, "cannot read tarball");
    let error = ArtifactStore::unpack_source(&bytes[..], &dir.path().join("dest"), u64::MAX).unwrap_err();
    let source = std::error::Error::source(&error).unwrap().to_string();
    assert!(source.contains("more than 1048576 bytes of headers"), "{source}");
    // A long name of a sane length is fine.
    check_unpacks(&[Tar::HugeLongName(200)], u64::MAX, &[&format!("{} 644 ", "a".repeat(200))]);
}

#[test]
fn unpack_source_refuses_a_non_empty_dest() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "dest/keep.txt", "mine", 0o644);
    let dest = dir.path().join("dest");
    let error = ArtifactStore::unpack_source(&tarball(&[file("a", "a")])[..], &dest, u64::MAX).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("cannot unpack into {}: it exists and is not an empty directory", dest.display())
    );
    assert_eq!(listing(&dest), ["keep.txt 644 mine"]);
}

// ---------------------------------------------------------------------------------------------
// Input digests

/// Whether a change to the inputs must change the build cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Same,
    Changed,
}

/// Computes the input digest of [`app`] with `make` and `{A: BC}`, applies `change` to the tree,
/// build and env, and expects the digest to stay the same or change.
fn check_input(what: &str, change: impl Fn(&Path, &mut Vec<BuildStep>, &mut BTreeMap<String, String>), expected: Key) {
    let dir = TempDir::new().unwrap();
    let src = app(dir.path());
    let mut build = commands(&["make"]);
    let mut env = env(&[("A", "BC")]);
    let before = ArtifactStore::input_digest(&src, &build, &env).unwrap();
    change(&src, &mut build, &mut env);
    let after = ArtifactStore::input_digest(&src, &build, &env).unwrap();
    let actual = if before == after { Key::Same } else { Key::Changed };
    assert_eq!(actual, expected, "{what}");
}

#[test]
fn input_digest_covers_exactly_the_build_inputs() {
    let chmod = |path: PathBuf, mode| fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
    check_input("nothing", |_, _, _| {}, Key::Same);
    check_input(
        "modification time",
        |src, _, _| {
            let file = File::options().write(true).open(src.join("Procfile")).unwrap();
            file.set_times(FileTimes::new().set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1000))).unwrap();
        },
        Key::Same,
    );
    check_input("mode bits other than exec", |src, _, _| chmod(src.join("lib/deep/nested/data.txt"), 0o640), Key::Same);
    check_input("git history", |src, _, _| write(src, ".git/HEAD", "ref: refs/heads/other\n", 0o644), Key::Same);
    check_input("file contents", |src, _, _| write(src, "Procfile", "web: ./bin/other\n", 0o644), Key::Changed);
    check_input("exec bit", |src, _, _| chmod(src.join("Procfile"), 0o755), Key::Changed);
    check_input(
        "file name",
        |src, _, _| fs::rename(src.join("Procfile"), src.join("Procfile2")).unwrap(),
        Key::Changed,
    );
    check_input("empty directory", |src, _, _| fs::create_dir(src.join("empty2")).unwrap(), Key::Changed);
    check_input("build command", |_, build, _| build[0] = BuildStep::command("make all"), Key::Changed);
    check_input(
        "a step made a cached layer",
        |_, build, _| {
            build[0].inputs = vec!["Procfile".to_owned()];
            build[0].outputs = vec!["out".to_owned()];
        },
        Key::Changed,
    );
    check_input("build commands split differently", |_, build, _| *build = commands(&["ma", "ke"]), Key::Changed);
    check_input("env value", |_, _, env| *env = self::env(&[("A", "BD")]), Key::Changed);
    check_input("env split differently", |_, _, env| *env = self::env(&[("AB", "C")]), Key::Changed);
}

// ---------------------------------------------------------------------------------------------
// Builds

#[test]
fn same_inputs_give_a_byte_identical_slug() {
    let dir = TempDir::new().unwrap();
    let src = app(&dir.path().join("src"));
    // The same app again, written later and with other mtimes and non-exec mode bits.
    let src2 = app(&dir.path().join("src2"));
    fs::set_permissions(src2.join("lib/deep/nested/data.txt"), Permissions::from_mode(0o640)).unwrap();
    File::options()
        .write(true)
        .open(src2.join("bin/web"))
        .unwrap()
        .set_times(FileTimes::new().set_modified(SystemTime::UNIX_EPOCH))
        .unwrap();

    let (a, _) = build(&open_store(dir.path(), "a"), &src, BUILD, &BTreeMap::new());
    let (b, _) = build(&open_store(dir.path(), "b"), &src2, BUILD, &BTreeMap::new());
    assert_eq!(a, b);
    assert!(!a.cached);
    let bytes = slug_bytes(&dir.path().join("a"), &a.digest);
    assert_eq!(bytes, slug_bytes(&dir.path().join("b"), &b.digest));
    assert_eq!(sha256(&bytes), a.digest);
    assert_eq!(a.size, bytes.len() as u64);
    // Sorted, normalised, no `.git`, no timestamps or owners.
    assert_eq!(
        tar_headers(&bytes),
        [
            "Procfile f 644 0:0 0",
            "bin d 755 0:0 0",
            "bin/web f 755 0:0 0",
            "empty d 755 0:0 0",
            "lib d 755 0:0 0",
            "lib/deep d 755 0:0 0",
            "lib/deep/nested d 755 0:0 0",
            "lib/deep/nested/data.txt f 644 0:0 0",
            "out d 755 0:0 0",
            "out/Procfile.copy f 644 0:0 0",
            "out/result.txt f 644 0:0 0",
        ]
    );
}

#[test]
fn cache_hit_runs_nothing_and_a_changed_file_rebuilds() {
    let dir = TempDir::new().unwrap();
    let src = app(&dir.path().join("src"));
    let store = open_store(dir.path(), "store");
    // The command counts its runs in a file outside the tree, which the build cannot reset.
    let runs = dir.path().join("runs.log");
    let env = env(&[("RUNS", &runs.display().to_string())]);
    let count = &["echo run >> \"$RUNS\"; echo counted"];

    let (first, lines) = build(&store, &src, count, &env);
    assert_eq!((first.cached, lines), (false, vec!["counted".to_owned()]));
    let (second, lines) = build(&store, &src, count, &env);
    assert_eq!(second, Built { cached: true, ..first.clone() });
    assert_eq!(lines, Vec::<String>::new());
    assert_eq!(fs::read_to_string(&runs).unwrap(), "run\n");

    write(&src, "Procfile", "web: ./bin/other\n", 0o644);
    let (third, _) = build(&store, &src, count, &env);
    assert!(!third.cached);
    assert_ne!(third.digest, first.digest);
    assert_eq!(fs::read_to_string(&runs).unwrap(), "run\nrun\n");
    assert!(store.has(&first.digest) && store.has(&third.digest));
}

#[test]
fn build_streams_output_in_order_with_only_the_given_env() {
    let dir = TempDir::new().unwrap();
    let src = app(&dir.path().join("src"));
    let store = open_store(dir.path(), "store");
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some(), "cargo sets this for tests");
    let script = &[
        "echo one; echo two >&2; echo three",
        "printf 'no newline'",
        "echo \"greeting=$GREETING\"",
        "echo \"server-only=${CARGO_MANIFEST_DIR-unset}\"",
        "test -n \"$PATH\" && echo path-set",
        // stdin is /dev/null: `cat` ends at once instead of waiting.
        "cat",
        // The copy has no `.git`.
        "ls -A",
    ];
    let (_, lines) = build(&store, &src, script, &env(&[("GREETING", "hello")]));
    assert_eq!(
        lines,
        [
            "one",
            "two",
            "three",
            "no newline",
            "greeting=hello",
            "server-only=unset",
            "path-set",
            "Procfile",
            "bin",
            "empty",
            "lib"
        ]
    );
}

#[test]
fn build_kills_what_a_command_leaves_running() {
    let dir = TempDir::new().unwrap();
    let src = app(&dir.path().join("src"));
    let store = open_store(dir.path(), "store");
    let pid_file = dir.path().join("pid");
    let env = env(&[("PID_FILE", &pid_file.display().to_string())]);
    // `sleep` inherits the output pipe; were it left running, the build would never see the end
    // of the output. The build runs on a thread so that regression fails instead of hanging.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = build(&store, &src, &["sleep 600 & echo $! > \"$PID_FILE\"; echo started"], &env);
        done.send(result).unwrap();
    });
    let (built, lines) =
        finished.recv_timeout(Duration::from_secs(60)).expect("the build finishes although `sleep` was left running");
    assert!(!built.cached);
    assert_eq!(lines, ["started"]);
    let pid = fs::read_to_string(&pid_file).unwrap().trim().to_owned();
    wait_until(Instant::now() + Duration::from_secs(10), || !alive(&pid));
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: &str) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Polls `condition` until it holds; the deadline only turns a hang into a clear failure.
fn wait_until(deadline: Instant, condition: impl Fn() -> bool) {
    while !condition() {
        assert!(Instant::now() < deadline, "condition not met before the deadline");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn failing_build_command_names_the_command_and_leaves_nothing() {
    let dir = TempDir::new().unwrap();
    let src = app(&dir.path().join("src"));
    let store = open_store(dir.path(), "store");
    let mut lines = Vec::new();
    let error = store
        .build(
            &src,
            &commands(&["echo before", "echo oops >&2; exit 3", "echo never"]),
            &BTreeMap::new(),
            &Control::default(),
            &mut |line| lines.push(line.to_owned()),
            &mut |_| {},
        )
        .unwrap_err();
    assert_eq!(error.to_string(), r#"build command "echo oops >&2; exit 3" failed: exit status: 3"#);
    assert_eq!(lines, ["before", "oops"]);
    for sub in ["tmp", "slugs", "cache", "layers"] {
        assert_eq!(names(&dir.path().join("store").join(sub)), Vec::<String>::new(), "{sub}");
    }
}

#[test]
fn links_inside_the_tree_are_kept_and_links_out_refused() {
    let dir = TempDir::new().unwrap();
    let src = app(&dir.path().join("src"));
    let store = open_store(dir.path(), "store");
    let mut on_line = |_: &str| {};

    // As `npm ci` leaves them in node_modules/.bin: kept as links, in the slug and unpacked.
    let steps = commands(&["mkdir -p tools/.bin && ln -s ../../bin/web tools/.bin/web && ln -s lib here"]);
    let built = store.build(&src, &steps, &BTreeMap::new(), &Control::default(), &mut on_line, &mut |_| {}).unwrap();
    let headers = tar_headers(&slug_bytes(&dir.path().join("store"), &built.digest));
    assert!(headers.contains(&"tools/.bin/web l 777 0:0 0".to_owned()), "{headers:?}");
    let unpacked = store.unpacked(&built.digest).unwrap();
    let listed = listing(&unpacked);
    assert!(listed.contains(&"here -> lib".to_owned()), "{listed:?}");
    assert!(listed.contains(&"tools/.bin/web -> ../../bin/web".to_owned()), "{listed:?}");
    assert_eq!(fs::read_to_string(unpacked.join("tools/.bin/web")).unwrap(), "#!/bin/sh\necho hi\n");
    // The same tree, built again elsewhere, gives the same bytes.
    let again = open_store(dir.path(), "again")
        .build(&src, &steps, &BTreeMap::new(), &Control::default(), &mut on_line, &mut |_| {})
        .unwrap();
    assert_eq!(again.digest, built.digest);

    let error = store
        .build(
            &src,
            &commands(&["ln -s ../../.. escape"]),
            &BTreeMap::new(),
            &Control::default(),
            &mut on_line,
            &mut |_| {},
        )
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message == "escape is a symlink to ../../..: a link must be relative and stay inside the source or build tree",
        "{message}"
    );

    std::os::unix::fs::symlink("/etc/passwd", src.join("passwd")).unwrap();
    let error = store.build(&src, &[], &BTreeMap::new(), &Control::default(), &mut on_line, &mut |_| {}).unwrap_err();
    assert_eq!(
        error.to_string(),
        "passwd is a symlink to /etc/passwd: a link must be relative and stay inside the source or build tree"
    );
    assert_eq!(names(&dir.path().join("store/tmp")), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// Cached layers

/// A "dependency install" that counts its runs in `$RUNS`, records what it could see, and
/// vendors the manifest; then a plain step that uses the vendored file.
fn layered(runs: &Path) -> (Vec<BuildStep>, BTreeMap<String, String>) {
    let install = BuildStep {
        run: "echo run >> \"$RUNS\"; seen=$(ls -A); mkdir -p deps/vendor && cp requirements.txt deps/vendor/ && echo \"$seen\" > deps/seen"
            .to_owned(),
        inputs: vec!["requirements.txt".to_owned()],
        outputs: vec!["deps".to_owned()],
    };
    let steps = vec![install, BuildStep::command("cat deps/vendor/requirements.txt bin/web > out.txt")];
    (steps, env(&[("RUNS", &runs.display().to_string())]))
}

fn build_steps(store: &ArtifactStore, src: &Path, steps: &[BuildStep], env: &BTreeMap<String, String>) -> Built {
    store.build(src, steps, env, &Control::default(), &mut |_| {}, &mut |_| {}).unwrap()
}

#[test]
fn a_layer_is_reused_while_its_inputs_are_unchanged() {
    let dir = TempDir::new().unwrap();
    let src = app(&dir.path().join("src"));
    write(&src, "requirements.txt", "flask==3.0\n", 0o644);
    let store = open_store(dir.path(), "store");
    let runs = dir.path().join("runs.log");
    let (steps, env) = layered(&runs);

    let mut lines = Vec::new();
    let first = store
        .build(&src, &steps, &env, &Control::default(), &mut |line| lines.push(line.to_owned()), &mut |_| {})
        .unwrap();
    assert_eq!((first.layers_built, first.layers_reused), (1, 0));
    assert!(lines.iter().any(|line| line.starts_with("step 1: stored layer sha256:")), "{lines:?}");
    let unpacked = store.unpacked(&first.digest).unwrap();
    // The step saw only its input, not the app's code.
    assert_eq!(fs::read_to_string(unpacked.join("deps/seen")).unwrap(), "requirements.txt\n");
    assert_eq!(fs::read_to_string(unpacked.join("out.txt")).unwrap(), "flask==3.0\n#!/bin/sh\necho hi\n");

    // Only app code changed: a new slug, the dependency step does not run again.
    write(&src, "bin/web", "#!/bin/sh\necho changed\n", 0o755);
    let mut lines = Vec::new();
    let second = store
        .build(&src, &steps, &env, &Control::default(), &mut |line| lines.push(line.to_owned()), &mut |_| {})
        .unwrap();
    assert_eq!((second.cached, second.layers_built, second.layers_reused), (false, 0, 1));
    assert_ne!(second.digest, first.digest);
    assert_eq!(fs::read_to_string(&runs).unwrap(), "run\n");
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("step 1: reused layer ") && line.ends_with("requirements.txt unchanged")),
        "{lines:?}"
    );
    let unpacked = store.unpacked(&second.digest).unwrap();
    assert_eq!(fs::read_to_string(unpacked.join("out.txt")).unwrap(), "flask==3.0\n#!/bin/sh\necho changed\n");
    // A reused layer packs exactly as a fresh one: the slug does not depend on the cache.
    let fresh = open_store(dir.path(), "fresh");
    assert_eq!(build_steps(&fresh, &src, &steps, &env).digest, second.digest);

    // The manifest changed: the step runs again.
    write(&src, "requirements.txt", "flask==3.1\n", 0o644);
    let third = build_steps(&store, &src, &steps, &env);
    assert_eq!((third.layers_built, third.layers_reused), (1, 0));
    assert_eq!(fs::read_to_string(&runs).unwrap(), "run\nrun\nrun\n");
    assert_eq!(names(&dir.path().join("store/layers")).len(), 2);
    assert_eq!(names(&dir.path().join("store/tmp")), Vec::<String>::new());
}

#[test]
fn later_steps_may_change_a_reused_layer_without_touching_it() {
    let dir = TempDir::new().unwrap();
    let src = app(&dir.path().join("src"));
    write(&src, "requirements.txt", "x\n", 0o644);
    let store = open_store(dir.path(), "store");
    let (mut steps, env) = layered(&dir.path().join("runs.log"));
    steps[1] = BuildStep::command("echo patched >> deps/vendor/requirements.txt && mkdir deps/more");
    let first = build_steps(&store, &src, &steps, &env);
    write(&src, "Procfile", "web: ./bin/web --changed\n", 0o644);
    let second = build_steps(&store, &src, &steps, &env);
    assert_eq!(second.layers_reused, 1);
    for built in [first, second] {
        let unpacked = store.unpacked(&built.digest).unwrap();
        assert_eq!(fs::read_to_string(unpacked.join("deps/vendor/requirements.txt")).unwrap(), "x\npatched\n");
    }
}

#[test]
fn layers_keep_links_checked_against_the_whole_tree() {
    let dir = TempDir::new().unwrap();
    let src = app(&dir.path().join("src"));
    write(&src, "reqs/base.txt", "flask\n", 0o644);
    std::os::unix::fs::symlink("reqs/base.txt", src.join("requirements.txt")).unwrap();
    let store = open_store(dir.path(), "store");
    // The input is a link and the step sees it as one, with what it points to also an input;
    // an output holds a link out of the output (but inside the tree) to an input.
    let step = BuildStep {
        run: "mkdir -p vendor/bin && cp requirements.txt vendor/ && ln -s ../../reqs/base.txt vendor/bin/up".to_owned(),
        inputs: vec!["requirements.txt".to_owned(), "reqs".to_owned()],
        outputs: vec!["vendor".to_owned()],
    };
    let steps = [step];
    let first = build_steps(&store, &src, &steps, &BTreeMap::new());
    write(&src, "Procfile", "web: ./bin/web --changed\n", 0o644);
    let second = build_steps(&store, &src, &steps, &BTreeMap::new());
    assert_eq!((first.layers_built, second.layers_reused), (1, 1));
    let unpacked = store.unpacked(&second.digest).unwrap();
    assert_eq!(fs::read_to_string(unpacked.join("vendor/requirements.txt")).unwrap(), "flask\n");
    assert_eq!(fs::read_link(unpacked.join("vendor/bin/up")).unwrap(), Path::new("../../reqs/base.txt"));
    assert_eq!(fs::read_to_string(unpacked.join("vendor/bin/up")).unwrap(), "flask\n");
}

#[test]
fn layer_mistakes_are_named_and_leave_nothing() {
    let dir = TempDir::new().unwrap();
    let src = app(&dir.path().join("src"));
    let store = open_store(dir.path(), "store");
    let step = |run: &str, inputs: &[&str], outputs: &[&str]| BuildStep {
        run: run.to_owned(),
        inputs: inputs.iter().map(|path| path.to_string()).collect(),
        outputs: outputs.iter().map(|path| path.to_string()).collect(),
    };
    let cases = [
        (
            vec![BuildStep::command("true"), step("true", &["requirements.txt"], &["deps"])],
            r#"build step 2: input "requirements.txt" does not exist in the source tree"#.to_owned(),
        ),
        (
            vec![step("mkdir dep", &["Procfile"], &["deps"])],
            r#"build step 1: "mkdir dep" left no output "deps""#.to_owned(),
        ),
        (
            vec![step("mkdir lib", &["Procfile"], &["lib"])],
            r#"build step 1: output "lib" is already in the build tree; a cached step adds its outputs, so remove "lib" from the source (or from what earlier steps make)"#.to_owned(),
        ),
        (
            vec![step("echo oops; exit 4", &["bin"], &["deps"])],
            r#"build command "echo oops; exit 4" failed: exit status: 4"#.to_owned(),
        ),
        (
            vec![step("mkdir deps && ln -s /etc/passwd deps/passwd", &["bin"], &["deps"])],
            "deps/passwd is a symlink to /etc/passwd: a link must be relative and stay inside the source or build tree".to_owned(),
        ),
    ];
    for (steps, expected) in cases {
        let error = store
            .build(&src, &steps, &BTreeMap::new(), &Control::default(), &mut |_| {}, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(error.ends_with(&expected), "{error}\nexpected: {expected}");
        for sub in ["tmp", "slugs", "cache", "layers"] {
            assert_eq!(names(&dir.path().join("store").join(sub)), Vec::<String>::new(), "{sub} after {expected}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Unpacked slugs

const UNPACKED_APP: &[&str] = &[
    "Procfile 444 web: ./bin/web",
    "bin/",
    "bin/web 555 #!/bin/sh\necho hi",
    "empty/",
    "lib/",
    "lib/deep/",
    "lib/deep/nested/",
    "lib/deep/nested/data.txt 444 data",
    "out/",
    "out/Procfile.copy 444 web: ./bin/web",
    "out/result.txt 444 built",
];

#[test]
fn unpacked_slug_is_read_only_and_unpacked_once() {
    let dir = TempDir::new().unwrap();
    let src = app(&dir.path().join("src"));
    let store = open_store(dir.path(), "store");
    let (built, _) = build(&store, &src, BUILD, &BTreeMap::new());

    let path = store.unpacked(&built.digest).unwrap();
    assert_eq!(path, dir.path().join("store/unpacked").join(built.digest.hex()));
    assert_eq!(listing(&path), UNPACKED_APP);
    let modes: Vec<String> = dir_modes(&path).iter().map(|mode| format!("{mode:o}")).collect();
    assert!(modes.iter().all(|mode| mode == "555"), "{modes:?}");
    assert_eq!(store.unpacked(&built.digest).unwrap(), path);
    assert_eq!(names(&dir.path().join("store/tmp")), Vec::<String>::new());
}

#[test]
fn unpacked_is_safe_to_call_from_many_threads_at_once() {
    let dir = TempDir::new().unwrap();
    let src = app(&dir.path().join("src"));
    let store = open_store(dir.path(), "store");
    let (built, _) = build(&store, &src, BUILD, &BTreeMap::new());

    // The barrier lines the threads up, so most of them find no tree and unpack their own.
    let start = Barrier::new(8);
    let paths: Vec<PathBuf> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    start.wait();
                    store.unpacked(&built.digest).unwrap()
                })
            })
            .collect();
        threads.into_iter().map(|thread| thread.join().unwrap()).collect()
    });
    assert!(paths.iter().all(|path| *path == paths[0]), "{paths:?}");
    assert_eq!(listing(&paths[0]), UNPACKED_APP);
    assert_eq!(names(&dir.path().join("store/unpacked")), [built.digest.hex()]);
    assert_eq!(names(&dir.path().join("store/tmp")), Vec::<String>::new());
}

#[test]
fn corrupt_slug_is_detected_before_unpacking() {
    let dir = TempDir::new().unwrap();
    let src = app(&dir.path().join("src"));
    let store = open_store(dir.path(), "store");
    let (built, _) = build(&store, &src, BUILD, &BTreeMap::new());

    let slug = dir.path().join("store/slugs").join(format!("{}.tar.gz", built.digest.hex()));
    fs::set_permissions(&slug, Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs::read(&slug).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&slug, &bytes).unwrap();

    let error = store.unpacked(&built.digest).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("slug {} is corrupt: its tarball hashes to {}", built.digest, sha256(&bytes))
    );
    assert_eq!(names(&dir.path().join("store/unpacked")), Vec::<String>::new());
    assert_eq!(names(&dir.path().join("store/tmp")), Vec::<String>::new());

    let missing = Digest::from_sha256(&[0; 32]);
    assert!(!store.has(&missing));
    assert_eq!(store.unpacked(&missing).unwrap_err().to_string(), format!("slug {missing} not found"));
}

// ---------------------------------------------------------------------------------------------
// Imported slugs

#[test]
fn imported_slug_keeps_its_digest() {
    let dir = TempDir::new().unwrap();
    let src = app(&dir.path().join("src"));
    let (built, _) = build(&open_store(dir.path(), "a"), &src, BUILD, &BTreeMap::new());
    let bytes = slug_bytes(&dir.path().join("a"), &built.digest);

    let store = open_store(dir.path(), "b");
    assert_eq!(store.import_slug(&bytes[..]).unwrap(), built.digest);
    assert!(store.has(&built.digest));
    // Importing what the store already has is fine.
    assert_eq!(store.import_slug(&bytes[..]).unwrap(), built.digest);
    assert_eq!(listing(&store.unpacked(&built.digest).unwrap()), UNPACKED_APP);

    // A slug packed by some other tool is named by its own bytes.
    let foreign = tarball(&[Tar::Dir("app".to_owned()), exec("app/run", "#!/bin/sh")]);
    let digest = store.import_slug(&foreign[..]).unwrap();
    assert_eq!(digest, sha256(&foreign));
    assert_eq!(listing(&store.unpacked(&digest).unwrap()), ["app/", "app/run 555 #!/bin/sh"]);
}

#[test]
fn import_slug_rejects_unsafe_entries_and_keeps_nothing() {
    let dir = TempDir::new().unwrap();
    let store = open_store(dir.path(), "store");
    let cases: &[(Vec<Tar>, &str)] = &[
        (vec![file("ok", "ok"), file("../x", "evil")], r#"tarball entry "../x": `..` components are not allowed"#),
        (vec![file("/etc/x", "evil")], r#"tarball entry "/etc/x": absolute paths are not allowed"#),
        (
            vec![Tar::Symlink("link".to_owned(), "/etc".to_owned())],
            r#"tarball entry "link" is a symlink to "/etc": a link must be relative and stay inside the tree"#,
        ),
        (
            vec![Tar::Symlink("link".to_owned(), "..".to_owned())],
            r#"tarball entry "link" is a symlink to "..": a link must be relative and stay inside the tree"#,
        ),
        (
            vec![Tar::Hardlink("hard".to_owned(), "/etc/passwd")],
            r#"tarball entry "hard" is a hard link: hard links are not allowed"#,
        ),
        (
            vec![Tar::PaxPath { header: "harmless".to_owned(), pax: "/etc/x".to_owned() }],
            r#"tarball entry "/etc/x": absolute paths are not allowed"#,
        ),
    ];
    for (entries, error) in cases {
        assert_eq!(store.import_slug(&tarball(entries)[..]).unwrap_err().to_string(), *error);
    }
    let mut truncated = tarball(&[file("a", &"x".repeat(4096))]);
    truncated.truncate(truncated.len() / 2);
    assert_eq!(store.import_slug(&truncated[..]).unwrap_err().to_string(), "cannot read tarball");
    for sub in ["slugs", "tmp", "unpacked"] {
        assert_eq!(names(&dir.path().join("store").join(sub)), Vec::<String>::new(), "{sub}");
    }
}

/// An upload that breaks off is reported as a tarball that cannot be read, cause attached.
#[test]
fn import_slug_reports_a_failing_reader() {
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("connection reset"))
        }
    }
    let dir = TempDir::new().unwrap();
    let store = open_store(dir.path(), "store");
    let error = store.import_slug(Failing).unwrap_err();
    assert_eq!(error.to_string(), "cannot read tarball");
    assert_eq!(std::error::Error::source(&error).unwrap().to_string(), "connection reset");
}

#[test]
fn each_build_command_reports_its_process_group_as_it_starts() {
    let dir = TempDir::new().unwrap();
    let src = app(&dir.path().join("src"));
    let store = open_store(dir.path(), "store");
    // Field 5 of /proc/PID/stat is the process group; `(sh)` has no space in it.
    let report = "echo $$ $(cut -d' ' -f5 /proc/$$/stat)";
    let (mut lines, mut spawned) = (Vec::new(), Vec::new());
    store
        .build(
            &src,
            &commands(&[report, report]),
            &BTreeMap::new(),
            &Control::default(),
            &mut |line| lines.push(line.to_owned()),
            &mut |pid| spawned.push(format!("{pid} {pid}")),
        )
        .unwrap();
    assert_eq!(spawned.len(), 2);
    assert_eq!(lines, spawned, "each command's shell leads its group, and is what on_spawn names");
}

#[test]
fn issue_9_f13_a_build_step_gets_an_empty_home_of_its_own() {
    let dir = TempDir::new().unwrap();
    let store = open_store(dir.path(), "store");
    let src = app(dir.path());
    // The step prints its HOME and what it holds; the operator's home, with its git or npm
    // config, is not it.
    let (_, lines) = build(&store, &src, &["echo \"home=$HOME\"; ls -A \"$HOME\"; echo end"], &env(&[]));
    let home = lines.iter().find_map(|l| l.strip_prefix("home=")).unwrap_or_else(|| panic!("{lines:?}")).to_owned();
    assert_ne!(Some(home.as_str()), std::env::var("HOME").ok().as_deref(), "{lines:?}");
    let after = lines.iter().position(|l| l.starts_with("home=")).unwrap();
    assert_eq!(lines[after + 1], "end", "the home is empty: {lines:?}");
    assert!(!Path::new(&home).exists(), "the home is removed after the step");
}

// ---------------------------------------------------------------------------------------------
// Builds as the app's own user

#[test]
fn issue_9_build_steps_run_as_the_app_user_and_cannot_reach_root_files() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: running build steps as another user needs root");
        return;
    }
    let dir = TempDir::new().unwrap();
    let store = open_store(dir.path(), "store");
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("app.txt"), "app").unwrap();
    fs::write(src.join("requirements.txt"), "dep").unwrap();
    // Root's, as Drover's token and key are.
    let private = dir.path().join("private");
    fs::write(&private, "root's secret").unwrap();
    fs::set_permissions(&private, Permissions::from_mode(0o600)).unwrap();
    let user = model::AppUser::numbered(42).unwrap();
    let read_private = format!("cat {} || echo denied", private.display());
    let steps = vec![
        BuildStep::command(format!(
            "id -u > uid.txt; touch \"$HOME/ok\" && echo home >> uid.txt; ({read_private}) > read.txt"
        )),
        BuildStep {
            run: "mkdir deps && id -u > deps/uid.txt".to_owned(),
            inputs: vec!["requirements.txt".to_owned()],
            outputs: vec!["deps".to_owned()],
        },
    ];
    let built = store
        .build(
            &src,
            &steps,
            &BTreeMap::new(),
            &Control { user: Some(user), ..Default::default() },
            &mut |_| {},
            &mut |_| {},
        )
        .unwrap();
    let slug = store.unpacked(&built.digest).unwrap();
    assert_eq!(fs::read_to_string(slug.join("uid.txt")).unwrap(), format!("{}\nhome\n", user.uid));
    assert_eq!(fs::read_to_string(slug.join("deps/uid.txt")).unwrap(), format!("{}\n", user.uid));
    assert_eq!(fs::read_to_string(slug.join("read.txt")).unwrap(), "denied\n");
    // The slug holds what the source and the commands made, nothing of the user's HOME.
    let mut names: Vec<_> = fs::read_dir(&slug).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["app.txt", "deps", "read.txt", "requirements.txt", "uid.txt"]);
    // Nothing the user made is left behind in the store's scratch space.
    assert_eq!(fs::read_dir(dir.path().join("store/tmp")).unwrap().count(), 0);
}

#[test]
fn issue_9_a_build_past_its_timeout_or_cancelled_is_stopped_with_its_whole_group() {
    let dir = TempDir::new().unwrap();
    let store = open_store(dir.path(), "store");
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("app.txt"), "app").unwrap();
    let pids = dir.path().join("pids");
    // A step that never ends by itself, with a child in its group that ignores SIGTERM.
    let endless = format!(
        "sh -c 'trap \"\" TERM; sleep 600' & echo $! >> {0}; echo $$ >> {0}; echo started; sleep 600",
        pids.display()
    );
    let steps = commands(&["echo first", &endless, "echo never"]);
    let alive = |pid: &str| Path::new(&format!("/proc/{pid}")).exists() && !zombie(pid);

    let timeout = Control { timeout: Some(Duration::from_millis(500)), ..Default::default() };
    let mut lines = Vec::new();
    let error = store
        .build(&src, &steps, &BTreeMap::new(), &timeout, &mut |l| lines.push(l.to_owned()), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(error.contains("build_timeout") && error.contains("sleep 600"), "{error}");
    assert_eq!(lines, ["first", "started"]);
    let started: Vec<String> = fs::read_to_string(&pids).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(started.len(), 2, "{started:?}");
    assert!(started.iter().all(|pid| !alive(pid)), "the whole group is gone: {started:?}");

    // A cancel set while the step runs stops it the same way.
    fs::remove_file(&pids).unwrap();
    let cancel = AtomicBool::new(false);
    let control = Control { cancel: Some(&cancel), ..Default::default() };
    let error = store
        .build(
            &src,
            &steps,
            &BTreeMap::new(),
            &control,
            &mut |line| {
                if line == "started" {
                    cancel.store(true, Ordering::Relaxed);
                }
            },
            &mut |_| {},
        )
        .unwrap_err()
        .to_string();
    assert!(error.contains("cancelled") && error.contains("sleep 600"), "{error}");
    let started: Vec<String> = fs::read_to_string(&pids).unwrap().lines().map(str::to_owned).collect();
    assert!(started.len() == 2 && started.iter().all(|pid| !alive(pid)), "{started:?}");
    // Nothing half-built is left in the store.
    assert_eq!(fs::read_dir(dir.path().join("store/tmp")).unwrap().count(), 0);
}

fn zombie(pid: &str) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next()) == Some('Z')
}
