//! Walking, copying, freezing and removing directory trees of files, directories and symlinks.
//!
//! Source trees and build output are walked in one sorted order so that hashing and packing are
//! deterministic. Links are never followed. A symlink is kept only when its target is relative
//! and stays inside the tree ([`link_stays_inside`]), as `node_modules/.bin/*` links do; one
//! pointing elsewhere, like any special file, is refused: following it later could pull a host
//! file such as `/etc/shadow` into a slug, and a device has no place in one.

use crate::error::{io_error, ArtifactError};
use std::fs::{self, Permissions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Whether a walk descends into `.git` directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Git {
    /// Source trees: history is not an input of the build, so it neither busts the cache nor
    /// ends up in the slug.
    Skip,
    /// Build output is packed exactly as the build left it.
    Keep,
}

/// What a tree entry is; the exec bit is the only part of a file's mode that matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File {
        exec: bool,
    },
    /// A symlink whose target passed [`link_stays_inside`].
    Symlink {
        target: PathBuf,
    },
}

/// One file or directory, relative to the tree's root.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) rel: PathBuf,
    pub(crate) kind: Kind,
}

/// Lists every file, directory and symlink under `root`, sorted by path bytes, so a directory
/// comes before its contents and reversing the list visits contents before their directory.
/// An entry that is refused is named by its path relative to `root`.
pub(crate) fn walk(root: &Path, git: Git) -> Result<Vec<Entry>, ArtifactError> {
    let mut entries = Vec::new();
    walk_into(root, Path::new(""), git, &mut entries)?;
    sort(&mut entries);
    Ok(entries)
}

/// The entry at `rel` under `root` and, if it is a directory, everything below it, listed as
/// [`walk`] of `root` would list them (a link is checked against the whole tree at `root`).
/// `None` if there is nothing at `rel`.
pub(crate) fn walk_under(root: &Path, rel: &Path, git: Git) -> Result<Option<Vec<Entry>>, ArtifactError> {
    let path = root.join(rel);
    let file_type = match fs::symlink_metadata(&path) {
        Ok(metadata) => metadata.file_type(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("inspect", &path)(error)),
    };
    let mut entries = vec![classify(root, rel, file_type)?];
    if entries[0].kind == Kind::Dir {
        walk_into(root, rel, git, &mut entries)?;
    }
    sort(&mut entries);
    Ok(Some(entries))
}

fn sort(entries: &mut [Entry]) {
    entries.sort_by(|a, b| a.rel.as_os_str().as_bytes().cmp(b.rel.as_os_str().as_bytes()));
}

fn walk_into(root: &Path, rel: &Path, git: Git, entries: &mut Vec<Entry>) -> Result<(), ArtifactError> {
    let dir = root.join(rel);
    for item in fs::read_dir(&dir).map_err(io_error("list directory", &dir))? {
        let item = item.map_err(io_error("list directory", &dir))?;
        let name = item.file_name();
        if git == Git::Skip && name == ".git" {
            continue;
        }
        let rel = rel.join(&name);
        // `DirEntry::file_type` does not follow symlinks.
        let file_type = item.file_type().map_err(io_error("inspect", &item.path()))?;
        let entry = classify(root, &rel, file_type)?;
        let is_dir = entry.kind == Kind::Dir;
        entries.push(entry);
        if is_dir {
            walk_into(root, &rel, git, entries)?;
        }
    }
    Ok(())
}

/// What the entry at `rel` under `root`, of type `file_type`, is; an error if it may not be in
/// a tree.
fn classify(root: &Path, rel: &Path, file_type: fs::FileType) -> Result<Entry, ArtifactError> {
    let path = root.join(rel);
    let kind = if file_type.is_dir() {
        Kind::Dir
    } else if file_type.is_file() {
        let mode = fs::symlink_metadata(&path).map_err(io_error("inspect", &path))?.permissions().mode();
        Kind::File { exec: mode & 0o111 != 0 }
    } else if file_type.is_symlink() {
        let target = fs::read_link(&path).map_err(io_error("read link", &path))?;
        if !link_stays_inside(rel, &target) {
            return Err(ArtifactError::LinkOutsideTree { path: rel.to_owned(), target });
        }
        Kind::Symlink { target }
    } else {
        return Err(ArtifactError::UnsupportedFile { path: rel.to_owned(), kind: kind_name(file_type) });
    };
    Ok(Entry { rel: rel.to_owned(), kind })
}

