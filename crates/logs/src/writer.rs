//! Appending records: [`LogWriter`] for an instance's supervisor, [`append`] and [`system`] for
//! one-off records from the control plane.
//!
//! Lines longer than [`MAX_LINE_BYTES`] are split (at a UTF-8 character boundary when the line
//! is valid there) so that a single runaway line cannot grow a reader's memory without bound,
//! and bytes that are not UTF-8 are stored lossily as U+FFFD.
//!
//! An instance keeps at most two files: once `<instance>.log` holds [`MAX_SEGMENT_BYTES`], a
//! [`LogWriter`] renames it to `<instance>.log.1` (replacing the older one) and starts a new
//! file, so an app printing as fast as it can fills a bounded amount of disk, and a reader
//! never has more than twice that to go through.

use crate::{LogError, LogRecord, LogSource, Stream};
use model::{AppName, InstanceId};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// How large an instance's current log file grows before it is rotated.
pub const MAX_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// How many bytes a writer appends between looks at its file's size: the size is the file's,
/// so records appended by other processes count too.
const SIZE_CHECK_BYTES: u64 = 256 * 1024;

/// The longest `line` a record holds, in bytes. Longer lines become several records.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The directory holding an app's log files: `root/<app>`.
pub fn app_dir(root: &Path, app: &AppName) -> PathBuf {
    root.join(app.as_str())
}

/// The file holding one instance's records: `root/<app>/<instance>.log`.
pub fn instance_log_path(root: &Path, app: &AppName, instance: &InstanceId) -> PathBuf {
    app_dir(root, app).join(format!("{}.log", instance.as_str()))
}

/// Where an instance's older records are once its file was rotated: `<instance>.log.1`.
pub fn rotated_log_path(current: &Path) -> PathBuf {
    let mut name = current.file_name().expect("a log path ends in a file name").to_owned();
    name.push(".1");
    current.with_file_name(name)
}

/// Appends records for one instance to `root/<app>/<instance>.log`.
///
/// Writes take `&self` and each record is one `write` on an `O_APPEND` file, so a writer can be
/// shared between threads (one per captured stream) without a lock, and other processes may
/// append to the same file at the same time.
///
/// Every [`SIZE_CHECK_BYTES`] it looks at its file's size, and rotates the file (see the module
/// docs) once it holds [`MAX_SEGMENT_BYTES`].
#[derive(Debug)]
pub struct LogWriter {
    file: Mutex<File>,
    /// Appended since the size was last looked at.
    unchecked: AtomicU64,
    path: PathBuf,
    source: LogSource,
}

impl LogWriter {
    /// Opens (creating if needed) the log file of `source`'s instance under `root`.
    pub fn open(root: &Path, source: LogSource) -> Result<Self, LogError> {
        let path = instance_log_path(root, &source.app, &source.instance);
        let file = open_append(&path)?;
        // A file left large by an earlier writer is looked at on the first write.
        Ok(Self { file: Mutex::new(file), unchecked: AtomicU64::new(SIZE_CHECK_BYTES), path, source })
    }

    /// The file this writer appends to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The instance this writer captures lines for.
    pub fn source(&self) -> &LogSource {
        &self.source
    }

    /// Appends one line (without its newline). Lines over [`MAX_LINE_BYTES`] become several
    /// records; bytes that are not UTF-8 are replaced.
    pub fn write_line(&self, stream: Stream, line: &[u8]) -> Result<(), LogError> {
        for chunk in split_line(line, MAX_LINE_BYTES) {
            let record = self.source.record(stream, String::from_utf8_lossy(chunk).into_owned());
            let buf = encode(&record);
            let mut file = self.file.lock().expect("log writers do not panic while writing");
            write_encoded(&file, &self.path, &buf)?;
            let unchecked = self.unchecked.fetch_add(buf.len() as u64, Ordering::Relaxed) + buf.len() as u64;
            if unchecked >= SIZE_CHECK_BYTES {
                self.unchecked.store(0, Ordering::Relaxed);
                self.rotate_if_full(&mut file)?;
            }
        }
        Ok(())
    }

    /// Rotates the file once it is full. Another writer of the same instance (the control
    /// plane's, or an older shim's) may have rotated it already: then this one only moves on
    /// to the new file, so no segment is renamed twice and lost.
    fn rotate_if_full(&self, file: &mut File) -> Result<(), LogError> {
        let ours = file.metadata().map_err(LogError::io("stat log file", &self.path))?;
        if ours.len() < MAX_SEGMENT_BYTES {
            return Ok(());
        }
        let current = match fs::metadata(&self.path) {
            Ok(current) => Some(current),
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(LogError::Io { action: "stat log file", path: self.path.clone(), source }),
        };
        if current.is_some_and(|current| current.ino() == ours.ino() && current.dev() == ours.dev()) {
            let rotated = rotated_log_path(&self.path);
            fs::rename(&self.path, &rotated).map_err(LogError::io("rotate log file", &self.path))?;
        }
        *file = open_append(&self.path)?;
        Ok(())
    }

