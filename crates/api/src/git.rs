//! Drover as a git remote: smart HTTP served by `git http-backend`, with hooks that validate a
//! push before it is accepted and queue its pipeline run after.
//!
//! `git push drover main` talks to `/git/APP.git/...`. The repository is created on first use
//! under `repos/APP.git`. Ref names, commit messages and authors never reach a shell: the hooks
//! are `drover hook pre-receive|post-receive`, which read ref updates from stdin as data.
//!
//! `git http-backend` runs with nothing of the operator's git configuration ([`crate::gitcmd`])
//! and with the repository's `hooks/` as its hooks, in a process group recorded in the store, so
//! neither a pusher that goes away nor a `kill -9` of the server leaves git running:
//!
//! 1. A request whose client went away mid-answer gets its group stopped (SIGTERM, so
//!    `receive-pack` removes its quarantine directory, then SIGKILL), and the branches of a
//!    push cut off that way are checked for runs, as below.
//! 2. A server that died mid-push killed `http-backend` with it (parent-death signal); a
//!    starting server kills the rest of the group (`groups::kill_leftovers`), then [`recover`]s
//!    each repository: it removes the quarantine directories, temporary packs, `.keep` files
//!    and lock files the killed processes left, and queues a run for each branch whose head has
//!    none, which is what a push stored by a `receive-pack` outliving its server looks like
//!    (its post-receive hook found no server to tell).

use crate::gitcmd::{Access, Repo};
use crate::groups::GroupRecord;
use crate::server::Ctx;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use deploy::reconciler::now_ms;
use model::AppName;
use nix::sys::signal::Signal;
use std::path::{Path as FsPath, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tracing::{info, warn};

/// How long git gets to clean up after SIGTERM (its quarantine directory) before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The smart-HTTP endpoints a git client uses; nothing else of a repository is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    InfoRefs,
    UploadPack,
    ReceivePack,
}

/// Splits `APP.git/rest` into the app and the endpoint, refusing anything else.
fn parse_path(path: &str) -> Option<(AppName, Endpoint)> {
    let (repo, rest) = path.split_once('/')?;
    let app = AppName::parse(repo.strip_suffix(".git")?).ok()?;
    let endpoint = match rest {
        "info/refs" => Endpoint::InfoRefs,
        "git-upload-pack" => Endpoint::UploadPack,
        "git-receive-pack" => Endpoint::ReceivePack,
        _ => return None,
    };
    Some((app, endpoint))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"drover\"")],
        "drover: authentication required\n",
    )
        .into_response()
}

/// Accepts the API token as a Basic password (any user name) or as a Bearer token.
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    use base64::Engine;
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let given = if let Some(basic) = value.strip_prefix("Basic ") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) else {
            return false;
        };
        let Ok(text) = String::from_utf8(decoded) else {
            return false;
        };
        text.split_once(':').map(|(_, password)| password.to_owned()).unwrap_or_default()
    } else if let Some(bearer) = value.strip_prefix("Bearer ") {
        bearer.to_owned()
    } else {
        return false;
    };
    crate::routes::same_token(given.as_bytes(), token.as_bytes())
}

fn shell_quote(path: &std::path::Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', "'\\''"))
}

