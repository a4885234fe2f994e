//! Reading stored records: [`read_app`] for a snapshot, and the incremental [`Tailer`] that
//! both `read_app` and [`crate::follow`] are built on.
//!
//! A tailer remembers, per file (by device and inode), the offset just past the last complete
//! line it has read, so it can pick up where it left off, notice new instance files, follow a
//! file through its rotation without reading it twice, and start over when a file is truncated.

use crate::{app_dir, instance_log_path, rotated_log_path, LogError, LogRecord};
use model::{AppName, InstanceId, ProcessType, ReleaseId};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What to read. The default reads every record of every instance of the app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Keep only the last N records (after filtering); `None` keeps all.
    pub tail: Option<usize>,
    /// Only this instance's records.
    pub instance: Option<InstanceId>,
    /// Only records of this process type.
    pub process: Option<ProcessType>,
    /// Only records of this release.
    pub release: Option<ReleaseId>,
}

impl ReadOptions {
    fn matches(&self, record: &LogRecord) -> bool {
        self.instance.as_ref().is_none_or(|instance| *instance == record.instance)
            && self.process.as_ref().is_none_or(|process| *process == record.process)
            && self.release.is_none_or(|release| release == record.release)
    }
}

/// The records of `app` under `root` that match `options`, oldest first, merged across instance
/// files by timestamp (records with equal timestamps keep their file order). An app without
/// logs yet has no records. Lines that are not valid records are skipped.
///
/// With a `tail`, each file is read from its end, only as far back as it takes to find that
/// many matching records, so the last lines of a large log cost little.
pub fn read_app(root: &Path, app: &AppName, options: &ReadOptions) -> Result<Vec<LogRecord>, LogError> {
    let mut tailer = Tailer::new(root, app, options.clone());
    let mut records = tailer.first_poll()?;
    keep_tail(&mut records, options.tail);
    Ok(records)
}

/// Drops all but the last `tail` records.
pub(crate) fn keep_tail(records: &mut Vec<LogRecord>, tail: Option<usize>) {
    if let Some(tail) = tail {
        let excess = records.len().saturating_sub(tail);
        records.drain(..excess);
    }
}

/// Reads the records added to an app's log files since the last call.
#[derive(Debug)]
pub(crate) struct Tailer {
    root: PathBuf,
    app: AppName,
    options: ReadOptions,
    /// By file identity, not name: a rotated file is renamed, and what was read of it under
    /// its old name is not read again under the new one.
    cursors: HashMap<FileId, u64>,
}

/// A file's device and inode.
type FileId = (u64, u64);

/// The first bytes read from the end of a file for a tail; doubled until enough records match.
const TAIL_WINDOW: u64 = 64 * 1024;

impl Tailer {
    pub(crate) fn new(root: &Path, app: &AppName, options: ReadOptions) -> Self {
        Self { root: root.to_owned(), app: app.clone(), options, cursors: HashMap::new() }
    }

