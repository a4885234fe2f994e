//! Cached layers: build steps whose outputs are reused while their inputs are unchanged.
//!
//! A layer step (`{run, inputs, outputs}`) runs in a scratch directory holding copies of its
//! inputs and nothing else, so what it produces can depend only on what its key covers: the
//! inputs' paths, exec bits and contents, its own command, inputs and outputs, and the build env.
//! Its outputs are then moved into `layers/<key>/`, frozen read-only, and copied from there into
//! the build tree. A later build with the same key copies them without running anything; that is
//! what makes "only app code changed" skip `pip install` or `npm ci`.
//!
//! A layer directory appears by one atomic rename, so it is complete or absent. Two builds
//! making the same layer at once both run the step; one rename wins and the other's tree is
//! dropped. Layers are never modified, only added.

use crate::command;
use crate::digest::{self, Purpose};
use crate::error::{io_error, ArtifactError};
use crate::tree::{self, Git, Scratch};
use crate::{LAYERS, TMP};
use model::{BuildStep, Digest};
use std::fs;
use std::io;
use std::path::Path;

/// Whether a layer step ran or was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Built,
    Reused,
}

/// Runs layer step number `number` (1-based, for messages) of a build in `work`, or reuses its
/// stored outputs, leaving the outputs in `work` either way. `root` is the store's root.
pub(crate) fn apply(
    root: &Path,
    number: usize,
    step: &BuildStep,
    work: &Path,
    steps: &mut command::Steps<'_>,
) -> Result<(Digest, Outcome), ArtifactError> {
    let (layers, tmp) = (&root.join(LAYERS), &root.join(TMP));
    // Checked first, so a clash is reported before minutes of `npm ci`, not after.
    for output in &step.outputs {
        if exists(&work.join(output))? {
            return Err(ArtifactError::LayerOutputExists { step: number, path: output.clone() });
        }
    }
    let scratch = Scratch::new_in(tmp, "layer-")?;
    for input in &step.inputs {
        copy_path(work, scratch.path(), input).map_err(|error| match error {
            Missing::Absent => ArtifactError::LayerInputMissing { step: number, path: input.clone() },
            Missing::Error(error) => error,
        })?;
    }
    let entries = tree::walk(scratch.path(), Git::Keep)?;
    let key = digest::input(Purpose::Layer, scratch.path(), &entries, std::slice::from_ref(step), steps.env)?;
    let stored = layers.join(key.hex());
    let outcome = if stored.is_dir() {
        Outcome::Reused
    } else {
        steps.run(&step.run, scratch.path())?;
        let out = Scratch::new_in(tmp, "layer-out-")?;
        for output in &step.outputs {
            let from = scratch.path().join(output);
            if !exists(&from)? {
                return Err(ArtifactError::LayerOutputMissing {
                    step: number,
                    command: step.run.clone(),
                    path: output.clone(),
                });
            }
            let to = out.path().join(output);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).map_err(io_error("create directory", parent))?;
            }
            fs::rename(&from, &to).map_err(io_error("move layer output", &from))?;
        }
        // Refuses links and special files in the outputs, as a slug would.
        let stored_entries = tree::walk(out.path(), Git::Keep)?;
        tree::freeze(out.path(), &stored_entries)?;
        match out.persist(&stored) {
            Ok(()) => {}
            // Another build stored the same layer first; ours is removed on drop.
            Err(_) if stored.is_dir() => {}
            Err(error) => return Err(io_error("rename layer to", &stored)(error)),
        }
        Outcome::Built
    };
    for output in &step.outputs {
        copy_path(&stored, work, output).map_err(|error| match error {
            Missing::Absent => {
                ArtifactError::LayerOutputMissing { step: number, command: step.run.clone(), path: output.clone() }
            }
            Missing::Error(error) => error,
        })?;
    }
    Ok((key, outcome))
}

/// Why [`copy_path`] copied nothing.
enum Missing {
    Absent,
    Error(ArtifactError),
}

impl From<ArtifactError> for Missing {
    fn from(error: ArtifactError) -> Self {
        Missing::Error(error)
    }
}

/// Copies what is at `rel` under `from` (a file, a symlink or a directory tree) to the same
/// place under `to`, creating its parent directories. Links are checked against the whole tree
/// at `from`, as a walk of it would. Files get modes 0644 or 0755, whatever they had.
fn copy_path(from: &Path, to: &Path, rel: &str) -> Result<(), Missing> {
    let Some(entries) = tree::walk_under(from, Path::new(rel), Git::Keep)? else {
        return Err(Missing::Absent);
    };
    let dest = to.join(rel);
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io_error("create directory", parent))?;
    }
    tree::copy(from, to, &entries)?;
    Ok(())
}

fn exists(path: &Path) -> Result<bool, ArtifactError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(io_error("inspect", path)(error)),
    }
}
