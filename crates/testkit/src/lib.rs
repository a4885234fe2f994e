//! Support for the integration tests of several crates; a dev-dependency only, never linked into
//! `drover`.
//!
//! [`docker_skip`] decides whether a Docker test runs: with an engine that answers and the host's
//! static busybox (from which the test images are built, since no registry can be reached) it
//! does; without them `cargo test` skips it and says why, so the suite runs on any box, unless
//! [`REQUIRE_DOCKER`] is set (`scripts/test`, and so CI, sets it), which turns the missing engine
//! into a failure: CI never skips them. [`busybox_image`] builds the image the Docker tests run.
//!
//! [`fuzz`] holds what the fuzz targets share: their case count, corpus reader and mutation engine.

pub mod fuzz;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// Set to `1` to make the Docker tests fail rather than skip where Docker cannot run.
pub const REQUIRE_DOCKER: &str = "DROVER_REQUIRE_DOCKER";

/// Why the Docker tests cannot run here, or `None` when they can. Panics instead of answering
/// when [`REQUIRE_DOCKER`] is `1`.
///
/// The caller writes `skipped: REASON` to its stderr and returns: cargo shows it with
/// `--nocapture`, and the test counts as passed without having run.
pub fn docker_skip() -> Option<String> {
    static REASON: OnceLock<Option<String>> = OnceLock::new();
    let why = REASON.get_or_init(unavailable).as_deref()?;
    if std::env::var(REQUIRE_DOCKER).is_ok_and(|v| v == "1") {
        panic!("{why}, and {REQUIRE_DOCKER}=1 requires the Docker tests to run");
    }
    Some(format!("{why} (set {REQUIRE_DOCKER}=1 to fail instead; scripts/test installs and starts Docker)"))
}

fn unavailable() -> Option<String> {
    if busybox().is_none() {
        return Some("the host's static busybox is not installed (apt-get install busybox-static)".to_owned());
    }
    let answered = Command::new("timeout")
        .args(["20", "docker", "info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match answered {
        Ok(status) if status.success() => None,
        Ok(_) => Some("no Docker engine answers `docker info`".to_owned()),
        Err(e) => Some(format!("cannot run `docker info`: {e}")),
    }
}

fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"].into_iter().map(PathBuf::from).find(|p| p.exists())
}

/// Builds image `tag` once per test binary, `FROM scratch` with the host's static busybox and
/// its applet links, and returns `tag`. `extra` is appended to the Dockerfile (e.g. a `USER`).
/// Panics when the build fails: call it after [`docker_skip`].
pub fn busybox_image(tag: &'static str, extra: &str) -> &'static str {
    static BUILT: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built.contains(&tag) {
        return tag;
    }
    let context = tempfile::tempdir().expect("a temporary build context");
    std::fs::copy(busybox().expect("busybox-static is installed"), context.path().join("busybox"))
        .expect("copying busybox into the build context");
    let dockerfile = format!(
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n{extra}"
    );
    docker_build(context.path(), &dockerfile, tag);
    built.push(tag);
    tag
}

/// Builds image `tag` from `dockerfile` in `context`, with the engine's classic builder (BuildKit
/// is not installed here). Panics with the engine's words when it fails.
pub fn docker_build(context: &Path, dockerfile: &str, tag: &str) {
    std::fs::write(context.join("Dockerfile"), dockerfile).expect("writing the Dockerfile");
    let out = Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(context)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("the docker CLI runs");
    assert!(out.status.success(), "docker build of {tag}: {}", String::from_utf8_lossy(&out.stderr));
}
