//! Following an app's logs live: [`follow`] polls the app's log directory every
//! [`POLL_INTERVAL`] and sends new records as they are appended, including those of instances
//! whose files appear after following started.
//!
//! Polling keeps this portable and dependency-free; a fifth of a second of delay is fine for a
//! human watching logs.

use crate::reader::{keep_tail, Tailer};
use crate::{LogError, LogRecord, ReadOptions};
use model::AppName;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

/// How often [`follow`] looks for new records and new instance files.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The records of a followed app, in the order they are found. See [`follow`].
#[derive(Debug)]
pub struct Follow {
    records: mpsc::Receiver<LogRecord>,
}

impl Follow {
    /// The next record; waits until one is written. Returns `None` only if the background task
    /// stopped, which it does only if its blocking reader panicked.
    pub async fn next(&mut self) -> Option<LogRecord> {
        self.records.recv().await
    }

    /// The underlying channel, e.g. to wrap it in a `Stream` or `select!` on it.
    pub fn into_receiver(self) -> mpsc::Receiver<LogRecord> {
        self.records
    }
}

/// Follows `app`'s logs under `root`: first the existing records selected by `options` (so
/// `tail: Some(10)` shows the last ten, `tail: Some(0)` only new records, `tail: None` the whole
/// history), then every new matching record as it is written. Filters apply to new records too.
///
/// The history is read before this returns, so every record written afterwards is delivered.
/// Following continues on a tokio task that ends when the returned [`Follow`] is dropped; read
/// errors after the first are logged and retried at the next poll.
pub async fn follow(root: &Path, app: &AppName, options: ReadOptions) -> Result<Follow, LogError> {
    let tail = options.tail;
    let tailer = Tailer::new(root, app, options);
    let (tailer, history) = on_blocking_pool(tailer, Tailer::first_poll).await?;
    let mut history = history?;
    keep_tail(&mut history, tail);
    let (sender, records) = mpsc::channel(1024);
    tokio::spawn(run(tailer, history, sender));
    Ok(Follow { records })
}

/// Reads with `read` (the first read or a later poll) on the blocking pool, since file reads
/// block, and hands the tailer back with what it read.
async fn on_blocking_pool(
    mut tailer: Tailer,
    read: fn(&mut Tailer) -> Result<Vec<LogRecord>, LogError>,
) -> Result<(Tailer, Result<Vec<LogRecord>, LogError>), LogError> {
    tokio::task::spawn_blocking(move || {
        let records = read(&mut tailer);
        (tailer, records)
    })
    .await
    .map_err(LogError::Reader)
}

async fn run(mut tailer: Tailer, history: Vec<LogRecord>, sender: mpsc::Sender<LogRecord>) {
    for record in history {
        if sender.send(record).await.is_err() {
            return;
        }
    }
    let mut interval = tokio::time::interval(POLL_INTERVAL);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if sender.is_closed() {
            return;
        }
        let records = match on_blocking_pool(tailer, Tailer::poll).await {
            Ok((returned, records)) => {
                tailer = returned;
                records
            }
            Err(error) => {
                tracing::error!(error = %error, "log follower stopped");
                return;
            }
        };
        let records = match records {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(error = %error, "cannot read logs, retrying");
                continue;
            }
        };
        for record in records {
            if sender.send(record).await.is_err() {
                return;
            }
        }
    }
}