    /// Appends a [`Stream::System`] line, e.g. "started pid 42".
    pub fn write_system(&self, message: &str) -> Result<(), LogError> {
        self.write_line(Stream::System, message.as_bytes())
    }

    /// Reads `reader` to its end and appends every line as a record of `stream`. A last line
    /// without a newline is kept too. Memory use is bounded by [`MAX_LINE_BYTES`] whatever the
    /// input looks like.
    pub fn capture(&self, stream: Stream, reader: impl Read) -> Result<(), LogError> {
        capture_lines(reader, MAX_LINE_BYTES, |line| self.write_line(stream, strip_cr(line)))
    }

    /// Like [`capture`](Self::capture), but each line goes through `transform` first, which
    /// returns the lines to write now (it may hold a line back and release it later, as a
    /// masker of secrets split across lines does); `release` returns what is still held, and is
    /// called when the stream has been quiet for [`QUIET`] (so a held line, such as a last
    /// `progress 100%`, does not wait for the app's next output) and at its end.
    ///
    /// The pipe is read on a thread of its own, so a reader blocked on a quiet app never keeps
    /// held lines back; `transform` and `release` run on the calling thread.
    pub fn capture_transformed(
        &self,
        stream: Stream,
        reader: impl Read + Send,
        mut transform: impl FnMut(&str) -> Vec<String>,
        mut release: impl FnMut() -> Vec<String>,
    ) -> Result<(), LogError> {
        let (lines, received) = std::sync::mpsc::sync_channel::<Vec<u8>>(64);
        std::thread::scope(|scope| {
            let reading = scope.spawn(move || {
                capture_lines(reader, MAX_LINE_BYTES, |line| {
                    // The receiver goes away only when writing failed; stop reading then.
                    lines.send(line.to_vec()).map_err(|_| LogError::Io {
                        action: "hand a line over from",
                        path: PathBuf::from("pipe"),
                        source: io::Error::other("the log writer stopped"),
                    })
                })
            });
            let written = (|| {
                loop {
                    let out = match received.recv_timeout(QUIET) {
                        Ok(line) => transform(&String::from_utf8_lossy(strip_cr(&line))),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => release(),
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    };
                    for out in out {
                        self.write_line(stream, out.as_bytes())?;
                    }
                }
                for out in release() {
                    self.write_line(stream, out.as_bytes())?;
                }
                Ok(())
            })();
            drop(received);
            let read = reading.join().expect("reading a pipe does not panic");
            written.and(read)
        })
    }
}

/// How long a captured stream is quiet before lines a transform held back are written.
const QUIET: std::time::Duration = std::time::Duration::from_millis(200);

/// Appends `record` to the file of its instance under `root`, creating the file if needed.
pub fn append(root: &Path, record: &LogRecord) -> Result<(), LogError> {
    let path = instance_log_path(root, &record.app, &record.instance);
    let file = open_append(&path)?;
    write_record(&file, &path, record)
}

/// Appends a [`Stream::System`] record for `source`, for events of the control plane such as
/// "instance started" or "deploy rolled back". Long messages are split like any other line.
pub fn system(root: &Path, source: &LogSource, message: &str) -> Result<(), LogError> {
    let writer = LogWriter::open(root, source.clone())?;
    writer.write_system(message)
}

fn open_append(path: &Path) -> Result<File, LogError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(LogError::io("create log directory", dir))?;
    }
    OpenOptions::new().create(true).append(true).open(path).map_err(LogError::io("open log file", path))
}

fn write_record(file: &File, path: &Path, record: &LogRecord) -> Result<(), LogError> {
    write_encoded(file, path, &encode(record))
}

fn encode(record: &LogRecord) -> Vec<u8> {
    let mut buf = serde_json::to_vec(record).expect("a LogRecord always serializes: it has only strings and numbers");
    buf.push(b'\n');
    buf
}