/// Creates `repos/APP.git` if needed and (re)writes its hooks to call this `drover` binary.
pub(crate) async fn ensure_repo(ctx: &Ctx, app: &AppName) -> std::io::Result<PathBuf> {
    let repo = ctx.data.repos().join(format!("{app}.git"));
    if !repo.join("HEAD").exists() {
        std::fs::create_dir_all(ctx.data.repos())?;
        // No template: nothing but what git needs and the hooks written below.
        let mut init = crate::gitcmd::command(Repo::Unnamed, Access::Local);
        init.args(["init", "--quiet", "--bare", "--initial-branch=main", "--template="]).arg(&repo);
        let out = crate::gitcmd::output(ctx, init, format!("git init for {app}")).await?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "git init --bare failed: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    std::fs::create_dir_all(repo.join("hooks"))?;
    for hook in ["pre-receive", "post-receive"] {
        let script = format!(
            "#!/bin/sh\n# Written by drover: validates pushes and queues their pipeline runs.\nexec {} --data-dir {} hook {hook}\n",
            shell_quote(&ctx.exe),
            shell_quote(ctx.data.root())
        );
        let path = repo.join("hooks").join(hook);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(script.as_str()) {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(&path, script)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(repo)
}

/// Serves one smart-HTTP request through `git http-backend` (CGI).
pub(crate) async fn serve(State(ctx): State<Arc<Ctx>>, Path(path): Path<String>, request: Request) -> Response {
    let Some((app, endpoint)) = parse_path(&path) else {
        return (StatusCode::NOT_FOUND, "drover: not a git endpoint\n").into_response();
    };
    if !authorized(request.headers(), &ctx.token) {
        return unauthorized();
    }
    let query = request.uri().query().unwrap_or("").to_owned();
    let service_ok = match endpoint {
        Endpoint::InfoRefs => matches!(query.as_str(), "service=git-upload-pack" | "service=git-receive-pack"),
        Endpoint::UploadPack | Endpoint::ReceivePack => request.method() == Method::POST,
    };
    if !service_ok {
        return (StatusCode::FORBIDDEN, "drover: only smart HTTP is served\n").into_response();
    }
    let repo_exists = ctx.data.repos().join(format!("{app}.git")).join("HEAD").exists();
    let pushing = endpoint == Endpoint::ReceivePack || query == "service=git-receive-pack";
    if !repo_exists && !pushing {
        return (StatusCode::NOT_FOUND, format!("drover: no repository for app {app}; push to create it\n"))
            .into_response();
    }
    // git only ever gzips a request body; anything else would reach git as bytes it cannot read.
    let encoding = match body_encoding(request.headers()) {
        Ok(encoding) => encoding,
        Err(given) => {
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                [(header::ACCEPT_ENCODING, "gzip")],
                format!("drover: request body encoding {given:?} is not supported; send it as is or gzipped\n"),
            )
                .into_response()
        }
    };
    if let Err(e) = ensure_repo(&ctx, &app).await {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("drover: preparing the repository: {e}\n")).into_response();
    }

    let method = request.method().to_string();
    let content_type = header_str(request.headers(), header::CONTENT_TYPE);
    // The limit counts the bytes git will read: a gzipped body is inflated here, counted as it
    // inflates, and handed to git as is, so a small body cannot inflate into a huge pack.
    let limit = ctx.settings.push_limit as usize;
    let body = match read_body(request.into_body(), encoding, limit).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            let message = match endpoint {
                Endpoint::ReceivePack => {
                    format!("drover: push larger than the limit of {limit} bytes; nothing was stored\n")
                }
                _ => format!("drover: request larger than the limit of {limit} bytes (the push limit)\n"),
            };
            return (StatusCode::PAYLOAD_TOO_LARGE, message).into_response();
        }
        Err(BodyError::Malformed(e)) => {
            return (StatusCode::BAD_REQUEST, format!("drover: the gzipped request body cannot be inflated: {e}\n"))
                .into_response()
        }
        Err(BodyError::Broken) => {
            return (StatusCode::BAD_REQUEST, "drover: the request body was cut off\n").into_response()
        }
    };

    let hooks = ctx.data.repos().join(format!("{app}.git")).join("hooks");
    let mut command = crate::gitcmd::command(Repo::Unnamed, Access::Serve { hooks: &hooks });
    command
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", ctx.data.repos())
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", format!("/{path}"))
        .env("REQUEST_METHOD", method)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", content_type)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", "drover")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let running = match crate::gitcmd::spawn(&ctx, command, format!("git http-backend for {app}")).await {
        Ok(running) => running,
        Err(e) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("drover: running git http-backend: {e}\n"))
                .into_response()
        }
    };
    let crate::gitcmd::Running { mut child, group } = running;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let stderr = child.stderr.take().expect("stderr is piped");
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            warn!(%line, "git http-backend");
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let backend = Backend {
        child: Some(child),
        group: Some(group),
        ctx: ctx.clone(),
        app: app.clone(),
        served: if endpoint == Endpoint::ReceivePack { Served::Push } else { Served::Other },
        answered: false,
    };

    // CGI answer: header lines, a blank line, then the body.
    let mut builder = Response::builder().status(StatusCode::OK);
    loop {
        let mut line = String::new();
        match stdout.read_line(&mut line).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                return (StatusCode::BAD_GATEWAY, format!("drover: reading git http-backend: {e}\n")).into_response()
            }
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(500);
            builder = builder.status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
        } else if let (Ok(name), Ok(value)) =
            (header::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value))
        {
            builder = builder.header(name, value);
        }
    }
    let stream = futures_util::stream::unfold((stdout, backend), |(mut stdout, mut backend)| async move {
        let mut chunk = vec![0u8; 64 * 1024];
        match stdout.read(&mut chunk).await {
            Ok(0) => {
                backend.answered();
                None
            }
            Err(_) => None,
            Ok(n) => {
                chunk.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(chunk)), (stdout, backend)))
            }
        }
    });
    builder.body(Body::from_stream(stream)).unwrap_or_else(|e| {
        (StatusCode::INTERNAL_SERVER_ERROR, format!("drover: bad answer from git http-backend: {e}\n")).into_response()
    })
}

