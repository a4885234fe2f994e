//! Reading untrusted gzip'd tarballs safely, and packing slugs deterministically.
//!
//! Every tarball that enters the store (uploaded sources, imported slugs, stored slugs being
//! unpacked) goes through [`read`], which only ever creates files, directories and inward
//! symlinks below its destination. An entry with an absolute path, a `..` component, a hard
//! link, a device, or a symlink leaving the tree ([`tree::link_stays_inside`]) is rejected
//! before anything is written for it, and the caller removes what earlier entries wrote. No
//! entry is written at or below a symlink an earlier entry made, so a link cannot redirect a
//! later write. Paths are checked as the tar crate reports them, after PAX and GNU long-name
//! extensions are applied, so a harmless-looking header cannot smuggle in `../`.
//!
//! [`pack`] writes the tree a build left behind with nothing that depends on the machine or the
//! moment: sorted entries, mtime 0, uid/gid 0, modes 0644/0755 (0777 for symlinks).

use crate::error::{io_error, ArtifactError};
use crate::tree::{self, Entry};
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use tar::{EntryType, Header};

/// How many bytes of tar stream may be read between two entries' contents: headers, padding,
/// PAX records and GNU long names. The tar crate reads those extension records into memory
/// whole, so without a cap a small gzip bomb could claim gigabytes as a "long name".
const METADATA_BUDGET: u64 = 1 << 20;

/// What [`read`] does with the entries it accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// Writes files and directories below this existing directory.
    Unpack(&'a Path),
    /// Only checks the entries and reads their contents, writing nothing.
    Verify,
}

/// What an accepted entry becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Accepted {
    Dir,
    File { exec: bool },
    Symlink { target: PathBuf },
}

/// Reads a gzip'd tarball from `reader`, rejecting any unsafe entry and stopping once file
/// contents add up to more than `limit` bytes. On error, whatever earlier entries wrote to the
/// target directory is left for the caller to remove.
pub(crate) fn read(reader: impl Read, target: Target<'_>, limit: u64) -> Result<(), ArtifactError> {
    let budget = Rc::new(Cell::new(METADATA_BUDGET));
    let decoder = MultiGzDecoder::new(reader);
    let mut archive = tar::Archive::new(Budgeted { inner: decoder, budget: Rc::clone(&budget) });
    let tarball_error = |source| ArtifactError::Tarball { source };
    let mut total: u64 = 0;
    // Symlinks made so far; nothing may be written at or below one.
    let mut links: HashSet<PathBuf> = HashSet::new();
    for entry in archive.entries().map_err(tarball_error)? {
        let mut entry = entry.map_err(tarball_error)?;
        let header = entry.header();
        let entry_type = header.entry_type();
        // `git archive` writes a PAX global header carrying the commit id; it describes the
        // archive, not a file, and the tar crate leaves it for us to skip.
        if entry_type.is_pax_global_extensions() {
            continue;
        }
        let mode = header.mode().map_err(tarball_error)?;
        let raw_path = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_path).into_owned();
        let rel = check_path(&raw_path, &name)?;
        let mut accepted = check_type(entry_type, mode, &name)?;
        if rel.as_os_str().is_empty() && accepted != Accepted::Dir {
            return Err(ArtifactError::EmptyPath { path: name });
        }
        if let Some(link) = rel.ancestors().find(|at| links.contains(*at)) {
            return Err(ArtifactError::ThroughLink { path: name, link: link.display().to_string() });
        }
        if let Accepted::Symlink { target } = &mut accepted {
            let bytes = entry.link_name_bytes().map(|bytes| bytes.into_owned()).unwrap_or_default();
            *target = PathBuf::from(OsStr::from_bytes(&bytes));
            if !tree::link_stays_inside(&rel, target) {
                let target = String::from_utf8_lossy(&bytes).into_owned();
                return Err(ArtifactError::LinkOutside { path: name, target });
            }
            links.insert(rel.clone());
        }
        let size = entry.size();
        total = total
            .checked_add(size)
            .filter(|total| *total <= limit)
            .ok_or_else(|| ArtifactError::TooLarge { path: name.clone(), limit })?;

        // Contents are bounded by the header's size, which was checked against `limit` above.
        budget.set(u64::MAX);
        match target {
            Target::Unpack(dest) => unpack_entry(&mut entry, size, &dest.join(&rel), &accepted, &name)?,
            Target::Verify => copy_contents(&mut entry, size, &mut io::sink(), &name, Path::new(""))?,
        }
        budget.set(METADATA_BUDGET);
    }
    Ok(())
}

/// Turns the entry's path into a relative path of normal components; `.` components are
/// dropped, so `./` alone (the archive's root) becomes the empty path.
fn check_path(raw_path: &[u8], name: &str) -> Result<PathBuf, ArtifactError> {
    let mut rel = PathBuf::new();
    for component in Path::new(OsStr::from_bytes(raw_path)).components() {
        match component {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(ArtifactError::ParentDir { path: name.to_owned() }),
            Component::RootDir | Component::Prefix(_) => {
                return Err(ArtifactError::AbsolutePath { path: name.to_owned() })
            }
        }
    }
    Ok(rel)
}

