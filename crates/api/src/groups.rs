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
//! Only processes of the recorded group that started no earlier than its leader are killed:
//! older ones cannot be its descendants. A group id that the kernel handed to an unrelated
//! group while the server was down (the pid counter would have to wrap around) is not told
//! apart; a record from another boot is dropped without killing anything. A command spawned in
//! the instant before a `kill -9`, before its record was written, is not recorded.

use deploy::reconciler::now_ms;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use runtime::procfs;
use std::sync::Mutex;
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
        // The leader is not reaped yet, so its /proc entry is there even if it already exited.
        let (Some(stat), Some(boot_id)) = (procfs::stat(pid), self.boot_id.clone()) else {
            warn!(pid, what = %self.what, "cannot read the start time of a step's process group; it is not recorded");
            return;
        };
        let group = StepGroup {
            pgid: pid,
            leader_start_time: stat.start_time,
            boot_id,
            what: self.what.clone(),
            recorded_at_ms: now_ms(),
        };
        match self.lock().record_step_group(&group) {
            Ok(()) => self.current = Some(group),
            Err(e) => warn!(pid, what = %self.what, error = %e, "could not record a step's process group"),
        }
    }

    fn forget(&mut self) {
        if let Some(group) = self.current.take() {
            if let Err(e) = self.lock().forget_step_group(&group) {
                warn!(pgid = group.pgid, what = %group.what, error = %e, "could not forget a step's process group");
            }
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

/// Kills (SIGKILL) what is left of the build and test process groups a previous server
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
        let members = procfs::group_members_since(group.pgid, group.leader_start_time);
        if !members.is_empty() {
            info!(pgid = group.pgid, what = %group.what, n_processes = members.len(), "killing processes left by a server that stopped");
        }
        for pid in members {
            let Ok(pid) = i32::try_from(pid) else { continue };
            if let Err(errno) = kill(Pid::from_raw(pid), Signal::SIGKILL) {
                warn!(pid, pgid = group.pgid, %errno, "cannot kill a leftover step process");
            }
        }
    }
    let deadline = Instant::now() + KILL_WAIT;
    let alive =
        |group: &StepGroup| ours(group) && !procfs::group_members_since(group.pgid, group.leader_start_time).is_empty();
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
