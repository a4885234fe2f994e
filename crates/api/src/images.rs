//! Container images as artifacts: an app with `dockerfile:` in its drover.yml is built by the
//! Docker engine instead of into a slug, and its image id (`sha256:...`) is the release's digest.
//!
//! The build cache is the slug one's idea: the source tree and the Dockerfile's path hash to an
//! input digest, `artifacts/images/<input hex>` names the image built from it, and while the
//! engine still has that image nothing is built again. Within a build the engine's own layer
//! cache applies. Builds see none of the app's env or secrets: build arguments end up in the
//! image's history, which anyone who can pull it can read.
//!
//! Tests run inside the image: each test command runs in a fresh container of it (through the
//! `docker` CLI, under the same test runner as slugs: deadline, cancel, process groups), with the
//! step's env, secrets from a tmpfs file as in the Docker runtime, `$DROVER_REPORTS` mounted,
//! the host's network as instances have, and `/bin/sh -c` in place of the image's entrypoint.

use crate::routes::chain;
use crate::server::Ctx;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use model::{AppSpec, BuildStep, Digest};
use runtime::docker::sh_quote as quote;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The label on test containers, with the data directory as its value, so a server can remove
/// what a killed one left.
const TEST_LABEL: &str = "io.drover.test";

/// Builds the image of `spec` from the source tree `src`, or finds it in the cache, reporting
/// the engine's output to `log`.
pub(crate) async fn build(
    ctx: &Arc<Ctx>,
    spec: &AppSpec,
    dockerfile: &str,
    src: PathBuf,
    log: impl Fn(&str) + Send + 'static,
    cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
) -> Result<artifact::Built, String> {
    let docker = docker(ctx, spec)?;
    log(&format!("building image of {} from {dockerfile}", spec.name));
    let marker = [BuildStep::command(format!("docker build -f {dockerfile}"))];
    let (input, context) = {
        let src = src.clone();
        tokio::task::spawn_blocking(move || -> Result<(Digest, Vec<u8>), String> {
            let input =
                artifact::ArtifactStore::input_digest(&src, &marker, &BTreeMap::new()).map_err(|e| chain(&e))?;
            Ok((input, pack_context(&src)?))
        })
        .await
        .expect("packing does not panic")?
    };
    let cache = ctx.data.artifacts().join("images").join(input.hex());
    if let Some(id) = std::fs::read_to_string(&cache).ok().and_then(|text| Digest::parse(text.trim()).ok()) {
        if let Ok(image) = docker.docker().inspect_image(&id.to_string()).await {
            log(&format!("image {id} (cached: inputs unchanged)"));
            let size = image.size.and_then(|size| u64::try_from(size).ok()).unwrap_or(0);
            return Ok(artifact::Built { digest: id, size, cached: true, layers_reused: 0, layers_built: 0 });
        }
    }

    let tag = format!("drover/{}:{}", spec.name, &input.hex()[..12]);
    let options = BuildImageOptionsBuilder::default().dockerfile(dockerfile).t(&tag).rm(true).forcerm(true).build();
    let mut output = docker.docker().build_image(options, None, Some(bollard::body_full(context.into())));
    // Dropping the stream closes the request, and the engine stops a build whose client left.
    let deadline = tokio::time::Instant::now() + spec.build_timeout;
    let cancelled = || cancel.as_ref().is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst));
    loop {
        let next = tokio::select! {
            next = output.next() => next,
            () = tokio::time::sleep_until(deadline) => {
                return Err(format!(
                    "the image build took longer than its build_timeout of {}s and was stopped",
                    spec.build_timeout.as_secs()
                ));
            }
            () = tokio::time::sleep(std::time::Duration::from_millis(100)), if cancel.is_some() => {
                if cancelled() {
                    return Err("the image build was cancelled".to_owned());
                }
                continue;
            }
        };
        let Some(item) = next else { break };
        let info = item.map_err(|e| format!("building the image failed: {}", chain(&e)))?;
        if let Some(detail) = info.error_detail {
            return Err(format!("building the image failed: {}", detail.message.unwrap_or_default()));
        }
        for line in info.stream.iter().flat_map(|text| text.lines()) {
            if !line.trim().is_empty() {
                log(line.trim_end());
            }
        }
    }
    let image = docker.docker().inspect_image(&tag).await.map_err(|e| format!("inspecting image {tag}: {e}"))?;
    let id = image.id.ok_or_else(|| format!("image {tag} has no id"))?;
    let digest = Digest::parse(&id).map_err(|e| format!("image {tag} has the id {id:?}: {e}"))?;
    if let Some(dir) = cache.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    std::fs::write(&cache, format!("{digest}\n")).map_err(|e| format!("writing {}: {e}", cache.display()))?;
    log(&format!("image {digest}"));
    let size = image.size.and_then(|size| u64::try_from(size).ok()).unwrap_or(0);
    Ok(artifact::Built { digest, size, cached: false, layers_reused: 0, layers_built: 0 })
}

