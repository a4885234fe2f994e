//! Slug build and content-addressed artifact storage.
//!
//! A slug is what a build leaves behind, packed as a gzip'd tarball and named by the sha256 of
//! its bytes, its [`Digest`]. Slugs are immutable: a digest always means the same bytes, so a
//! release can name its slug and a rollback finds it unchanged. Everything here is blocking;
//! the server calls it from `spawn_blocking`.
//!
//! The store's root holds:
//!
//! - `slugs/<hex>.tar.gz`: the slugs, read-only.
//! - `unpacked/<hex>/`: each slug unpacked once, read-only, for instances to run from.
//! - `cache/<input hex>`: the build cache, from [`ArtifactStore::input_digest`] to a slug digest.
//! - `layers/<key hex>/`: the outputs of cached build steps, read-only (see [`layer`]).
//! - `tmp/`: where every slug and tree is written before it is renamed into place, so nobody
//!   ever sees half of one, and where builds run.
//!
//! **Invariants.** Nothing from outside is trusted: tarballs are unpacked only through the
//! checks in [`tarball`], which never create a link, a device or a path outside the destination,
//! and a stored slug is re-hashed before it is unpacked. Nothing is modified once it has a
//! digest. This crate knows nothing of apps, releases, SQLite or HTTP; callers record which
//! release uses which digest.

mod command;
mod digest;
mod error;
mod layer;
mod tarball;
mod tree;

pub use command::Control;
pub use error::ArtifactError;

use crate::digest::Purpose;
use crate::error::io_error;
use crate::tarball::Target;
use crate::tree::{Git, Scratch};
use model::{BuildStep, Digest};
use std::collections::BTreeMap;
use std::fs::{self, File, Permissions};
use std::io::{self, BufReader, Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

const SLUGS: &str = "slugs";
const UNPACKED: &str = "unpacked";
const CACHE: &str = "cache";
pub(crate) const LAYERS: &str = "layers";
pub(crate) const TMP: &str = "tmp";

/// The outcome of [`ArtifactStore::build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The slug's digest: sha256 of its `.tar.gz` bytes.
    pub digest: Digest,
    /// The slug's size in bytes, compressed.
    pub size: u64,
    /// Whether the build cache already had this slug, so no build command ran.
    pub cached: bool,
    /// Cached build steps whose stored outputs were copied instead of running them.
    pub layers_reused: usize,
    /// Cached build steps that ran and stored their outputs.
    pub layers_built: usize,
}

/// Content-addressed slugs under one root directory. Cheap to clone; any number of threads or
/// processes may use the same root at once.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

impl ArtifactStore {
    /// Opens the store at `root`, creating it and its subdirectories if needed.
    ///
    /// The root, `unpacked/` and `tmp/` are 0711: an app's user passes through them to the slug
    /// it runs and to the build directory it was handed, and can list nothing. The rest is this
    /// process's alone.
    pub fn open(root: PathBuf) -> Result<Self, ArtifactError> {
        for (dir, mode) in
            [("", 0o711), (SLUGS, 0o700), (UNPACKED, 0o711), (CACHE, 0o700), (LAYERS, 0o700), (TMP, 0o711)]
        {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(io_error("create directory", &path))?;
            fs::set_permissions(&path, Permissions::from_mode(mode)).map_err(io_error("set permissions on", &path))?;
        }
        Ok(Self { root })
    }

