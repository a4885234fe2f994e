//! Build and test commands never outlive the server that started them, not even a `kill -9` of
//! it.
//!
//! Each build or test command runs in its own process group, led by its shell. A graceful stop
//! cancels them (`runs::cancel_all`), but a server that dies leaves them running, adopted by
//! init: a test's `sleep 300` or a build daemon would run on forever. So every group is
//! recorded in the store (leader pid = group id, the leader's start time and this boot's id)
//! right after its shell is spawned, and forgotten once the spawner has killed it. A server
//! that starts kills whatever is left of the recorded groups before anything else runs.
//!
//! The server's git processes (`git http-backend` serving a push, `git archive`, a source's
//! fetch) run in recorded groups too ([`GroupRecord`], used by [`crate::gitcmd`]): a push cut
//! off by a `kill -9` leaves `receive-pack`, `unpack-objects` or a hook behind.
//!
//! Only processes of the recorded group that started no earlier than its leader are killed:
//! older ones cannot be its descendants. A group id that the kernel handed to an unrelated
//! group while the server was down (the pid counter would have to wrap around) is not told
//! apart; a record from another boot is dropped without killing anything. A command spawned in
//! the instant before a `kill -9`, before its record was written, is not recorded.

use deploy::reconciler::now_ms;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use runtime::procfs;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{StepGroup, Store};
use tracing::{info, warn};

/// How long a starting server waits for the processes it killed to be gone before it moves on.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Keeps the store's record of the one process group a build or test step may have running.
/// Pass [`GroupRecorder::spawned`] as the spawner's `on_spawn`; dropping the recorder forgets the
/// last group, which the spawner has killed by the time it returns.
pub(crate) struct GroupRecorder<'a> {
    store: &'a Mutex<Store>,
    what: String,
    boot_id: Option<String>,
    current: Option<StepGroup>,
}

impl<'a> GroupRecorder<'a> {
    /// `what` names the step in logs, e.g. `build of shop`.
    pub(crate) fn new(store: &'a Mutex<Store>, what: String) -> Self {
        Self { store, what, boot_id: procfs::boot_id(), current: None }
    }

    /// Records the group led by `pid`, just spawned, and forgets the previous one: the spawners
    /// kill a command's group before they start the next command.
    pub(crate) fn spawned(&mut self, pid: u32) {
        self.forget();
        self.current = record(&self.lock(), pid, self.boot_id.clone(), &self.what);
    }

    fn forget(&mut self) {
        if let Some(group) = self.current.take() {
            forget(&self.lock(), &group);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'a, Store> {
        self.store.lock().expect("store mutex is never poisoned: holders do not panic")
    }
}

impl Drop for GroupRecorder<'_> {
    fn drop(&mut self) {
        self.forget();
    }
}

/// Records the group led by `pid`, just spawned (its leader not reaped yet, so its /proc entry
/// is there even if it already exited). `None`, logged, if it cannot be recorded.
fn record(store: &Store, pid: u32, boot_id: Option<String>, what: &str) -> Option<StepGroup> {
    let (Some(stat), Some(boot_id)) = (procfs::stat(pid), boot_id) else {
        warn!(pid, what, "cannot read the start time of a process group; it is not recorded");
        return None;
    };
    let group = StepGroup {
        pgid: pid,
        leader_start_time: stat.start_time,
        boot_id,
        what: what.to_owned(),
        recorded_at_ms: now_ms(),
    };
    match store.record_step_group(&group) {
        Ok(()) => Some(group),
        Err(e) => {
            warn!(pid, what, error = %e, "could not record a process group");
            None
        }
    }
}

fn forget(store: &Store, group: &StepGroup) {
    if let Err(e) = store.forget_step_group(group) {
        warn!(pgid = group.pgid, what = %group.what, error = %e, "could not forget a process group");
    }
}

/// The live processes of `group` that can be its leader's descendants.
fn members(group: &StepGroup) -> Vec<u32> {
    procfs::group_members_since(group.pgid, group.leader_start_time)
}

/// Sends `signal` to each live process of `group`.
fn signal_members(group: &StepGroup, signal: Signal) {
    for pid in members(group) {
        let Ok(pid) = i32::try_from(pid) else { continue };
        if let Err(errno) = kill(Pid::from_raw(pid), signal) {
            warn!(pid, pgid = group.pgid, %errno, ?signal, "cannot signal a process of a recorded group");
        }
    }
}

/// The store's record of the process group of one git process of the server's, from just
/// after it was spawned until this is dropped. Dropping it SIGKILLs what is left of the group
/// (nothing, when git finished) and forgets it.
pub(crate) struct GroupRecord {
    store: Arc<Mutex<Store>>,
    group: Option<StepGroup>,
}

impl GroupRecord {
    /// Records the group led by `pid`, just spawned; `what` names it in logs.
    pub(crate) fn new(store: Arc<Mutex<Store>>, pid: u32, what: String) -> Self {
        let group = record(&lock(&store), pid, procfs::boot_id(), &what);
        Self { store, group }
    }

    /// Whether a process of the group still runs.
    pub(crate) fn is_alive(&self) -> bool {
        self.group.as_ref().is_some_and(|group| !members(group).is_empty())
    }

    /// Sends `signal` to every process of the group.
    pub(crate) fn signal(&self, signal: Signal) {
        if let Some(group) = &self.group {
            signal_members(group, signal);
        }
    }
}

impl Drop for GroupRecord {
    fn drop(&mut self) {
        if let Some(group) = self.group.take() {
            signal_members(&group, Signal::SIGKILL);
            forget(&lock(&self.store), &group);
        }
    }
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().expect("store mutex is never poisoned: holders do not panic")
}

/// Kills (SIGKILL) what is left of the process groups (build, test, git) a previous server
/// recorded, waits (bounded) for it to be gone, and forgets the groups that are. Call it at
/// startup, before runs are marked interrupted and before anything new is spawned.
pub(crate) async fn kill_leftovers(store: &Store) -> anyhow::Result<()> {
    let groups = store.step_groups()?;
    if groups.is_empty() {
        return Ok(());
    }
    let boot_id = procfs::boot_id();
    let ours = |group: &StepGroup| boot_id.as_deref() == Some(group.boot_id.as_str());
    for group in groups.iter().filter(|group| ours(group)) {
        let n_processes = members(group).len();
        if n_processes > 0 {
            info!(pgid = group.pgid, what = %group.what, n_processes, "killing processes left by a server that stopped");
        }
        signal_members(group, Signal::SIGKILL);
    }
    let deadline = Instant::now() + KILL_WAIT;
    let alive = |group: &StepGroup| ours(group) && !members(group).is_empty();
    while groups.iter().any(alive) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for group in &groups {
        if alive(group) {
            warn!(pgid = group.pgid, what = %group.what, "leftover step processes survived SIGKILL; trying again at the next start");
            continue;
        }
        store.forget_step_group(group)?;
    }
    Ok(())
}
