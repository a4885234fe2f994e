//! Reading stored records: [`read_app`] for a snapshot, and the incremental [`Tailer`] that
//! both `read_app` and [`crate::follow`] are built on.
//!
//! A tailer remembers, per instance file, the offset just past the last complete line it has
//! read and the file's inode, so it can pick up where it left off, notice new instance files,
//! and start over when a file is truncated or replaced.

use crate::{app_dir, instance_log_path, LogError, LogRecord};
use model::{AppName, InstanceId, ProcessType, ReleaseId};
use std::collections::BTreeMap;
use std::ffi::OsString;
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
pub fn read_app(root: &Path, app: &AppName, options: &ReadOptions) -> Result<Vec<LogRecord>, LogError> {
    let mut tailer = Tailer::new(root, app, options.clone());
    let mut records = tailer.poll()?;
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
    cursors: BTreeMap<OsString, Cursor>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    inode: u64,
    /// Just past the last complete line read.
    offset: u64,
}

impl Tailer {
    pub(crate) fn new(root: &Path, app: &AppName, options: ReadOptions) -> Self {
        Self { root: root.to_owned(), app: app.clone(), options, cursors: BTreeMap::new() }
    }

    /// The matching records written since the previous call (all of them on the first call),
    /// sorted by timestamp.
    pub(crate) fn poll(&mut self) -> Result<Vec<LogRecord>, LogError> {
        let files = self.files()?;
        self.cursors.retain(|name, _| files.contains_key(name));
        let mut records = Vec::new();
        for (name, path) in files {
            let cursor = self.cursors.entry(name).or_default();
            match read_new_lines(&path, cursor) {
                Ok(bytes) => parse_lines(&path, &bytes, &self.options, &mut records),
                // The file was removed between listing and reading: it has nothing to give.
                Err(LogError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        records.sort_by_key(|record| record.ts);
        Ok(records)
    }

    /// The instance files to read, by file name.
    fn files(&self) -> Result<BTreeMap<OsString, PathBuf>, LogError> {
        if let Some(instance) = &self.options.instance {
            let path = instance_log_path(&self.root, &self.app, instance);
            let name = path.file_name().expect("an instance log path ends in a file name").to_owned();
            return Ok(BTreeMap::from([(name, path)]));
        }
        let dir = app_dir(&self.root, &self.app);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(source) => return Err(LogError::Io { action: "list log directory", path: dir, source }),
        };
        let mut files = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(LogError::io("list log directory", &dir))?;
            let path = entry.path();
            if path.extension().is_some_and(|ext| ext == "log") {
                files.insert(entry.file_name(), path);
            }
        }
        Ok(files)
    }
}

/// The complete lines appended to `path` since `cursor`, advancing it. Starts over if the file
/// was replaced or truncated.
fn read_new_lines(path: &Path, cursor: &mut Cursor) -> Result<Vec<u8>, LogError> {
    let mut file = File::open(path).map_err(LogError::io("open log file", path))?;
    let metadata = file.metadata().map_err(LogError::io("stat log file", path))?;
    if metadata.ino() != cursor.inode || metadata.len() < cursor.offset {
        *cursor = Cursor { inode: metadata.ino(), offset: 0 };
    }
    if metadata.len() == cursor.offset {
        return Ok(Vec::new());
    }
    file.seek(SeekFrom::Start(cursor.offset)).map_err(LogError::io("seek in log file", path))?;
    let mut bytes = Vec::new();
    file.take(metadata.len() - cursor.offset).read_to_end(&mut bytes).map_err(LogError::io("read log file", path))?;
    // A line without its newline is still being written: leave it for the next call.
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |newline| newline + 1);
    bytes.truncate(complete);
    cursor.offset += complete as u64;
    Ok(bytes)
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