fn write_encoded(mut file: &File, path: &Path, buf: &[u8]) -> Result<(), LogError> {
    // One `write_all` of the whole record: with O_APPEND, Linux writes it at the end of the
    // file in one piece, so concurrent writers do not interleave within a record.
    file.write_all(buf).map_err(LogError::io("append to log file", path))
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Feeds `on_line` every newline-terminated line of `reader` (without the newline), cutting
/// lines longer than `max` bytes into pieces of at most `max` bytes.
fn capture_lines(
    reader: impl Read,
    max: usize,
    mut on_line: impl FnMut(&[u8]) -> Result<(), LogError>,
) -> Result<(), LogError> {
    let mut reader = BufReader::with_capacity(max.max(1024), reader);
    let mut line: Vec<u8> = Vec::new();
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(LogError::Io { action: "read output from", path: PathBuf::from("pipe"), source })
            }
        };
        if buf.is_empty() {
            if !line.is_empty() {
                on_line(&line)?;
            }
            return Ok(());
        }
        // A full line is only cut once the next byte is known, so a line of exactly `max`
        // bytes followed by its newline stays one line rather than gaining an empty sibling.
        if line.len() >= max {
            if buf[0] == b'\n' {
                reader.consume(1);
                on_line(&line)?;
                line.clear();
                continue;
            }
            let cut = char_boundary(&line);
            on_line(&line[..cut])?;
            line.drain(..cut);
            continue;
        }
        let room = max - line.len();
        let window = &buf[..buf.len().min(room)];
        match window.iter().position(|&b| b == b'\n') {
            Some(newline) => {
                line.extend_from_slice(&window[..newline]);
                reader.consume(newline + 1);
                on_line(&line)?;
                line.clear();
            }
            None => {
                let taken = window.len();
                line.extend_from_slice(window);
                reader.consume(taken);
            }
        }
    }
}

/// Splits `line` into pieces of at most `max` bytes, cutting between UTF-8 characters.
fn split_line(mut line: &[u8], max: usize) -> impl Iterator<Item = &[u8]> {
    let mut first = true;
    std::iter::from_fn(move || {
        if line.is_empty() && !std::mem::take(&mut first) {
            return None;
        }
        first = false;
        if line.len() <= max {
            return Some(std::mem::take(&mut line));
        }
        let cut = char_boundary(&line[..max]);
        let (head, tail) = line.split_at(cut);
        line = tail;
        Some(head)
    })
}

/// The length of the longest prefix of `buf` that does not end inside a UTF-8 sequence. Only
/// the last three bytes are examined: anything before them is left to lossy decoding. Never 0
/// for a non-empty `buf`, so callers always make progress.
fn char_boundary(buf: &[u8]) -> usize {
    let len = buf.len();
    for idx in (len.saturating_sub(3)..len).rev() {
        let byte = buf[idx];
        if byte & 0xC0 == 0x80 {
            continue;
        }
        let needed = match byte {
            0xF0..=0xF4 => 4,
            0xE0..=0xEF => 3,
            0xC2..=0xDF => 2,
            // ASCII, or a byte that can never start a sequence: nothing to keep together.
            _ => 1,
        };
        return if idx + needed > len && idx > 0 { idx } else { len };
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(input: &[u8], max: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        capture_lines(input, max, |line| {
            out.push(line.to_vec());
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn capture_splits_lines_and_bounds_length() {
        let table: &[(&[u8], &[&[u8]])] = &[
            (b"", &[]),
            (b"a\nb\n", &[b"a", b"b"]),
            (b"a\n\nb", &[b"a", b"", b"b"]),
            (b"abcdefghij\n", &[b"abcd", b"efgh", b"ij"]),
            (b"abcd\nef", &[b"abcd", b"ef"]),
            (b"abcd\r\n", &[b"abcd", b"\r"]),
            // "é" is two bytes; it is not cut in half.
            ("abcé\n".as_bytes(), &[b"abc", "é".as_bytes()]),
            ("aé€x\n".as_bytes(), &["aé".as_bytes(), "€x".as_bytes()]),
        ];
        for (input, expected) in table {
            let expected: Vec<Vec<u8>> = expected.iter().map(|piece| piece.to_vec()).collect();
            assert_eq!(pieces(input, 4), expected, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn split_line_cuts_at_char_boundaries() {
        let table: &[(&str, &[&str])] = &[
            ("", &[""]),
            ("abcd", &["abcd"]),
            ("abcdef", &["abcd", "ef"]),
            ("abcé", &["abc", "é"]),
            ("€€", &["€", "€"]),
        ];
        for (input, expected) in table {
            let got: Vec<&[u8]> = split_line(input.as_bytes(), 4).collect();
            let expected: Vec<&[u8]> = expected.iter().map(|piece| piece.as_bytes()).collect();
            assert_eq!(got, expected, "{input:?}");
        }
    }

    #[test]
    fn char_boundary_never_returns_zero() {
        assert_eq!(char_boundary(&[0xF0]), 1);
        assert_eq!(char_boundary(&[0xFF, 0xFF]), 2);
        assert_eq!(char_boundary(b"ab\xE2\x82"), 2);
    }
}