fn check_type(entry_type: EntryType, mode: u32, name: &str) -> Result<Accepted, ArtifactError> {
    let special = |kind: &str| ArtifactError::SpecialEntry { path: name.to_owned(), kind: kind.to_owned() };
    match entry_type {
        // Contiguous files are regular files to every modern tar.
        EntryType::Regular | EntryType::Continuous => Ok(Accepted::File { exec: mode & 0o111 != 0 }),
        EntryType::Directory => Ok(Accepted::Dir),
        // The target is read and checked by the caller.
        EntryType::Symlink => Ok(Accepted::Symlink { target: PathBuf::new() }),
        EntryType::Link => Err(ArtifactError::HardLink { path: name.to_owned() }),
        EntryType::Char => Err(special("character device")),
        EntryType::Block => Err(special("block device")),
        EntryType::Fifo => Err(special("fifo")),
        EntryType::GNUSparse => Err(special("sparse file")),
        other => Err(special(&format!("entry of unknown type {:?}", char::from(other.as_byte())))),
    }
}

fn unpack_entry(
    entry: &mut impl Read,
    size: u64,
    path: &Path,
    accepted: &Accepted,
    name: &str,
) -> Result<(), ArtifactError> {
    match accepted {
        Accepted::Dir => fs::create_dir_all(path).map_err(io_error("create directory", path)),
        Accepted::Symlink { target } => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(io_error("create directory", parent))?;
            }
            match symlink(target, path) {
                Ok(()) => Ok(()),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    Err(ArtifactError::LinkOverEntry { path: name.to_owned() })
                }
                Err(error) => Err(io_error("create symlink", path)(error)),
            }
        }
        Accepted::File { exec } => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(io_error("create directory", parent))?;
            }
            // A later entry for the same path replaces the earlier one, as with any tar.
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .map_err(io_error("create", path))?;
            copy_contents(entry, size, &mut file, name, path)?;
            // Set explicitly rather than at creation, where the umask would apply.
            tree::set_mode(path, if *exec { 0o755 } else { 0o644 })
        }
    }
}

/// Copies an entry's `size` bytes of contents, telling a bad tarball (read side) from a
/// failing disk (write side, `path`).
fn copy_contents(
    entry: &mut impl Read,
    size: u64,
    out: &mut impl Write,
    name: &str,
    path: &Path,
) -> Result<(), ArtifactError> {
    let tarball_error = |message: String| ArtifactError::Tarball {
        source: io::Error::new(io::ErrorKind::InvalidData, format!("entry {name:?}: {message}")),
    };
    let mut buf = vec![0; 64 * 1024];
    let mut copied: u64 = 0;
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) if copied == size => return Ok(()),
            Ok(0) => return Err(tarball_error(format!("truncated after {copied} of {size} bytes"))),
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(tarball_error(error.to_string())),
        };
        copied += n as u64;
        out.write_all(&buf[..n]).map_err(io_error("write", path))?;
    }
}

/// Caps how much of the stream may be read until the budget is raised again; see
/// [`METADATA_BUDGET`].
struct Budgeted<R> {
    inner: R,
    budget: Rc<Cell<u64>>,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.budget.get();
        if remaining == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("more than {METADATA_BUDGET} bytes of headers and extension records between two entries"),
            ));
        }
        let cap = usize::try_from(remaining).unwrap_or(usize::MAX).min(buf.len());
        let n = self.inner.read(&mut buf[..cap])?;
        self.budget.set(remaining - n as u64);
        Ok(n)
    }
}

/// Packs the walked `entries` of `root` into a gzip'd tarball written to `out`, and returns
/// `out`. The same tree always gives the same bytes.
pub(crate) fn pack<W: Write>(root: &Path, entries: &[Entry], out: W) -> Result<W, ArtifactError> {
    let mut builder = tar::Builder::new(GzEncoder::new(out, Compression::default()));
    for entry in entries {
        let path = root.join(&entry.rel);
        let mut header = Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        match &entry.kind {
            tree::Kind::Symlink { target } => {
                header.set_entry_type(EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, &entry.rel, target)
            }
            tree::Kind::Dir => {
                header.set_entry_type(EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, &entry.rel, io::empty())
            }
            tree::Kind::File { exec } => {
                let file = File::open(&path).map_err(io_error("open", &path))?;
                let len = file.metadata().map_err(io_error("inspect", &path))?.len();
                header.set_entry_type(EntryType::Regular);
                header.set_mode(if *exec { 0o755 } else { 0o644 });
                header.set_size(len);
                // `take` keeps the entry at the size in its header even if the file grows.
                builder.append_data(&mut header, &entry.rel, file.take(len))
            }
        }
        .map_err(io_error("pack", &path))?;
    }
    let encoder = builder.into_inner().map_err(io_error("pack", root))?;
    encoder.finish().map_err(io_error("pack", root))
}
