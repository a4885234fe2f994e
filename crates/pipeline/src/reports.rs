//! Finding and reading the JUnit files a test step left in its reports directory.
//!
//! The directory is written by the app's own test code, so it is read as untrusted: symbolic
//! links are never followed (a link to a server file must not end up in a report), only regular
//! files are opened (a fifo named `x.xml` must not block the step), and the number and size of
//! the files read are bounded.

use crate::junit::{self, TestReport};
use nix::fcntl::OFlag;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The most report files read; each one more is listed as a problem.
const MAX_FILES: usize = 1000;

/// The largest report file read.
const MAX_FILE_SIZE: u64 = 64 * 1024 * 1024;

/// What was found in a reports directory.
#[derive(Debug, Default)]
pub(crate) struct Found {
    /// Every report read, merged in path order; `None` if none could be read.
    pub report: Option<TestReport>,
    /// The files merged into `report`, relative to the reports directory, in path order.
    pub files: Vec<PathBuf>,
    /// Why some `*.xml` files could not be used, each naming the file.
    pub problems: Vec<String>,
}

/// Reads every `*.xml` file under `dir`, recursively, in path order. A missing `dir` holds none.
///
/// Nothing here fails the step's bookkeeping: a directory or file that cannot be read is a
/// problem of the reports, listed in [`Found::problems`] in path order.
pub(crate) fn collect(dir: &Path) -> Found {
    let mut entries = Vec::new();
    match fs::symlink_metadata(dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Ok(metadata) if metadata.is_dir() => walk(dir, Path::new(""), &mut entries),
        Ok(_) => entries.push((PathBuf::new(), Entry::Problem("$DROVER_REPORTS is not a directory".to_owned()))),
        Err(error) => entries.push((PathBuf::new(), Entry::Problem(format!("$DROVER_REPORTS: {error}")))),
    }
    entries.sort_by(|(a, _), (b, _)| a.cmp(b));
    let mut found = Found::default();
    let mut n_files = 0;
    for (relative, entry) in entries {
        let name = relative.display().to_string();
        let problem = match entry {
            Entry::Problem(problem) => problem,
            Entry::Report if n_files == MAX_FILES => {
                format!("{name}: not read: only {MAX_FILES} report files are read")
            }
            Entry::Report => {
                n_files += 1;
                let parsed = read(&dir.join(&relative), &name)
                    .and_then(|xml| junit::parse(&name, &xml).map_err(|error| error.to_string()));
                match parsed {
                    Ok(report) => {
                        found.report.get_or_insert_with(TestReport::default).merge(report);
                        found.files.push(relative);
                        continue;
                    }
                    Err(problem) => problem,
                }
            }
        };
        found.problems.push(problem);
    }
    found
}

/// Something found under the reports directory, by its path relative to it.
enum Entry {
    /// A `*.xml` file to read.
    Report,
    /// Something that cannot be read, and why (naming it).
    Problem(String),
}

/// Adds what is under `dir` (which is `root/relative`) to `entries`, by path relative to `root`.
/// Symbolic links, to directories or files, are not followed.
fn walk(dir: &Path, relative: &Path, entries: &mut Vec<(PathBuf, Entry)>) {
    let problem = |what: &Path, error: io::Error| {
        let shown = if what.as_os_str().is_empty() { ".".to_owned() } else { what.display().to_string() };
        (what.to_owned(), Entry::Problem(format!("{shown}: cannot read directory: {error}")))
    };
    let dir_entries = match fs::read_dir(dir) {
        Ok(dir_entries) => dir_entries,
        Err(error) => return entries.push(problem(relative, error)),
    };
    for dir_entry in dir_entries {
        let dir_entry = match dir_entry {
            Ok(dir_entry) => dir_entry,
            Err(error) => return entries.push(problem(relative, error)),
        };
        let entry_relative = relative.join(dir_entry.file_name());
        let file_type = match dir_entry.file_type() {
            Ok(file_type) => file_type,
            Err(error) => {
                let message = format!("{}: {error}", entry_relative.display());
                entries.push((entry_relative, Entry::Problem(message)));
                continue;
            }
        };
        if file_type.is_dir() {
            walk(&dir_entry.path(), &entry_relative, entries);
            continue;
        }
        if !entry_relative.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("xml")) {
            continue;
        }
        if file_type.is_symlink() {
            let message = format!("{}: is a symbolic link; reports must be regular files", entry_relative.display());
            entries.push((entry_relative, Entry::Problem(message)));
            continue;
        }
        entries.push((entry_relative, Entry::Report));
    }
}

/// The contents of the report at `path`, or why it cannot be used, naming it `name`.
fn read(path: &Path, name: &str) -> Result<String, String> {
    // No following a link swapped in after the walk; no blocking on a fifo.
    let flags = OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK;
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits())
        .open(path)
        .map_err(|error| format!("{name}: cannot open: {error}"))?;
    let metadata = file.metadata().map_err(|error| format!("{name}: cannot read metadata: {error}"))?;
    if !metadata.is_file() {
        return Err(format!("{name}: not a regular file"));
    }
    if metadata.len() > MAX_FILE_SIZE {
        return Err(format!("{name}: {} bytes is larger than the limit of {MAX_FILE_SIZE} bytes", metadata.len()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1).read_to_end(&mut bytes).map_err(|error| format!("{name}: cannot read: {error}"))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(format!("{name}: larger than the limit of {MAX_FILE_SIZE} bytes"));
    }
    String::from_utf8(bytes).map_err(|error| {
        format!(
            "{name}: not UTF-8 (at byte {}); JUnit reports must be written in UTF-8",
            error.utf8_error().valid_up_to()
        )
    })
}