/// Whether a symlink at `link` (relative to the tree's root) pointing to `target` resolves inside
/// the tree, whatever other links in the tree point to: the target must be relative, climb with
/// `..` only at its start and no higher than the root, then only descend. Descending from a
/// directory in the tree stays in it when every link passed on the way obeys the same rule, so
/// the check needs no look at the rest of the tree. `a/b/l -> ../c/x` passes; `l -> ../x`,
/// `l -> /etc` and `a/l -> b/../../..` do not.
pub(crate) fn link_stays_inside(link: &Path, target: &Path) -> bool {
    let depth = link.components().count().saturating_sub(1);
    let (mut ups, mut descended) = (0, false);
    for component in target.components() {
        match component {
            Component::ParentDir if descended => return false,
            Component::ParentDir => ups += 1,
            Component::Normal(_) => descended = true,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    !target.as_os_str().is_empty() && ups <= depth
}

pub(crate) fn kind_name(file_type: fs::FileType) -> &'static str {
    if file_type.is_symlink() {
        "symlink"
    } else if file_type.is_fifo() {
        "fifo"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

/// Copies the walked `entries` of `src` into the existing directory `dest`: directories as
/// created by the process, files by [`copy_file`].
pub(crate) fn copy(src: &Path, dest: &Path, entries: &[Entry]) -> Result<(), ArtifactError> {
    for entry in entries {
        let to = dest.join(&entry.rel);
        match &entry.kind {
            Kind::Dir => fs::create_dir(&to).map_err(io_error("create directory", &to))?,
            Kind::File { .. } => copy_file(&src.join(&entry.rel), &to)?,
            Kind::Symlink { target } => symlink(target, &to).map_err(io_error("create symlink", &to))?,
        }
    }
    Ok(())
}

/// Copies one file, giving the copy mode 0755 if the original is executable, else 0644: the
/// only mode bit a slug keeps, on a copy later build steps may change.
pub(crate) fn copy_file(from: &Path, to: &Path) -> Result<(), ArtifactError> {
    let mode = fs::copy(from, to).and_then(|_| fs::metadata(to)).map_err(io_error("copy", from))?.permissions().mode();
    set_mode(to, if mode & 0o111 != 0 { 0o755 } else { 0o644 })
}

/// Makes the tree read-only for everyone: files 0444 (0555 if executable), directories 0555.
/// Contents are frozen before their directory, which could not be entered for writing after.
/// Symlinks are left alone: `chmod` would follow them, and their own mode means nothing.
pub(crate) fn freeze(root: &Path, entries: &[Entry]) -> Result<(), ArtifactError> {
    for entry in entries.iter().rev() {
        let mode = match entry.kind {
            Kind::Dir | Kind::File { exec: true } => 0o555,
            Kind::File { exec: false } => 0o444,
            Kind::Symlink { .. } => continue,
        };
        set_mode(&root.join(&entry.rel), mode)?;
    }
    set_mode(root, 0o555)
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), ArtifactError> {
    fs::set_permissions(path, Permissions::from_mode(mode)).map_err(io_error("set permissions on", path))
}

/// Removes a directory tree that may contain read-only directories (a frozen tree, or build
/// output such as Go's module cache). A missing tree is not an error.
pub(crate) fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_dirs_writable(path);
            fs::remove_dir_all(path)
        }
    }
}

/// Best effort: whatever cannot be fixed here makes the following `remove_dir_all` fail.
fn make_dirs_writable(dir: &Path) {
    let _ = fs::set_permissions(dir, Permissions::from_mode(0o755));
    let Ok(items) = fs::read_dir(dir) else { return };
    for item in items.flatten() {
        if item.file_type().is_ok_and(|file_type| file_type.is_dir()) {
            make_dirs_writable(&item.path());
        }
    }
}

/// Removes everything inside `dir`, keeping `dir` itself.
pub(crate) fn clear(dir: &Path) -> io::Result<()> {
    for item in fs::read_dir(dir)? {
        let item = item?;
        if item.file_type()?.is_dir() {
            remove(&item.path())?;
        } else {
            fs::remove_file(item.path())?;
        }
    }
    Ok(())
}

/// A directory under the store's `tmp/` that is removed when dropped, unless persisted.
#[derive(Debug)]
pub(crate) struct Scratch {
    path: PathBuf,
    armed: bool,
}

impl Scratch {
    pub(crate) fn new_in(dir: &Path, prefix: &str) -> Result<Self, ArtifactError> {
        let path = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(dir)
            .map_err(io_error("create a directory in", dir))?
            .keep();
        Ok(Self { path, armed: true })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the directory to `to`, after which it is no longer removed on drop.
    pub(crate) fn persist(mut self, to: &Path) -> io::Result<()> {
        fs::rename(&self.path, to)?;
        self.armed = false;
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Err(error) = remove(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "cannot remove scratch directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::link_stays_inside;
    use std::path::Path;

    #[test]
    fn links_must_resolve_inside_the_tree() {
        let cases = [
            ("l", "x", true),
            ("l", "./x/y", true),
            ("a/b/l", "../c/x", true),
            ("a/b/l", "../../x", true),
            ("a/b/l", "..", true),
            ("node_modules/.bin/tsc", "../typescript/bin/tsc", true),
            ("l", "../x", false),
            ("a/b/l", "../../../x", false),
            ("l", "/etc/passwd", false),
            ("a/l", "b/../../..", false),
            ("a/l", "b/..", false),
            ("l", "", false),
        ];
        for (link, target, inside) in cases {
            assert_eq!(link_stays_inside(Path::new(link), Path::new(target)), inside, "{link} -> {target}");
        }
    }
}
