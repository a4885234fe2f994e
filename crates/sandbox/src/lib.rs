//! Running an app's code as the app's own unprivileged user ([`AppUser`]).
//!
//! When Drover runs as root, every command of an app (its build steps, its tests, its
//! instances) runs as that app's user: [`become_user`] between `fork` and `exec`. What such a
//! command may write is handed to the user first ([`hand_over`]), and what Drover reads back
//! afterwards (a built tree, test reports) is taken back first ([`take_back`]), so a process of
//! the user that is still running cannot swap a file for a link to one of root's while Drover
//! reads it. Everything else under the data directory stays root's and private.
//!
//! A Drover that is not root cannot switch users ([`can_switch_users`] is false): apps then run
//! as Drover's own user, as they always did, and are as trusted as it is.

pub use model::AppUser;

use std::fs;
use std::io;
use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::Path;

/// Whether this process may run commands as other users: whether it is root.
pub fn can_switch_users() -> bool {
    // SAFETY: geteuid cannot fail and has no arguments.
    unsafe { libc::geteuid() == 0 }
}

/// Becomes `user`, with no supplementary groups, for good: the real, effective and saved ids
/// all change, so the process cannot switch back. The file mode mask becomes the usual 022
/// (Drover's own is 077, which would make everything the app writes private to it). For
/// `pre_exec`: only raw system calls.
///
/// Any setting tied to the old credentials, such as `PR_SET_PDEATHSIG`, must be made after.
pub fn become_user(user: AppUser) -> io::Result<()> {
    // SAFETY: plain system calls; setgroups gets a null list of length 0.
    unsafe {
        libc::umask(0o022);
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setresgid(user.gid, user.gid, user.gid) != 0
            || libc::setresuid(user.uid, user.uid, user.uid) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Gives the tree at `path` (which this process made, and nobody else can change) to `user`:
/// every directory, file and link, the links themselves and not what they point to.
pub fn hand_over(path: &Path, user: AppUser) -> io::Result<()> {
    let metadata = fs::symlink_metadata(path)?;
    lchown(path, Some(user.uid), Some(user.gid)).map_err(|e| at(path, "give", e))?;
    if metadata.is_dir() {
        for entry in fs::read_dir(path)? {
            hand_over(&entry?.path(), user)?;
        }
    }
    Ok(())
}

/// Takes the tree at `path` back from the user it was handed to: every entry becomes this
/// process's, and nobody else may write to it.
///
/// The directory that holds `path` must already be this process's and closed to others. The
/// walk goes from the top down, and each directory is taken before it is read, so once an
/// entry has been looked at nobody else can rename, replace or add anything beside it; links
/// are never followed. Files still open for writing by a process of the user may still change
/// in content, never in kind or place.
pub fn take_back(path: &Path) -> io::Result<()> {
    // SAFETY: geteuid and getegid cannot fail and have no arguments.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    take_back_as(path, uid, gid)
}

fn take_back_as(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let metadata = fs::symlink_metadata(path)?;
    if metadata.uid() != uid || metadata.gid() != gid {
        lchown(path, Some(uid), Some(gid)).map_err(|e| at(path, "take back", e))?;
    }
    if metadata.file_type().is_symlink() {
        return Ok(());
    }
    // Set-id bits would survive the change of owner on a file root now owns.
    let mode = metadata.mode() & 0o777 & !0o022;
    if metadata.mode() & 0o7777 != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| at(path, "take back", e))?;
    }
    if metadata.is_dir() {
        for entry in fs::read_dir(path)? {
            take_back_as(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn at(path: &Path, action: &str, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("cannot {action} {}: {error}", path.display()))
}
