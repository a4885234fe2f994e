//! The stored shape of one log line: [`LogRecord`], its [`Stream`], and the [`LogSource`] that
//! names the instance it came from.

use model::{AppName, InstanceId, ProcessType, ReleaseId};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The app's standard output.
    Stdout,
    /// The app's standard error.
    Stderr,
    /// Drover itself: the supervisor or the control plane ("started", "exited with code 1").
    System,
}

/// One log line with everything needed to find it again. Stored as one JSON object per line:
///
/// ```json
/// {"ts":1700000000123,"app":"hello","release":3,"instance":"hello-web-v3-a1","process":"web","stream":"stdout","line":"listening"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// When the line was captured, in milliseconds since the Unix epoch (UTC). An integer
    /// rather than an RFC 3339 string: it sorts and merges without parsing, and a reader can
    /// format it however it likes.
    pub ts: u64,
    pub app: AppName,
    pub release: ReleaseId,
    pub instance: InstanceId,
    pub process: ProcessType,
    pub stream: Stream,
    /// The line without its terminating newline (and without a trailing `\r`). Bytes that are
    /// not UTF-8 are replaced with U+FFFD. At most [`crate::MAX_LINE_BYTES`] bytes: longer lines
    /// are split into several records.
    pub line: String,
}

/// The instance a writer captures lines for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSource {
    pub app: AppName,
    pub release: ReleaseId,
    pub instance: InstanceId,
    pub process: ProcessType,
}

impl LogSource {
    /// A record from this source, stamped with the current time.
    pub fn record(&self, stream: Stream, line: String) -> LogRecord {
        LogRecord {
            ts: now_millis(),
            app: self.app.clone(),
            release: self.release,
            instance: self.instance.clone(),
            process: self.process.clone(),
            stream,
            line,
        }
    }
}

/// The current time in milliseconds since the Unix epoch; 0 if the clock is before 1970.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}
