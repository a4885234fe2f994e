//! Writing, reading and following log files in a temporary directory, through the public API.

use logs::{
    follow, instance_log_path, read_app, system, Follow, LogRecord, LogSource, LogWriter, ReadOptions, Stream,
    MAX_LINE_BYTES,
};
use model::{AppName, InstanceId, ProcessType, ReleaseId};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn source(instance: &str) -> LogSource {
    LogSource {
        app: AppName::parse("hello").unwrap(),
        release: ReleaseId(7),
        instance: InstanceId::parse(instance).unwrap(),
        process: ProcessType::web(),
    }
}

fn all(root: &Path) -> Vec<LogRecord> {
    read_app(root, &AppName::parse("hello").unwrap(), &ReadOptions::default()).unwrap()
}

#[test]
fn captured_lines_carry_their_instance() {
    let dir = tempfile::tempdir().unwrap();
    let source = source("hello-web-v7-a1");
    let writer = LogWriter::open(dir.path(), source.clone()).unwrap();
    assert_eq!(writer.path(), instance_log_path(dir.path(), &source.app, &source.instance));
    writer.capture(Stream::Stdout, &b"listening on 8080\r\nready\nno newline"[..]).unwrap();
    writer.capture(Stream::Stderr, &b"warning\n"[..]).unwrap();
    system(dir.path(), &source, "instance started").unwrap();

    let records = all(dir.path());
    let got: Vec<(Stream, &str)> = records.iter().map(|r| (r.stream, r.line.as_str())).collect();
    assert_eq!(
        got,
        [
            (Stream::Stdout, "listening on 8080"),
            (Stream::Stdout, "ready"),
            (Stream::Stdout, "no newline"),
            (Stream::Stderr, "warning"),
            (Stream::System, "instance started"),
        ]
    );
    for record in &records {
        assert_eq!(record.app, source.app);
        assert_eq!(record.release, source.release);
        assert_eq!(record.instance, source.instance);
        assert_eq!(record.process, source.process);
        assert!(record.ts > 0);
    }
    let first_line = std::fs::read_to_string(writer.path()).unwrap().lines().next().unwrap().to_owned();
    let json: serde_json::Value = serde_json::from_str(&first_line).unwrap();
    assert_eq!(json["stream"], "stdout");
    assert_eq!(json["release"], 7);
    assert!(json["ts"].is_u64());
}

#[test]
fn long_lines_are_split_and_bad_bytes_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let writer = LogWriter::open(dir.path(), source("hello-web-v7-a1")).unwrap();
    // Three and a bit chunks, with a two-byte character straddling every 64 KiB boundary.
    let long: String = "é".repeat(MAX_LINE_BYTES * 3 / 2 + 100);
    let mut input = long.clone().into_bytes();
    input.extend_from_slice(b"\nbad \xff\xfe bytes\n");
    writer.capture(Stream::Stdout, input.as_slice()).unwrap();

    let records = all(dir.path());
    let (pieces, rest) = records.split_at(records.len() - 1);
    assert_eq!(pieces.len(), 4);
    assert!(pieces.iter().all(|r| r.line.len() <= MAX_LINE_BYTES && !r.line.contains('\u{FFFD}')));
    assert_eq!(pieces.iter().map(|r| r.line.as_str()).collect::<String>(), long);
    assert_eq!(rest[0].line, "bad \u{FFFD}\u{FFFD} bytes");

    // A long line handed over directly is split the same way.
    let dir = tempfile::tempdir().unwrap();
    let writer = LogWriter::open(dir.path(), source("hello-web-v7-a1")).unwrap();
    writer.write_line(Stream::Stderr, "x".repeat(MAX_LINE_BYTES + 1).as_bytes()).unwrap();
    let lengths: Vec<usize> = all(dir.path()).iter().map(|r| r.line.len()).collect();
    assert_eq!(lengths, [MAX_LINE_BYTES, 1]);
}

