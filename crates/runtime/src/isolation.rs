//! What the shim does in the app's process between `fork` and `exec`: wall it off in a private
//! mount namespace where the kernel allows it, become the app's own user when it has one, and
//! tie the app's life to the shim's.
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
/// Bit in the report byte: `/proc` is a fresh instance that shows only the user's processes.
const PRIVATE_PROC: u8 = 4;

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
    /// Who the app runs as; `None` keeps the shim's user.
    user: Option<model::AppUser>,
}

impl ChildSetup {
    pub(crate) fn plan(
        request: IsolationRequest,
        slug_dir: &Path,
        instance_dir: &Path,
        user: Option<model::AppUser>,
    ) -> io::Result<Self> {
        let slug_dir = slug_dir.canonicalize()?;
        let instance_dir = instance_dir.canonicalize()?;
        let under_tmp = |path: &Path| path.starts_with("/tmp");
        let private_tmp = !under_tmp(&slug_dir) && !under_tmp(&instance_dir);
        let slug_dir = CString::new(slug_dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
        let remount_flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | mount_flags_of(&slug_dir)?;
        let shim_pid = libc::pid_t::try_from(std::process::id()).map_err(io::Error::other)?;
        Ok(Self { shim_pid, request, slug_dir, remount_flags, private_tmp, user })
    }

    /// Runs in the forked app process before `exec`; writes the report byte to `report_fd`.
    ///
    /// The app starts with default signal handling: the shim blocks the signals it waits for,
    /// and it may have inherited ignored signals (`nohup`, a shell's background job); both
    /// survive `exec`, and an app that cannot see SIGTERM cannot stop gracefully.
    ///
    /// An app with a user of its own becomes it after the mounts (which need root) and before
    /// anything else; that cannot fail quietly: the app does not start as root instead.
    ///
    /// The app gets `PR_SET_PDEATHSIG(SIGKILL)`: if the shim is killed (even with SIGKILL), the
    /// kernel kills the app's main process, so a dead shim does not leave an unsupervised app
    /// behind. Processes the app forks do not inherit it; `stop` and `remove` clean those up.
    /// The signal is tied to the thread that forked, which is why the shim forks from its main
    /// thread only, and a change of user clears it, which is why it is set last.
    pub(crate) fn apply(&self, report_fd: RawFd) -> io::Result<()> {
        reset_signals()?;
        let report = match self.request {
            IsolationRequest::BestEffort => self.isolate(),
            IsolationRequest::Off => 0,
        };
        if let Some(user) = self.user {
            sandbox::become_user(user)?;
        }
        // SAFETY: prctl and getppid are plain system calls without memory arguments.
        unsafe {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != self.shim_pid {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
        }
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
            // A fresh proc instance (one per mount since Linux 5.8) with `hidepid=invisible`
            // shows a non-root user only its own processes: not the shim, not Drover, not
            // another app's command lines and mounts. Meaningless for an app that stays root.
            if self.user.is_some()
                && libc::mount(
                    c"proc".as_ptr(),
                    c"/proc".as_ptr(),
                    c"proc".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    c"hidepid=invisible".as_ptr().cast(),
                ) == 0
            {
                report |= PRIVATE_PROC;
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

/// What the report byte says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub mode: IsolationMode,
    /// `/tmp` is a private tmpfs.
    pub private_tmp: bool,
    /// `/proc` shows only the app user's processes.
    pub private_proc: bool,
}

pub(crate) fn outcome(report: u8) -> Outcome {
    let isolated = report & ISOLATED != 0;
    Outcome {
        mode: if isolated { IsolationMode::MountNamespace } else { IsolationMode::None },
        private_tmp: isolated && report & PRIVATE_TMP != 0,
        private_proc: isolated && report & PRIVATE_PROC != 0,
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
        let (none, ns) = (IsolationMode::None, IsolationMode::MountNamespace);
        let table = [
            (0, (none, false, false)),
            (PRIVATE_TMP | PRIVATE_PROC, (none, false, false)),
            (ISOLATED, (ns, false, false)),
            (ISOLATED | PRIVATE_TMP, (ns, true, false)),
            (ISOLATED | PRIVATE_PROC, (ns, false, true)),
            (ISOLATED | PRIVATE_TMP | PRIVATE_PROC, (ns, true, true)),
        ];
        for (report, (mode, private_tmp, private_proc)) in table {
            assert_eq!(outcome(report), Outcome { mode, private_tmp, private_proc }, "{report}");
        }
    }

    #[test]
    fn plan_skips_private_tmp_for_directories_under_tmp() {
        let under_tmp = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
        // Only read, never written to: planning does not touch the directories. Not this crate's
        // own directory: a checkout may itself live under /tmp.
        let elsewhere = Path::new("/usr");
        let plan = |slug: &Path, instance: &Path| {
            ChildSetup::plan(IsolationRequest::BestEffort, slug, instance, None).unwrap().private_tmp
        };
        assert!(plan(elsewhere, elsewhere));
        assert!(!plan(under_tmp.path(), elsewhere));
        assert!(!plan(elsewhere, under_tmp.path()));
    }
}
