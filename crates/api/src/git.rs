//! Drover as a git remote: smart HTTP served by `git http-backend`, with hooks that validate a
//! push before it is accepted and queue its pipeline run after.
//!
//! `git push drover main` talks to `/git/APP.git/...`. The repository is created on first use
//! under `repos/APP.git`. Ref names, commit messages and authors never reach a shell: the hooks
//! are `drover hook pre-receive|post-receive`, which read ref updates from stdin as data.

use crate::server::Ctx;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use model::AppName;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tracing::warn;

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
        let status = tokio::process::Command::new("git")
            .args(["init", "--quiet", "--bare", "--initial-branch=main"])
            .arg(&repo)
            .stdin(Stdio::null())
            .status()
            .await?;
        if !status.success() {
            return Err(std::io::Error::other(format!("git init --bare failed: {status}")));
        }
    }
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
    if let Err(e) = ensure_repo(&ctx, &app).await {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("drover: preparing the repository: {e}\n")).into_response();
    }

    let method = request.method().to_string();
    let content_type = header_str(request.headers(), header::CONTENT_TYPE);
    let encoding = header_str(request.headers(), header::CONTENT_ENCODING);
    let limit = ctx.settings.push_limit as usize;
    let body = match read_limited(request.into_body(), limit).await {
        Ok(body) => body,
        Err(()) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("drover: push larger than the limit of {limit} bytes; nothing was stored\n"),
            )
                .into_response()
        }
    };

    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
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
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if !encoding.is_empty() {
        command.env("HTTP_CONTENT_ENCODING", encoding);
    }
    if let Some(home) = std::env::var_os("HOME") {
        command.env("HOME", home);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("drover: running git http-backend: {e}\n"))
                .into_response()
        }
    };
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
    let stream = futures_util::stream::unfold((stdout, child), |(mut stdout, child)| async move {
        let mut chunk = vec![0u8; 64 * 1024];
        match stdout.read(&mut chunk).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                chunk.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(chunk)), (stdout, child)))
            }
        }
    });
    builder.body(Body::from_stream(stream)).unwrap_or_else(|e| {
        (StatusCode::INTERNAL_SERVER_ERROR, format!("drover: bad answer from git http-backend: {e}\n")).into_response()
    })
}

/// Reads a request body of at most `limit` bytes. A larger one is read on to its end (up to a
/// hard cap) and dropped, so the client sees the 413 answer rather than a broken pipe.
pub(crate) async fn read_limited(body: Body, limit: usize) -> Result<bytes::Bytes, ()> {
    use futures_util::StreamExt;
    const DRAIN_CAP: usize = 1 << 30;
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ())?;
        total += chunk.len();
        if total > DRAIN_CAP {
            return Err(());
        }
        if total <= limit {
            buf.extend_from_slice(&chunk);
        }
    }
    if total > limit {
        return Err(());
    }
    Ok(buf.freeze())
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
    fn hook_paths_are_quoted_for_sh() {
        assert_eq!(shell_quote(std::path::Path::new("/a b/it's")), "'/a b/it'\\''s'");
    }
}
