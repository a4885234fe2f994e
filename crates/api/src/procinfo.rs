//! Process identity from `/proc`: a pid plus its start time names one process for good.

/// The start time of `pid` in clock ticks since boot (field 22 of `/proc/PID/stat`), or `None`
/// if there is no such process or it is a zombie.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces; fields after it are
    // plain.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// True if `pid` is still the process that started at `start_time`.
pub fn is_alive(pid: u32, start_time_ticks: u64) -> bool {
    start_time(pid) == Some(start_time_ticks)
}