    /// Safely unpacks an uploaded gzip'd source tarball into `dest`, which must not exist or be
    /// an empty directory. Rejects, naming the entry, absolute paths, `..` components, symlinks
    /// and hard links, devices and fifos, and file contents adding up to more than `limit`
    /// bytes. On error nothing is left in `dest`: a `dest` this call created is removed, one
    /// that existed is emptied.
    pub fn unpack_source(reader: impl Read, dest: &Path, limit: u64) -> Result<(), ArtifactError> {
        let created = match fs::read_dir(dest) {
            Ok(mut items) => match items.next() {
                None => Dest::Existed,
                Some(_) => return Err(ArtifactError::DestNotEmpty { path: dest.to_owned() }),
            },
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dest).map_err(io_error("create directory", dest))?;
                Dest::Created
            }
            Err(error) if error.kind() == io::ErrorKind::NotADirectory => {
                return Err(ArtifactError::DestNotEmpty { path: dest.to_owned() })
            }
            Err(error) => return Err(io_error("list directory", dest)(error)),
        };
        let result = tarball::read(reader, Target::Unpack(dest), limit);
        if result.is_err() {
            let cleanup = match created {
                Dest::Created => tree::remove(dest),
                Dest::Existed => tree::clear(dest),
            };
            if let Err(error) = cleanup {
                tracing::warn!(dest = %dest.display(), %error, "cannot remove a rejected source tarball's files");
            }
        }
        result
    }

    /// The build cache key: a hash of the source tree (paths, exec bits and contents, in sorted
    /// order; `.git` ignored; links and special files rejected) with the build steps and env.
    pub fn input_digest(
        src: &Path,
        build: &[BuildStep],
        env: &BTreeMap<String, String>,
    ) -> Result<Digest, ArtifactError> {
        let entries = tree::walk(src, Git::Skip)?;
        digest::input(Purpose::Build, src, &entries, build, env)
    }

    /// Builds `src` into a slug, or finds it in the build cache.
    ///
    /// On a cache hit, returns the stored slug with `cached: true` and runs nothing. Otherwise
    /// copies `src` (without `.git`) into a fresh directory under `tmp/` and runs each step
    /// there with `sh -c`, stdin from `/dev/null`, an empty `HOME` of its own, and `env` plus
    /// the server's `PATH` and `LANG` (`env` wins). A cached step runs apart, in a directory with only its inputs, or is
    /// not run at all when its layer is stored (see [`layer`]). Each line the commands print,
    /// stdout and stderr, goes to `on_line`, with a line saying which layers were reused.
    /// The first failing command ends the build with an error naming it and its exit status.
    /// The resulting tree is packed deterministically, so the same inputs give a byte-identical
    /// slug, and stored; the build directory is removed either way.
    ///
    /// Each command runs in its own process group, led by its shell. `on_spawn` gets the shell's
    /// pid (the group's id) as soon as it started, so a caller can record the group and kill it
    /// should the caller die. The group is killed before the next command starts and before this
    /// returns.
    ///
    /// `control` says who runs the commands and when they are stopped. With a user (the app's
    /// own, see [`model::AppUser`]; this process must be root), every command runs as that
    /// user, in a directory handed to it only while the command runs. A timeout or a cancel
    /// stops the running command's group and fails the build, naming the command.
    pub fn build(
        &self,
        src: &Path,
        build: &[BuildStep],
        env: &BTreeMap<String, String>,
        control: &Control<'_>,
        on_line: &mut dyn FnMut(&str),
        on_spawn: &mut dyn FnMut(u32),
    ) -> Result<Built, ArtifactError> {
        let started = std::time::Instant::now();
        let entries = tree::walk(src, Git::Skip)?;
        let input = digest::input(Purpose::Build, src, &entries, build, env)?;
        if let Some(built) = self.cached(&input)? {
            tracing::debug!(input = %input, slug = %built.digest, "build cache hit");
            return Ok(built);
        }
        let tmp = self.root.join(TMP);
        let work = Scratch::new_in(&tmp, "build-")?;
        tree::copy(src, work.path(), &entries)?;
        let (mut layers_reused, mut layers_built) = (0, 0);
        // No deadline if the timeout is too large to add to a clock reading.
        let deadline = control.timeout.and_then(|timeout| Some((started.checked_add(timeout)?, timeout)));
        let limits = command::Limits { deadline, cancel: control.cancel };
        let mut steps = command::Steps { env, user: control.user, limits, on_line, on_spawn };
        for (idx, step) in build.iter().enumerate() {
            if !step.is_layer() {
                steps.run(&step.run, work.path())?;
                continue;
            }
            let (key, outcome) = layer::apply(&self.root, idx + 1, step, work.path(), &mut steps)?;
            let on_line = &mut steps.on_line;
            let (inputs, outputs) = (step.inputs.join(", "), step.outputs.join(", "));
            match outcome {
                layer::Outcome::Reused => {
                    layers_reused += 1;
                    on_line(&format!("step {}: reused layer {key} for {outputs}: {inputs} unchanged", idx + 1));
                }
                layer::Outcome::Built => {
                    layers_built += 1;
                    on_line(&format!("step {}: stored layer {key} for {outputs}, keyed by {inputs}", idx + 1));
                }
            }
        }
        let output = tree::walk(work.path(), Git::Keep)?;
        let (digest, size) = self.store(|file, _| tarball::pack(work.path(), &output, file).map(drop))?;
        self.record_cache(&input, &digest)?;
        tracing::debug!(input = %input, slug = %digest, size, "slug built");
        Ok(Built { digest, size, cached: false, layers_reused, layers_built })
    }

    /// Removes whatever is left in `tmp/`: half-built slugs, layers and build directories of a
    /// process that died. Only for a caller that knows no build is running on this store.
    pub fn clear_scratch(&self) -> Result<(), ArtifactError> {
        let tmp = self.root.join(TMP);
        clear_directory(&tmp).map_err(io_error("clear", &tmp))
    }

    /// Whether the store holds the slug `digest`.
    pub fn has(&self, digest: &Digest) -> bool {
        self.slug_path(digest).is_file()
    }

    /// The slug `digest` unpacked into `unpacked/<hex>/`, every file and directory read-only
    /// (files 0444, or 0555 if executable; directories 0555).
    ///
    /// The first call checks that the stored tarball still hashes to `digest`, unpacks it under
    /// `tmp/` and renames the tree into place; later calls just return the path. Concurrent
    /// calls for the same digest, from threads or processes, may each unpack, but exactly one
    /// tree is renamed into place and all of them return it.
    pub fn unpacked(&self, digest: &Digest) -> Result<PathBuf, ArtifactError> {
        let target = self.root.join(UNPACKED).join(digest.hex());
        if target.is_dir() {
            return Ok(target);
        }
        let slug = self.slug_path(digest);
        let mut file = match File::open(&slug) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(ArtifactError::NotFound { digest: digest.clone() })
            }
            Err(error) => return Err(io_error("open", &slug)(error)),
        };
        let actual = Digest::from_sha256(&digest::sha256(&mut file).map_err(io_error("read", &slug))?);
        if actual != *digest {
            return Err(ArtifactError::DigestMismatch { digest: digest.clone(), actual });
        }
        file.rewind().map_err(io_error("read", &slug))?;

        let scratch = Scratch::new_in(&self.root.join(TMP), "unpack-")?;
        tarball::read(BufReader::new(file), Target::Unpack(scratch.path()), u64::MAX)?;
        let entries = tree::walk(scratch.path(), Git::Keep)?;
        tree::freeze(scratch.path(), &entries)?;
        match scratch.persist(&target) {
            Ok(()) => Ok(target),
            // Another caller renamed its identical tree into place first; ours is removed on drop.
            Err(_) if target.is_dir() => Ok(target),
            Err(error) => Err(io_error("rename unpacked slug to", &target)(error)),
        }
    }

    /// Imports a slug tarball from elsewhere (an upload, another server), checking its entries
    /// by the same rules as [`ArtifactStore::unpack_source`], and returns its digest. Importing
    /// a slug the store already has is not an error.
    pub fn import_slug(&self, mut reader: impl Read) -> Result<Digest, ArtifactError> {
        let (digest, _) = self.store(|file, path| {
            let mut buf = vec![0; 64 * 1024];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(source) => return Err(ArtifactError::Tarball { source }),
                };
                file.write_all(&buf[..n]).map_err(io_error("write", path))?;
            }
            Ok(())
        })?;
        Ok(digest)
    }

    fn slug_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(SLUGS).join(format!("{}.tar.gz", digest.hex()))
    }

    fn cache_path(&self, input: &Digest) -> PathBuf {
        self.root.join(CACHE).join(input.hex())
    }

    /// Writes a slug with `write` into a file under `tmp/` (its path given for errors), checks
    /// it, and renames it to `slugs/<hex>.tar.gz` unless that already exists (same digest, same
    /// bytes).
    fn store(
        &self,
        write: impl FnOnce(&mut digest::HashWriter<&File>, &Path) -> Result<(), ArtifactError>,
    ) -> Result<(Digest, u64), ArtifactError> {
        let tmp_dir = self.root.join(TMP);
        let tmp = NamedTempFile::with_prefix_in("slug-", &tmp_dir).map_err(io_error("create a file in", &tmp_dir))?;
        let mut writer = digest::HashWriter::new(tmp.as_file());
        write(&mut writer, tmp.path())?;
        let (mut file, digest, size) = writer.finish();
        file.flush().map_err(io_error("write", tmp.path()))?;
        file.rewind().map_err(io_error("read", tmp.path()))?;
        // Checked even for slugs we packed ourselves: it is cheap next to a build, and it keeps
        // "every stored slug passed the checks" true without exceptions.
        tarball::read(BufReader::new(file), Target::Verify, u64::MAX)?;
        file.sync_all().map_err(io_error("write", tmp.path()))?;
        file.set_permissions(Permissions::from_mode(0o444)).map_err(io_error("set permissions on", tmp.path()))?;

        let slug = self.slug_path(&digest);
        match tmp.persist_noclobber(&slug) {
            Ok(_) => {}
            // The same bytes are already stored; keep the existing file, ours is deleted.
            Err(error) if error.error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(io_error("rename slug to", &slug)(error.error)),
        }
        Ok((digest, size))
    }

    /// The cached build for `input`, if the cache names a slug the store still has.
    fn cached(&self, input: &Digest) -> Result<Option<Built>, ArtifactError> {
        let path = self.cache_path(input);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error("read", &path)(error)),
        };
        let digest = match Digest::parse(text.trim()) {
            Ok(digest) => digest,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "ignoring a corrupt build cache entry");
                return Ok(None);
            }
        };
        let slug = self.slug_path(&digest);
        match fs::metadata(&slug) {
            Ok(metadata) => {
                Ok(Some(Built { digest, size: metadata.len(), cached: true, layers_reused: 0, layers_built: 0 }))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                tracing::warn!(input = %input, slug = %digest, "build cache names a missing slug; rebuilding");
                Ok(None)
            }
            Err(error) => Err(io_error("inspect", &slug)(error)),
        }
    }

    fn record_cache(&self, input: &Digest, digest: &Digest) -> Result<(), ArtifactError> {
        let tmp_dir = self.root.join(TMP);
        let mut tmp =
            NamedTempFile::with_prefix_in("cache-", &tmp_dir).map_err(io_error("create a file in", &tmp_dir))?;
        writeln!(tmp, "{digest}").map_err(io_error("write", tmp.path()))?;
        let path = self.cache_path(input);
        tmp.persist(&path).map_err(|error| io_error("rename cache entry to", &path)(error.error))?;
        Ok(())
    }
}

/// Removes everything inside `dir`, keeping `dir`, including trees with read-only
/// directories (unpacked slugs, build caches) and links, which are removed, never followed.
pub fn clear_directory(dir: &Path) -> io::Result<()> {
    tree::clear(dir)
}

/// Whether [`ArtifactStore::unpack_source`] created its destination, and so removes it on error.
#[derive(Debug, Clone, Copy)]
enum Dest {
    Created,
    Existed,
}