/// The server's Docker runtime, or why an image app cannot be built or tested without one.
fn docker<'c>(ctx: &'c Ctx, spec: &AppSpec) -> Result<&'c runtime::DockerRuntime, String> {
    ctx.runtime.docker().ok_or_else(|| {
        format!(
            "{} is built from a Dockerfile, which needs a Docker engine: start the server with \
             `--runtime docker --stack-image IMAGE`",
            spec.name
        )
    })
}

/// The source tree as the tarball the engine takes as a build context.
fn pack_context(src: &Path) -> Result<Vec<u8>, String> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", src).map_err(|e| format!("packing the build context: {e}"))?;
    builder.into_inner().map_err(|e| format!("packing the build context: {e}"))
}

/// Where a test step's containers run: an app's image, or the stack image with a slug.
pub(crate) enum TestImage<'a> {
    Image(&'a Digest),
    /// The stack image, with the unpacked slug mounted read-only at `/app`, the working
    /// directory, as its instances run under the Docker runtime.
    Slug {
        stack: &'a str,
        slug: &'a Path,
    },
}

/// The test commands of `spec`, each turned into a `docker run` that runs it inside a fresh
/// container of `image`: the step's env by name (the CLI passes the values), the secrets file
/// `secrets` (if any) mounted and sourced, `$DROVER_REPORTS` mounted at `/reports`. `run` names
/// the containers. The commands are the app author's own; they are quoted, never interpolated.
pub(crate) fn test_commands(
    ctx: &Ctx,
    commands: &[String],
    image: &TestImage<'_>,
    env: &BTreeMap<String, String>,
    secrets: Option<&Path>,
    run: &str,
) -> Vec<String> {
    let docker = docker_cli();
    commands
        .iter()
        .enumerate()
        .map(|(idx, command)| {
            let mut line = format!(
                "exec {} run --rm --name drover-test-{run}-{idx} --label {} --network host --entrypoint /bin/sh \
                 -v \"$DROVER_REPORTS:/reports\" -e DROVER_REPORTS=/reports",
                quote(&docker),
                quote(&test_label(ctx))
            );
            for name in env.keys() {
                line.push_str(&format!(" -e {}", quote(name)));
            }
            let script = match secrets {
                Some(file) => {
                    line.push_str(&format!(" -v {}", quote(&format!("{}:/run/drover/secrets.env:ro", file.display()))));
                    "set -a; . /run/drover/secrets.env; set +a; exec /bin/sh -c \"$1\""
                }
                None => "exec /bin/sh -c \"$1\"",
            };
            let image = match image {
                TestImage::Image(digest) => digest.to_string(),
                TestImage::Slug { stack, slug } => {
                    line.push_str(&format!(" -v {} -w /app", quote(&format!("{}:/app:ro", slug.display()))));
                    (*stack).to_owned()
                }
            };
            // `--entrypoint /bin/sh`: the image's own entrypoint is not put in front.
            line.push_str(&format!(" {} -c {} sh {}", quote(&image), quote(script), quote(command)));
            line
        })
        .collect()
}

/// Removes the test containers of this data directory, named `run` or, with `None`, all of
/// them: what a stopped command left (its `docker run` client was killed, not the container).
pub(crate) async fn remove_test_containers(ctx: &Ctx, run: Option<&str>) {
    let Some(docker) = ctx.runtime.docker() else { return };
    let filters = HashMap::from([("label".to_owned(), vec![test_label(ctx)])]);
    let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    let Ok(containers) = docker.docker().list_containers(Some(options)).await else { return };
    for container in containers {
        let names = container.names.unwrap_or_default();
        if let Some(run) = run {
            let prefix = format!("/drover-test-{run}-");
            if !names.iter().any(|name| name.starts_with(&prefix)) {
                continue;
            }
        }
        let Some(id) = container.id else { continue };
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        let _ = docker.docker().remove_container(&id, Some(options)).await;
    }
}

/// The label of this data directory's test containers: its absolute path.
fn test_label(ctx: &Ctx) -> String {
    let root = std::path::absolute(ctx.data.root()).unwrap_or_else(|_| ctx.data.root().to_owned());
    format!("{TEST_LABEL}={}", root.display())
}

/// The `docker` client by absolute path, found on the server's `PATH` (a test step's own `PATH`
/// is the app's), or plain `docker`.
fn docker_cli() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("docker"))
        .find(|candidate| candidate.is_file())
        .map_or_else(|| "docker".to_owned(), |found| found.display().to_string())
}

/// The engine address the server uses, for the test step's `docker` client: what bollard
/// reads, `DOCKER_HOST`, if the server has one.
pub(crate) fn docker_host() -> Option<String> {
    std::env::var("DOCKER_HOST").ok().filter(|host| !host.is_empty())
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quoting_keeps_any_text_one_word() {
        for text in ["plain", "it's", "$(touch pwned)", "a b\nc", "''", ""] {
            let out = std::process::Command::new("sh").arg("-c").arg(format!("printf %s {}", quote(text))).output();
            assert_eq!(String::from_utf8(out.unwrap().stdout).unwrap(), text);
        }
    }
}