/// What a `git http-backend` request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    /// `git-receive-pack`: a push, which may have moved branches.
    Push,
    Other,
}

/// A running `git http-backend` and its recorded process group, owned by its response body.
/// Dropped with the body, at its end or when the client went away, it has [`finish`] wait
/// for git (or stop it) in the background.
struct Backend {
    child: Option<tokio::process::Child>,
    group: Option<GroupRecord>,
    ctx: Arc<Ctx>,
    app: AppName,
    served: Served,
    /// The whole answer was read: git is done, or about to exit.
    answered: bool,
}

impl Backend {
    /// Notes that the whole answer was read.
    fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let (Some(child), Some(group)) = (self.child.take(), self.group.take()) else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // The server is going away: dropping the record kills the group.
            return;
        };
        let cut_off = match self.answered {
            true => CutOff::No,
            false => CutOff::Yes,
        };
        runtime.spawn(finish(self.ctx.clone(), self.app.clone(), self.served, cut_off, child, group));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CutOff {
    No,
    /// The answer was not read to its end (the client went away, or it was malformed).
    Yes,
}

/// Waits for a request's git to exit; one cut off gets SIGTERM first, so `receive-pack` removes
/// its quarantine directory, and SIGKILL after [`STOP_GRACE`]. Then the group is killed and
/// forgotten, and the branches of a push that was cut off are checked for runs: it may have
/// moved a branch without its post-receive hook queueing the run.
async fn finish(
    ctx: Arc<Ctx>,
    app: AppName,
    served: Served,
    cut_off: CutOff,
    mut child: tokio::process::Child,
    group: GroupRecord,
) {
    if cut_off == CutOff::Yes {
        group.signal(Signal::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    let _ = tokio::time::timeout(STOP_GRACE, child.wait()).await;
    while group.is_alive() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(group);
    drop(child);
    if served == Served::Push && cut_off == CutOff::Yes {
        queue_lost_runs(&ctx, &app).await;
    }
}

/// Makes every repository whole after a server that died: call it at startup, after the
/// process groups a dead server left were killed and before the API serves or a source is
/// polled, so no git runs on the repositories meanwhile.
pub(crate) async fn recover(ctx: &Ctx) {
    let Ok(entries) = std::fs::read_dir(ctx.data.repos()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(app) = name.to_str().and_then(|n| n.strip_suffix(".git")).and_then(|n| AppName::parse(n).ok()) else {
            continue;
        };
        let repo = entry.path();
        let removed = remove_leftovers(&repo);
        if removed > 0 {
            info!(app = %app, removed, "removed what git processes of a stopped server left in the repository");
        }
        queue_lost_runs(ctx, &app).await;
    }
}

/// What a killed git leaves in a repository it was writing: quarantine directories of
/// pushes (`objects/tmp_objdir-incoming-*`, `objects/incoming-*` before git 2.13), temporary
/// packs and indexes (`objects/pack/tmp_*`), `.keep` files of packs being received or fetched,
/// and lock files (`*.lock`, which would refuse every later update of that ref). Removes them
/// and returns how many there were; only safe while no git process uses the repository.
fn remove_leftovers(repo: &FsPath) -> usize {
    let mut removed = 0;
    let mut remove = |path: &FsPath, is_dir: bool| {
        let result = if is_dir { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
        match result {
            Ok(()) => removed += 1,
            Err(e) => warn!(path = %path.display(), error = %e, "cannot remove what a stopped git left"),
        }
    };
    let objects = repo.join("objects");
    for entry in std::fs::read_dir(&objects).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && (name.starts_with("tmp_objdir-incoming-") || name.starts_with("incoming-")) {
            remove(&entry.path(), true);
        }
    }
    for entry in std::fs::read_dir(objects.join("pack")).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        // A pack is kept while git receives or fetches it; `git gc` would never repack it.
        let transfer_keep = name.ends_with(".keep")
            && std::fs::read_to_string(&path)
                .is_ok_and(|text| text.starts_with("receive-pack ") || text.starts_with("fetch-pack "));
        if name.starts_with("tmp_") || transfer_keep {
            remove(&path, false);
        }
    }
    // Lock files: of refs anywhere under refs/, and of HEAD, packed-refs, config, shallow and
    // the object directory's info files. Loose objects are not walked.
    let mut dirs = vec![repo.to_path_buf(), objects.join("info")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(file_type) = entry.file_type() else { continue };
            let path = entry.path();
            if file_type.is_dir() && path.starts_with(repo.join("refs")) {
                dirs.push(path);
            } else if file_type.is_file() && entry.file_name().to_string_lossy().ends_with(".lock") {
                remove(&path, false);
            }
        }
    }
    removed
}

