//! What `/proc` says about processes: state, process group and start time, the liveness check
//! that guards against pid reuse, and which boot we are in.
//!
//! A pid alone does not identify a process across time: after it exits the kernel may hand the
//! same number to an unrelated process. A pid together with its start time (field 22 of
//! `/proc/<pid>/stat`, in clock ticks since boot) does.

use std::fs;

/// The fields of `/proc/<pid>/stat` Drover needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// One letter: `R`, `S`, `D`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    pub pgrp: i32,
    /// Clock ticks since boot at which the process started.
    pub start_time: u64,
}

impl ProcStat {
    /// Exited but not yet reaped by its parent: nothing runs any more.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may
/// itself contain spaces and parentheses, so fields are counted from the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 of the file.
    let state = fields.first()?.chars().next()?;
    let pgrp = fields.get(5 - 3)?.parse().ok()?;
    let start_time = fields.get(22 - 3)?.parse().ok()?;
    Some(ProcStat { state, pgrp, start_time })
}

/// The status of process `pid`, zombie or not, or `None` if there is no such process.
pub fn stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The start time of the calling process.
pub(crate) fn own_start_time() -> Option<u64> {
    Some(parse_stat(&fs::read_to_string("/proc/self/stat").ok()?)?.start_time)
}

/// The start time of live process `pid`; `None` if there is none or it is a zombie.
pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).filter(|stat| !stat.is_dead()).map(|stat| stat.start_time)
}

/// Whether the process that was `pid` when it started at `start_time` still runs.
pub fn is_alive(pid: u32, start_time: u64) -> bool {
    stat(pid).is_some_and(|stat| !stat.is_dead() && stat.start_time == start_time)
}

/// The live (non-zombie) processes of process group `pgid`.
pub(crate) fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(pgid) = i32::try_from(pgid) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|stat| stat.pgrp == pgid && !stat.is_dead()))
        .collect()
}

/// The live (non-zombie) processes of process group `pgid` that started at `since` (clock ticks
/// since boot) or later. Given the start time of the group's leader, this leaves out processes
/// that cannot be its descendants.
pub fn group_members_since(pgid: u32, since: u64) -> Vec<u32> {
    group_members(pgid).into_iter().filter(|&pid| stat(pid).is_some_and(|stat| stat.start_time >= since)).collect()
}

/// This boot's random id. Pids and start times only mean something within one boot.
pub fn boot_id() -> Option<String> {
    Some(fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?.trim().to_owned())
}

/// Whether process `pid`'s initial environment contains the entry `entry` (`NAME=value`).
pub(crate) fn environ_contains(pid: u32, entry: &str) -> bool {
    fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|environ| environ.split(|&b| b == 0).any(|item| item == entry.as_bytes()))
}

/// How many threads the calling process has.
pub(crate) fn own_thread_count() -> Option<usize> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| line.strip_prefix("Threads:")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_stat_counts_fields_after_the_name() {
        let tail = "6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 123456 23 24";
        let table = [
            (format!("42 (sleep) S 1 77 {tail}"), Some(('S', 77, 123456))),
            (format!("42 (a b) c)) Z 1 -5 {tail}"), Some(('Z', -5, 123456))),
            ("42 (sleep) S 1 77".to_owned(), None),
            ("garbage".to_owned(), None),
        ];
        for (text, expected) in table {
            let got = parse_stat(&text).map(|stat| (stat.state, stat.pgrp, stat.start_time));
            assert_eq!(got, expected, "{text:?}");
        }
    }

    #[test]
    fn own_process_is_alive_and_identified_by_start_time() {
        let pid = std::process::id();
        let start_time = own_start_time().unwrap();
        assert!(is_alive(pid, start_time));
        assert!(!is_alive(pid, start_time + 1));
        assert!(environ_contains(pid, "DEFINITELY_NOT_SET=1") == std::env::var_os("DEFINITELY_NOT_SET").is_some());
    }
}
