//! What the shim does in the app's process between `fork` and `exec`: tie the app's life to the
//! shim's, and wall it off in a private mount namespace where the kernel allows it.
//!
//! Everything that can allocate or fail in ordinary ways (building C strings, `statvfs`) is
//! done in [`ChildSetup::plan`], in the shim, before forking. [`ChildSetup::apply`] runs in the
//! forked child, where only async-signal-safe calls are allowed: raw system calls on prepared
//! data. It reports what isolation it achieved as one byte on a pipe, because an unprivileged
//! or restricted shim must degrade to a plain process rather than fail.

use crate::disk::IsolationMode;
use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

/// Bit in the report byte: the slug directory is read-only in a private mount namespace.
const ISOLATED: u8 = 1;
/// Bit in the report byte: `/tmp` is a private tmpfs.
const PRIVATE_TMP: u8 = 2;

/// Whether to try isolating apps at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum IsolationRequest {
    /// Isolate if the kernel and privileges allow it, else run a plain process.
    #[default]
    BestEffort,
    /// Always run a plain process.
    Off,
}

/// Prepared data for [`ChildSetup::apply`].
#[derive(Debug, Clone)]
pub(crate) struct ChildSetup {
    /// The parent the app must have; if it already has another, the shim died while forking.
    shim_pid: libc::pid_t,
    request: IsolationRequest,
    slug_dir: CString,
    /// Flags for remounting the slug bind mount read-only while keeping the restrictions
    /// (nosuid, noexec, ...) of the file system it lives on.
    remount_flags: libc::c_ulong,
    /// A tmpfs on `/tmp` would hide the slug or instance directory if either lives there.
    private_tmp: bool,
}

impl ChildSetup {
    pub(crate) fn plan(request: IsolationRequest, slug_dir: &Path, instance_dir: &Path) -> io::Result<Self> {
        let slug_dir = slug_dir.canonicalize()?;
        let instance_dir = instance_dir.canonicalize()?;
        let under_tmp = |path: &Path| path.starts_with("/tmp");
        let private_tmp = !under_tmp(&slug_dir) && !under_tmp(&instance_dir);
        let slug_dir = CString::new(slug_dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
        let remount_flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | mount_flags_of(&slug_dir)?;
        let shim_pid = libc::pid_t::try_from(std::process::id()).map_err(io::Error::other)?;
        Ok(Self { shim_pid, request, slug_dir, remount_flags, private_tmp })
    }

    /// Runs in the forked app process before `exec`; writes the report byte to `report_fd`.
    ///
    /// The app starts with default signal handling: the shim blocks the signals it waits for,
    /// and it may have inherited ignored signals (`nohup`, a shell's background job); both
    /// survive `exec`, and an app that cannot see SIGTERM cannot stop gracefully.
    ///
    /// The app gets `PR_SET_PDEATHSIG(SIGKILL)`: if the shim is killed (even with SIGKILL), the
    /// kernel kills the app's main process, so a dead shim does not leave an unsupervised app
    /// behind. Processes the app forks do not inherit it; `stop` and `remove` clean those up.
    /// The signal is tied to the thread that forked, which is why the shim forks from its main
    /// thread only.
    pub(crate) fn apply(&self, report_fd: RawFd) -> io::Result<()> {
        reset_signals()?;
        // SAFETY: prctl and getppid are plain system calls without memory arguments.
        unsafe {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != self.shim_pid {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
        let report = match self.request {
            IsolationRequest::BestEffort => self.isolate(),
            IsolationRequest::Off => 0,
        };
        // SAFETY: writes one byte from a live stack variable to a descriptor the shim keeps open
        // until the spawn returns.
        unsafe { libc::write(report_fd, ptr::from_ref(&report).cast(), 1) };
        Ok(())
    }

    /// Best effort: returns the report bits of what worked.
    fn isolate(&self) -> u8 {
        let slug = self.slug_dir.as_ptr();
        // SAFETY: every pointer is a NUL-terminated string that outlives the call, or null where
        // the kernel accepts null.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return 0;
            }
            // Without this, mounts made below would propagate back to the machine's namespace
            // (systemd makes `/` shared), so stop here if it fails.
            if libc::mount(ptr::null(), c"/".as_ptr(), ptr::null(), libc::MS_REC | libc::MS_PRIVATE, ptr::null()) != 0 {
                return 0;
            }
            if libc::mount(slug, slug, ptr::null(), libc::MS_BIND, ptr::null()) != 0
                || libc::mount(ptr::null(), slug, ptr::null(), self.remount_flags, ptr::null()) != 0
            {
                return 0;
            }
            // The working directory was entered before the bind mount and still refers to the
            // writable mount underneath; enter it again through the read-only one.
            if libc::chdir(slug) != 0 {
                return 0;
            }
            let mut report = ISOLATED;
            if self.private_tmp
                && libc::mount(
                    c"tmpfs".as_ptr(),
                    c"/tmp".as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    c"mode=1777".as_ptr().cast(),
                ) == 0
            {
                report |= PRIVATE_TMP;
            }
            report
        }
    }
}

/// Unblocks every signal and sets every disposition to the default.
fn reset_signals() -> io::Result<()> {
    // SAFETY: sigemptyset, sigprocmask and signal are async-signal-safe; `set` is a live local.
    unsafe {
        for signal in 1..32 {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        if libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What the report byte says: the isolation mode and whether `/tmp` is private.
pub(crate) fn outcome(report: u8) -> (IsolationMode, bool) {
    match report & ISOLATED {
        0 => (IsolationMode::None, false),
        _ => (IsolationMode::MountNamespace, report & PRIVATE_TMP != 0),
    }
}

/// The per-mount flags of the file system holding `path`, as `mount(2)` flags.
fn mount_flags_of(path: &CString) -> io::Result<libc::c_ulong> {
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `stat` is a valid out-pointer.
    if unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs succeeded, so it filled `stat`.
    let flags = unsafe { stat.assume_init() }.f_flag;
    let kept = [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ];
    Ok(kept.iter().filter(|(st, _)| flags & st != 0).fold(0, |acc, (_, ms)| acc | ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_byte_maps_to_modes() {
        let table = [
            (0, (IsolationMode::None, false)),
            (PRIVATE_TMP, (IsolationMode::None, false)),
            (ISOLATED, (IsolationMode::MountNamespace, false)),
            (ISOLATED | PRIVATE_TMP, (IsolationMode::MountNamespace, true)),
        ];
        for (report, expected) in table {
            assert_eq!(outcome(report), expected, "{report}");
        }
    }

    #[test]
    fn plan_skips_private_tmp_for_directories_under_tmp() {
        let under_tmp = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
        // Only read, never written to: planning does not touch the directories. Not this crate's
        // own directory: a checkout may itself live under /tmp.
        let elsewhere = Path::new("/usr");
        let plan = |slug: &Path, instance: &Path| {
            ChildSetup::plan(IsolationRequest::BestEffort, slug, instance).unwrap().private_tmp
        };
        assert!(plan(elsewhere, elsewhere));
        assert!(!plan(under_tmp.path(), elsewhere));
        assert!(!plan(elsewhere, under_tmp.path()));
    }
}