/// Queues a run for each branch of `app`'s repository whose head is not the commit of the
/// branch's newest run: a push that moved it was stored, but its run never queued. A branch
/// whose newest run is of its head is left alone whatever became of that run (finished,
/// cancelled, waiting); a deleted branch has no head and gets nothing.
pub(crate) async fn queue_lost_runs(ctx: &Ctx, app: &AppName) {
    let repo = ctx.data.repos().join(format!("{app}.git"));
    let mut list = crate::gitcmd::command(Repo::At(&repo), Access::Local);
    list.args(["for-each-ref", "--format=%(objecttype) %(objectname) %(refname)", "refs/heads/"]);
    let out = match crate::gitcmd::output(ctx, list, format!("git for-each-ref for {app}")).await {
        Ok(out) if out.status.success() => out,
        Ok(out) => {
            warn!(app = %app, error = %String::from_utf8_lossy(&out.stderr).trim(), "cannot list the branches of a repository");
            return;
        }
        Err(e) => {
            warn!(app = %app, error = %e, "cannot list the branches of a repository");
            return;
        }
    };
    for (branch, commit) in branch_heads(&String::from_utf8_lossy(&out.stdout)) {
        let latest = ctx.store().latest_run_of_branch(app, branch);
        match latest {
            Ok(Some(run)) if run.commit == commit => continue,
            Ok(_) => {}
            Err(e) => {
                warn!(app = %app, branch, error = %e, "cannot read the runs of a branch");
                continue;
            }
        }
        let mut store = ctx.store();
        match store.queue_run(app, branch, commit, "push", now_ms()) {
            Ok((run, _)) => {
                let message = format!(
                    "run {run} queued for branch {branch:?} at {}: its push was stored, but its run was not queued",
                    &commit[..12]
                );
                let _ = store.append_run_log(run, &message);
                let _ = store.add_event(Some(app), "run.recovered", &message, now_ms());
                info!(app = %app, branch, run, "queued the run of a push that had none");
            }
            Err(e) => warn!(app = %app, branch, error = %e, "cannot queue the run of a push that had none"),
        }
    }
    ctx.runs_wake.notify_one();
}

/// `(branch, commit)` of each line `commit SHA refs/heads/BRANCH` of `git for-each-ref`.
fn branch_heads(listing: &str) -> Vec<(&str, &str)> {
    listing
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("commit ")?;
            let (commit, refname) = rest.split_once(' ')?;
            let branch = refname.strip_prefix("refs/heads/")?;
            (commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit())).then_some((branch, commit))
        })
        .collect()
}

/// How a request body is encoded (`Content-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyEncoding {
    Identity,
    Gzip,
}

/// The encoding of a request body: none, `identity` or one `gzip` (`x-gzip`), which is all a
/// git client sends. Anything else is returned as given, to be refused.
fn body_encoding(headers: &HeaderMap) -> Result<BodyEncoding, String> {
    let mut codings = Vec::new();
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let Ok(value) = value.to_str() else {
            return Err(String::from_utf8_lossy(value.as_bytes()).into_owned());
        };
        codings.extend(value.split(',').map(|c| c.trim().to_ascii_lowercase()).filter(|c| !c.is_empty()));
    }
    codings.retain(|c| c != "identity");
    match codings.as_slice() {
        [] => Ok(BodyEncoding::Identity),
        [one] if one == "gzip" || one == "x-gzip" => Ok(BodyEncoding::Gzip),
        _ => Err(codings.join(", ")),
    }
}

/// Why a request body was not read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Over the limit once decoded (or over [`DRAIN_CAP`] as sent).
    TooLarge,
    /// Not a gzip stream, or one with trailing or missing bytes.
    Malformed(std::io::Error),
    /// The client's body broke off.
    Broken,
}

/// How much of a refused body is read on, so the client sees the answer rather than a broken
/// pipe; past it the connection is dropped.
const DRAIN_CAP: usize = 1 << 30;