#[test]
fn concurrent_writers_do_not_interleave_records() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Arc::new(LogWriter::open(dir.path(), source("hello-web-v7-a1")).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|thread_idx| {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || {
                let line = format!("{thread_idx}").repeat(10_000);
                for _ in 0..50 {
                    writer.write_line(Stream::Stdout, line.as_bytes()).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let text = std::fs::read_to_string(writer.path()).unwrap();
    assert_eq!(text.lines().count(), 200);
    for line in text.lines() {
        let record: LogRecord = serde_json::from_str(line).unwrap();
        assert_eq!(record.line.len(), 10_000);
    }
}

/// The next followed record; the deadline only turns a hang into a failure.
async fn next(follow: &mut Follow) -> LogRecord {
    tokio::time::timeout(Duration::from_secs(10), follow.next()).await.expect("a record within 10s").unwrap()
}

#[tokio::test]
async fn follow_sends_history_then_new_records_of_new_instances() {
    let dir = tempfile::tempdir().unwrap();
    let first = LogWriter::open(dir.path(), source("hello-web-v7-a1")).unwrap();
    first.write_system("old").unwrap();
    first.write_system("recent").unwrap();

    let app = AppName::parse("hello").unwrap();
    let mut follow = follow(dir.path(), &app, ReadOptions { tail: Some(1), ..Default::default() }).await.unwrap();
    assert_eq!(next(&mut follow).await.line, "recent");

    first.write_line(Stream::Stdout, b"new line").unwrap();
    assert_eq!(next(&mut follow).await.line, "new line");

    let second = LogWriter::open(dir.path(), source("hello-web-v7-b2")).unwrap();
    second.write_line(Stream::Stderr, b"from a new instance").unwrap();
    let record = next(&mut follow).await;
    assert_eq!((record.instance.as_str(), record.line.as_str()), ("hello-web-v7-b2", "from a new instance"));
}

#[tokio::test]
async fn follow_applies_filters_to_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let wanted = source("hello-web-v7-a1");
    let app = wanted.app.clone();
    let options = ReadOptions { tail: Some(0), instance: Some(wanted.instance.clone()), ..Default::default() };
    let mut follow = follow(dir.path(), &app, options).await.unwrap();
    LogWriter::open(dir.path(), source("hello-web-v7-b2")).unwrap().write_system("other").unwrap();
    LogWriter::open(dir.path(), wanted).unwrap().write_system("mine").unwrap();
    assert_eq!(next(&mut follow).await.line, "mine");
}

#[test]
fn a_held_line_is_written_once_the_stream_is_quiet_not_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let writer = LogWriter::open(dir.path(), source("hello-web-v7-a2")).unwrap();
    let (reader, mut pipe) = std::io::pipe().unwrap();
    let capture = std::thread::spawn({
        let writer = writer;
        move || {
            // Holds every line back, as a masker holds a line that may end with half a secret.
            let held = std::cell::RefCell::new(Vec::new());
            writer.capture_transformed(
                Stream::Stdout,
                reader,
                |line| {
                    held.borrow_mut().push(line.to_owned());
                    Vec::new()
                },
                || std::mem::take(&mut *held.borrow_mut()),
            )
        }
    });
    use std::io::Write;
    pipe.write_all(b"progress 100%\n").unwrap();
    // The app goes quiet with its pipe still open: the held line is written anyway.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while all(dir.path()).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the held line was never written");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(all(dir.path())[0].line, "progress 100%");
    drop(pipe);
    capture.join().unwrap().unwrap();
    assert_eq!(all(dir.path()).len(), 1);
}

/// Writes numbered lines of about 100 bytes until the writer's file was rotated `rotations`
/// times, and ten more; returns how many lines were written.
fn flood(writer: &LogWriter, rotations: usize) -> usize {
    use std::os::unix::fs::MetadataExt;
    let padding = "x".repeat(60);
    let inode = || std::fs::metadata(writer.path()).unwrap().ino();
    let (mut current, mut seen, mut n) = (inode(), 0, 0);
    while seen < rotations {
        writer.write_line(Stream::Stdout, format!("line {n:08} {padding}").as_bytes()).unwrap();
        n += 1;
        if inode() != current {
            (current, seen) = (inode(), seen + 1);
        }
    }
    for _ in 0..10 {
        writer.write_line(Stream::Stdout, format!("line {n:08} {padding}").as_bytes()).unwrap();
        n += 1;
    }
    n
}

#[test]
fn issue_9_a_flooding_instance_keeps_two_bounded_files_and_a_tail_reads_its_last_lines() {
    let dir = tempfile::tempdir().unwrap();
    let source = source("hello-web-v7-f1");
    let writer = LogWriter::open(dir.path(), source.clone()).unwrap();
    let written = flood(&writer, 3);
    // Two files: the current one and the last rotated one, each within a segment and a check.
    let names: std::collections::BTreeSet<String> = std::fs::read_dir(dir.path().join("hello"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["hello-web-v7-f1.log", "hello-web-v7-f1.log.1"].map(str::to_owned).into());
    let total: u64 = names.iter().map(|n| std::fs::metadata(dir.path().join("hello").join(n)).unwrap().len()).sum();
    assert!(total <= 2 * logs::MAX_SEGMENT_BYTES + 512 * 1024, "{total} bytes kept");

    let app = source.app.clone();
    let tail = read_app(dir.path(), &app, &ReadOptions { tail: Some(3), ..Default::default() }).unwrap();
    let expected: Vec<String> = (written - 3..written).map(|n| format!("line {n:08} ")).collect();
    let got: Vec<String> = tail.iter().map(|r| r.line[..14].to_owned()).collect();
    assert_eq!(got, expected);
    // The whole history kept is in order and ends with the last line: nothing read twice.
    let history = all(dir.path());
    let numbers: Vec<usize> = history.iter().map(|r| r.line[5..13].parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "records are consecutive");
    assert_eq!(numbers.last(), Some(&(written - 1)));
    // A tail longer than the current file reaches into the rotated one.
    let current_lines = std::fs::read_to_string(writer.path()).unwrap().lines().count();
    let long = read_app(dir.path(), &app, &ReadOptions { tail: Some(current_lines + 5), ..Default::default() });
    assert_eq!(long.unwrap().len(), current_lines + 5);
}

#[tokio::test]
async fn issue_9_following_a_log_through_its_rotation_delivers_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let source = source("hello-web-v7-f2");
    let writer = LogWriter::open(dir.path(), source.clone()).unwrap();
    writer.write_line(Stream::Stdout, b"line 00000000 before").unwrap();
    let options = ReadOptions { tail: Some(1), ..Default::default() };
    let mut follow = follow(dir.path(), &source.app, options).await.unwrap();
    assert!(next(&mut follow).await.line.starts_with("line 00000000"));
    // Written from another thread, so the follower polls while the file rotates under it.
    let written = {
        let writer = Arc::new(writer);
        let writing = Arc::clone(&writer);
        tokio::task::spawn_blocking(move || {
            // Continues the numbering after the line above. About 12 MB of records: one rotation,
            // so even a follower that polls only once it is all written has lost nothing.
            for n in 1..=60_000usize {
                writing.write_line(Stream::Stdout, format!("line {n:08} {}", "y".repeat(60)).as_bytes()).unwrap();
            }
            60_001
        })
        .await
        .unwrap()
    };
    let mut expected = 1;
    while expected < written {
        let record = next(&mut follow).await;
        let n: usize = record.line[5..13].parse().unwrap();
        assert_eq!(n, expected, "each record once, in order");
        expected += 1;
    }
    let current = instance_log_path(dir.path(), &source.app, &source.instance);
    let rotated = std::fs::metadata(logs::rotated_log_path(&current)).unwrap().len();
    assert!(rotated >= logs::MAX_SEGMENT_BYTES && std::fs::metadata(&current).unwrap().len() < rotated);
}