    /// The first read: the records the options' `tail` asks for (read from each file's end),
    /// or every record without one; later [`Tailer::poll`]s go on from the ends of the files.
    pub(crate) fn first_poll(&mut self) -> Result<Vec<LogRecord>, LogError> {
        let Some(tail) = self.options.tail else { return self.poll() };
        let mut records = Vec::new();
        for path in self.files()? {
            match read_last_records(&path, tail, &self.options) {
                Ok((id, end, found)) => {
                    self.cursors.insert(id, end);
                    records.extend(found);
                }
                Err(LogError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        records.sort_by_key(|record| record.ts);
        Ok(records)
    }

    /// The matching records written since the previous call (all of them on the first call),
    /// sorted by timestamp.
    pub(crate) fn poll(&mut self) -> Result<Vec<LogRecord>, LogError> {
        let mut records = Vec::new();
        let mut seen = HashMap::new();
        for path in self.files()? {
            let offset = |id: FileId| self.cursors.get(&id).copied().unwrap_or(0);
            match read_new_lines(&path, offset) {
                Ok((id, end, bytes)) => {
                    seen.insert(id, end);
                    parse_lines(&path, &bytes, &self.options, &mut records);
                }
                // The file was removed between listing and reading: it has nothing to give.
                Err(LogError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        self.cursors = seen;
        records.sort_by_key(|record| record.ts);
        Ok(records)
    }

    /// The files to read: each instance's current file and its rotated one, oldest first.
    fn files(&self) -> Result<Vec<PathBuf>, LogError> {
        if let Some(instance) = &self.options.instance {
            let path = instance_log_path(&self.root, &self.app, instance);
            return Ok(vec![rotated_log_path(&path), path]);
        }
        let dir = app_dir(&self.root, &self.app);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(LogError::Io { action: "list log directory", path: dir, source }),
        };
        let mut files = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(LogError::io("list log directory", &dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // `a.log.1` sorts before `a.log` here: (instance, 0) before (instance, 1).
            if let Some(instance) = name.strip_suffix(".log.1") {
                files.insert((instance.to_owned(), 0), entry.path());
            } else if let Some(instance) = name.strip_suffix(".log") {
                files.insert((instance.to_owned(), 1), entry.path());
            }
        }
        Ok(files.into_values().collect())
    }
}

/// The identity of the open file at `path`, its length and the file itself.
fn open_log(path: &Path) -> Result<(File, FileId, u64), LogError> {
    let file = File::open(path).map_err(LogError::io("open log file", path))?;
    let metadata = file.metadata().map_err(LogError::io("stat log file", path))?;
    Ok((file, (metadata.dev(), metadata.ino()), metadata.len()))
}

/// The complete lines appended to `path` since the offset `offset` gives for its identity:
/// returns that identity, the offset just past the lines, and the lines. Starts over if the
/// file is shorter than the offset (truncated, or a new file that took an old one's inode).
fn read_new_lines(path: &Path, offset: impl Fn(FileId) -> u64) -> Result<(FileId, u64, Vec<u8>), LogError> {
    let (mut file, id, len) = open_log(path)?;
    let mut offset = offset(id);
    if len < offset {
        offset = 0;
    }
    if len == offset {
        return Ok((id, offset, Vec::new()));
    }
    file.seek(SeekFrom::Start(offset)).map_err(LogError::io("seek in log file", path))?;
    let mut bytes = Vec::new();
    file.take(len - offset).read_to_end(&mut bytes).map_err(LogError::io("read log file", path))?;
    // A line without its newline is still being written: leave it for the next call.
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |newline| newline + 1);
    bytes.truncate(complete);
    Ok((id, offset + complete as u64, bytes))
}

/// The last `tail` records of `path` that match `options`, read from the end in growing
/// windows: returns the file's identity, the offset just past its last complete line, and the
/// records, oldest first.
fn read_last_records(
    path: &Path,
    tail: usize,
    options: &ReadOptions,
) -> Result<(FileId, u64, Vec<LogRecord>), LogError> {
    let (mut file, id, len) = open_log(path)?;
    let mut window = TAIL_WINDOW;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start)).map_err(LogError::io("seek in log file", path))?;
        let mut bytes = Vec::new();
        file.by_ref().take(len - start).read_to_end(&mut bytes).map_err(LogError::io("read log file", path))?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |newline| newline + 1);
        let end = start + complete as u64;
        bytes.truncate(complete);
        // The window's first line is cut unless the window starts at the file's start.
        let first = match start {
            0 => 0,
            _ => bytes.iter().position(|&b| b == b'\n').map_or(bytes.len(), |newline| newline + 1),
        };
        let mut records = Vec::new();
        parse_lines(path, &bytes[first..], options, &mut records);
        if records.len() >= tail || start == 0 {
            keep_tail(&mut records, Some(tail));
            return Ok((id, end, records));
        }
        window = window.saturating_mul(2);
    }
}

fn parse_lines(path: &Path, bytes: &[u8], options: &ReadOptions, records: &mut Vec<LogRecord>) {
    for line in bytes.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
        match serde_json::from_slice::<LogRecord>(line) {
            Ok(record) if options.matches(&record) => records.push(record),
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(path = %path.display(), %error, "skipping malformed log line")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{append, LogSource, Stream};
    use std::io::Write;

    fn source(instance: &str, process: &str, release: u64) -> LogSource {
        LogSource {
            app: AppName::parse("hello").unwrap(),
            release: ReleaseId(release),
            instance: InstanceId::parse(instance).unwrap(),
            process: ProcessType::parse(process).unwrap(),
        }
    }

    fn put(root: &Path, source: &LogSource, ts: u64, line: &str) {
        let mut record = source.record(Stream::Stdout, line.to_owned());
        record.ts = ts;
        append(root, &record).unwrap();
    }

    fn lines(records: &[LogRecord]) -> Vec<&str> {
        records.iter().map(|record| record.line.as_str()).collect()
    }

    #[test]
    fn read_app_merges_filters_and_tails() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let web1 = source("hello-web-v1-a", "web", 1);
        let web2 = source("hello-web-v2-b", "web", 2);
        let worker = source("hello-worker-v2-c", "worker", 2);
        put(root, &web1, 10, "web1 first");
        put(root, &web1, 30, "web1 second");
        put(root, &worker, 20, "worker first");
        put(root, &web2, 30, "web2 tie");
        put(root, &web2, 40, "web2 last");

        let app = AppName::parse("hello").unwrap();
        let check = |options: ReadOptions, expected: &[&str]| {
            let records = read_app(root, &app, &options).unwrap();
            assert_eq!(lines(&records), expected, "{options:?}");
        };
        check(ReadOptions::default(), &["web1 first", "worker first", "web1 second", "web2 tie", "web2 last"]);
        check(ReadOptions { tail: Some(2), ..Default::default() }, &["web2 tie", "web2 last"]);
        check(ReadOptions { tail: Some(0), ..Default::default() }, &[]);
        check(
            ReadOptions { instance: Some(web1.instance.clone()), ..Default::default() },
            &["web1 first", "web1 second"],
        );
        check(
            ReadOptions { process: Some(ProcessType::web()), tail: Some(3), ..Default::default() },
            &["web1 second", "web2 tie", "web2 last"],
        );
        check(
            ReadOptions { release: Some(ReleaseId(2)), ..Default::default() },
            &["worker first", "web2 tie", "web2 last"],
        );
        check(ReadOptions { instance: Some(InstanceId::parse("hello-web-v9-zz").unwrap()), ..Default::default() }, &[]);
        let other = AppName::parse("other").unwrap();
        assert!(read_app(root, &other, &ReadOptions::default()).unwrap().is_empty());
    }

    #[test]
    fn tailer_reads_only_complete_lines_and_survives_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let web = source("hello-web-v1-a", "web", 1);
        let app = web.app.clone();
        let mut tailer = Tailer::new(root, &app, ReadOptions::default());
        assert!(tailer.poll().unwrap().is_empty());

        put(root, &web, 1, "one");
        assert_eq!(lines(&tailer.poll().unwrap()), ["one"]);
        assert!(tailer.poll().unwrap().is_empty());

        // Half a record, as a reader may see it while the writer is in the middle of it.
        let path = instance_log_path(root, &app, &web.instance);
        let mut record = web.record(Stream::Stdout, "two".to_owned());
        record.ts = 2;
        let json = serde_json::to_vec(&record).unwrap();
        let (head, rest) = json.split_at(10);
        let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(head).unwrap();
        assert!(tailer.poll().unwrap().is_empty());
        file.write_all(rest).unwrap();
        file.write_all(b"\nnot json\n").unwrap();
        assert_eq!(lines(&tailer.poll().unwrap()), ["two"]);

        // Truncated (rotated in place): read from the start again.
        File::create(&path).unwrap();
        put(root, &web, 3, "three");
        assert_eq!(lines(&tailer.poll().unwrap()), ["three"]);
    }
}