/// Where a gzipped body inflates: it refuses to grow past `limit`, which stops the inflating.
struct Inflated {
    buf: Vec<u8>,
    limit: usize,
    over: bool,
}

impl std::io::Write for Inflated {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.over = true;
            return Err(std::io::Error::other("over the limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads a request body and decodes it; the decoded body is at most `limit` bytes. A body over
/// it is read on to its end (up to [`DRAIN_CAP`] bytes as sent) but no longer inflated, and
/// dropped, so the client sees the 413 answer rather than a broken pipe.
pub(crate) async fn read_body(body: Body, encoding: BodyEncoding, limit: usize) -> Result<bytes::Bytes, BodyError> {
    use futures_util::StreamExt;
    use std::io::Write;
    let mut stream = body.into_data_stream();
    let mut identity = bytes::BytesMut::new();
    let mut gzip = flate2::write::GzDecoder::new(Inflated { buf: Vec::new(), limit, over: false });
    let mut sent = 0usize;
    let mut too_large = false;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| BodyError::Broken)?;
        sent += chunk.len();
        if sent > DRAIN_CAP {
            return Err(BodyError::TooLarge);
        }
        if too_large {
            continue;
        }
        match encoding {
            BodyEncoding::Identity if sent > limit => too_large = true,
            BodyEncoding::Identity => identity.extend_from_slice(&chunk),
            // Inflating stops at the limit, so one chunk costs at most `limit` bytes of work.
            BodyEncoding::Gzip => match gzip.write_all(&chunk) {
                Ok(()) => {}
                Err(_) if gzip.get_ref().over => too_large = true,
                Err(e) => return Err(BodyError::Malformed(e)),
            },
        }
    }
    if too_large {
        return Err(BodyError::TooLarge);
    }
    match encoding {
        BodyEncoding::Identity => Ok(identity.freeze()),
        BodyEncoding::Gzip => match gzip.try_finish() {
            Ok(()) => Ok(std::mem::take(&mut gzip.get_mut().buf).into()),
            Err(_) if gzip.get_ref().over => Err(BodyError::TooLarge),
            Err(e) => Err(BodyError::Malformed(e)),
        },
    }
}

/// Reads a request body of at most `limit` bytes as sent, whatever its `Content-Encoding`
/// (webhooks: their signature covers the bytes as sent). A larger one is read on to its end
/// (up to [`DRAIN_CAP`]) and dropped, so the client sees the 413 answer rather than a broken pipe.
pub(crate) async fn read_limited(body: Body, limit: usize) -> Result<bytes::Bytes, ()> {
    read_body(body, BodyEncoding::Identity, limit).await.map_err(|_| ())
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> String {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_smart_http_paths_of_valid_apps_are_served() {
        let table = [
            ("hello.git/info/refs", Some(("hello", Endpoint::InfoRefs))),
            ("hello.git/git-upload-pack", Some(("hello", Endpoint::UploadPack))),
            ("hello.git/git-receive-pack", Some(("hello", Endpoint::ReceivePack))),
            ("hello.git/HEAD", None),
            ("hello.git/objects/info/packs", None),
            ("hello/info/refs", None),
            ("../x.git/info/refs", None),
            ("x;rm.git/info/refs", None),
        ];
        for (path, expected) in table {
            let got = parse_path(path).map(|(app, e)| (app.to_string(), e));
            assert_eq!(got, expected.map(|(a, e)| (a.to_owned(), e)), "{path}");
        }
    }

    #[test]
    fn branch_heads_are_the_commits_of_refs_heads() {
        let a = "a".repeat(40);
        let listing = format!(
            "commit {a} refs/heads/main\ncommit {a} refs/heads/feature/x;y\ntag {a} refs/heads/odd\ncommit short refs/heads/bad\n"
        );
        assert_eq!(branch_heads(&listing), [("main", a.as_str()), ("feature/x;y", a.as_str())]);
    }

    #[test]
    fn leftovers_of_killed_git_are_removed_and_nothing_else() {
        let repo = tempfile::tempdir().unwrap();
        let r = repo.path();
        let files = [
            ("objects/tmp_objdir-incoming-abc/pack/tmp_pack_1", true),
            ("objects/incoming-xyz/ab/cdef", true),
            ("objects/pack/tmp_pack_2", true),
            ("objects/pack/pack-1.keep", true),
            ("objects/pack/pack-2.keep", false),
            ("objects/pack/pack-1.pack", false),
            ("objects/ab/cdef", false),
            ("refs/heads/feature/x.lock", true),
            ("refs/heads/feature/x", false),
            ("packed-refs.lock", true),
            ("HEAD", false),
        ];
        for (file, _) in files {
            std::fs::create_dir_all(r.join(file).parent().unwrap()).unwrap();
            std::fs::write(r.join(file), "x").unwrap();
        }
        std::fs::write(r.join("objects/pack/pack-1.keep"), "receive-pack 123 on host\n").unwrap();
        std::fs::write(r.join("objects/pack/pack-2.keep"), "kept by the operator\n").unwrap();
        assert_eq!(remove_leftovers(r), 6);
        for (file, removed) in files {
            assert_eq!(!r.join(file).exists(), removed, "{file}");
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// Reads `sent` in chunks of `chunk` bytes, and says what came of it.
    fn read(sent: &[u8], chunk: usize, encoding: BodyEncoding, limit: usize) -> String {
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
            sent.chunks(chunk).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
        let body = Body::from_stream(futures_util::stream::iter(chunks));
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        match rt.block_on(read_body(body, encoding, limit)) {
            Ok(body) => format!("ok {} bytes", body.len()),
            Err(BodyError::TooLarge) => "too large".to_owned(),
            Err(BodyError::Malformed(_)) => "malformed".to_owned(),
            Err(BodyError::Broken) => "broken".to_owned(),
        }
    }

    #[test]
    fn issue_9_f4_the_limit_counts_the_inflated_body() {
        let zeros = vec![0u8; 5_000_000];
        let bomb = gzip(&zeros);
        assert!(bomb.len() < 10_000, "{}", bomb.len());
        let text = gzip(b"0032want 0123456789012345678901234567890123456789\n0000");
        let mut trailing = text.clone();
        trailing.extend_from_slice(b"more");
        let (gz, id) = (BodyEncoding::Gzip, BodyEncoding::Identity);
        // What is sent, in chunks of how many bytes, its encoding, the limit, what comes of it.
        type Case<'a> = (&'a str, &'a [u8], usize, BodyEncoding, usize, &'a str);
        let table: [Case; 11] = [
            ("identity under", &zeros[..1000], 7, id, 1000, "ok 1000 bytes"),
            ("identity over", &zeros[..1001], 7, id, 1000, "too large"),
            ("gzip bomb", &bomb, 64 * 1024, gz, 1_000_000, "too large"),
            ("gzip bomb in small chunks", &bomb, 3, gz, 1_000_000, "too large"),
            ("gzip just under", &bomb, 1000, gz, 5_000_000, "ok 5000000 bytes"),
            ("gzip one over", &bomb, 1000, gz, 4_999_999, "too large"),
            ("gzip text", &text, 1, gz, 100, "ok 54 bytes"),
            ("gzip cut off", &text[..text.len() - 4], 10, gz, 100, "malformed"),
            ("gzip with trailing bytes", &trailing, 10, gz, 100, "malformed"),
            ("not gzip", b"0000", 10, gz, 100, "malformed"),
            ("empty gzip", b"", 10, gz, 100, "malformed"),
        ];
        for (what, sent, chunk, encoding, limit, expected) in table {
            assert_eq!(read(sent, chunk, encoding, limit), expected, "{what}");
        }
    }

    #[test]
    fn only_identity_and_gzip_bodies_are_accepted() {
        let table: [(&[&str], Result<BodyEncoding, &str>); 9] = [
            (&[], Ok(BodyEncoding::Identity)),
            (&["identity"], Ok(BodyEncoding::Identity)),
            (&["gzip"], Ok(BodyEncoding::Gzip)),
            (&["x-gzip"], Ok(BodyEncoding::Gzip)),
            (&["GZip, identity"], Ok(BodyEncoding::Gzip)),
            (&["deflate"], Err("deflate")),
            (&["br"], Err("br")),
            (&["gzip, gzip"], Err("gzip, gzip")),
            (&["gzip", "deflate"], Err("gzip, deflate")),
        ];
        for (values, expected) in table {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(header::CONTENT_ENCODING, HeaderValue::from_static(value));
            }
            assert_eq!(body_encoding(&headers), expected.map_err(str::to_owned), "{values:?}");
        }
    }

    #[test]
    fn hook_paths_are_quoted_for_sh() {
        assert_eq!(shell_quote(std::path::Path::new("/a b/it's")), "'/a b/it'\\''s'");
    }
}
