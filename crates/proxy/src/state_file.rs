//! The routing table on disk, so that a restarted proxy serves the last table at once.
//!
//! The file holds the table as accepted, with the refused parts already taken out, so a restart
//! serves exactly what was served before it.
//!
//! Writes are atomic: the table goes to a temporary file in the same directory, is fsynced,
//! renamed over the old file, and the directory is fsynced. A crash at any point leaves either
//! the old table or the new one, never a torn file.

use model::RouteTable;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub(crate) enum StateFileError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a routing table: {source}", path.display())]
    Parse { path: PathBuf, source: serde_json::Error },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StateFileError + '_ {
    move |source| StateFileError::Io { path: path.to_owned(), source }
}

/// Reads the table saved at `path`; `None` if there is none yet.
pub(crate) fn load(path: &Path) -> Result<Option<RouteTable>, StateFileError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path)(e)),
    };
    let table =
        serde_json::from_slice(&bytes).map_err(|source| StateFileError::Parse { path: path.to_owned(), source })?;
    Ok(Some(table))
}

/// Replaces the table saved at `path` with `table`, atomically and durably. Blocking.
pub(crate) fn save(path: &Path, table: &RouteTable) -> Result<(), StateFileError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let json = serde_json::to_vec_pretty(table).expect("a route table always serializes");
    let result = (|| {
        let mut file = File::create(&tmp).map_err(io_error(&tmp))?;
        file.write_all(&json).map_err(io_error(&tmp))?;
        file.sync_all().map_err(io_error(&tmp))?;
        fs::rename(&tmp, path).map_err(io_error(path))?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("routes.json");
        assert!(load(&path).unwrap().is_none());
        let table = RouteTable { generation: 3, sites: vec![] };
        save(&path, &table).unwrap();
        save(&path, &RouteTable { generation: 4, ..table }).unwrap();
        assert_eq!(load(&path).unwrap().map(|t| t.generation), Some(4));
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["routes.json"]);
    }

    #[test]
    fn load_names_the_file_when_it_is_not_a_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.json");
        fs::write(&path, "{").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}: not a routing table", path.display())), "{err}");
    }
}
