//! Remote repositories as triggers: signed webhooks from GitHub, GitLab, Gitea and Bitbucket,
//! and polling for remotes that cannot send them. Either way Drover fetches the branch from the
//! app's configured clone URL into its own repository and queues a run of the fetched commit.

use crate::routes::{ApiError, ApiResult};
use crate::server::Ctx;
use crate::wire::{SourceRequest, SourceView};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use deploy::reconciler::now_ms;
use model::AppName;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use store::Source;
use tracing::{info, warn};
use webhook::{Event, Provider};

/// Largest webhook payload accepted.
const MAX_WEBHOOK_BYTES: usize = 5 * 1024 * 1024;

/// Transports git may use for a source; `ext::` and friends could run commands.
const ALLOWED_PROTOCOLS: &str = "http:https:git:ssh:file";

fn secret_context(app: &AppName) -> String {
    format!("webhook-secret;app={app}")
}

/// A clone URL git may fetch from: a known scheme or an absolute path, never an option.
fn check_url(url: &str) -> Result<(), String> {
    let scheme_ok = ["http://", "https://", "git://", "ssh://", "file://"].iter().any(|s| url.starts_with(s));
    if !(scheme_ok || url.starts_with('/')) || url.contains(char::is_whitespace) {
        return Err(format!(
            "source url {url:?}: expected an http(s)://, git://, ssh:// or file:// URL or an absolute path"
        ));
    }
    Ok(())
}

/// A git command that talks to a source, over [`ALLOWED_PROTOCOLS`] only.
fn git() -> std::process::Command {
    crate::gitcmd::command(crate::gitcmd::Repo::Unnamed, crate::gitcmd::Access::Remote { protocols: ALLOWED_PROTOCOLS })
}

/// A git command that reads the app's repository.
fn local_git(repo: &std::path::Path) -> std::process::Command {
    crate::gitcmd::command(crate::gitcmd::Repo::At(repo), crate::gitcmd::Access::Local)
}

fn view(ctx: &Ctx, source: &Source) -> SourceView {
    let secret = source.sealed_secret.as_ref().and_then(|sealed| {
        let value = ctx.keyring.open(&secret_context(&source.app), sealed).ok()?;
        value.expose_str().map(str::to_owned)
    });
    SourceView {
        app: source.app.to_string(),
        url: source.url.clone(),
        provider: source.provider.clone(),
        webhook_url: source.provider.as_ref().map(|p| format!("http://{}/hooks/{p}/{}", ctx.api_addr, source.app)),
        webhook_secret: secret,
        poll_interval_ms: source.poll_interval_ms,
    }
}

/// `drover source set`: where an app's code lives, and how Drover hears of changes.
pub(crate) async fn set(
    State(ctx): State<Arc<Ctx>>,
    Path(app): Path<String>,
    Json(req): Json<SourceRequest>,
) -> ApiResult<Json<SourceView>> {
    let app = AppName::parse(&app).map_err(|e| ApiError::bad_request(e.to_string()))?;
    check_url(&req.url).map_err(ApiError::bad_request)?;
    if let Some(provider) = &req.provider {
        if Provider::parse(provider).is_none() {
            let names: Vec<&str> = Provider::ALL.iter().map(|p| p.name()).collect();
            return Err(ApiError::bad_request(format!(
                "unknown provider {provider:?} (expected one of: {})",
                names.join(", ")
            )));
        }
    }
    // The range the CLI checks too; the next poll's time cannot overflow within it.
    if let Some(ms) = req.poll_interval_ms {
        model::POLL_INTERVAL_RANGE
            .check(std::time::Duration::from_millis(ms))
            .map_err(|e| ApiError::bad_request(format!("poll interval: {e}")))?;
    }
    crate::git::ensure_repo(&ctx, &app)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("preparing the repository: {e}")))?;
    let existing = ctx.store().source(&app)?;
    let sealed_secret = match (&req.provider, existing.as_ref().and_then(|s| s.sealed_secret.clone())) {
        (None, _) => None,
        (Some(_), Some(sealed)) => Some(sealed),
        (Some(_), None) => {
            let bytes: [u8; 24] = rand::random();
            let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            Some(ctx.keyring.seal(&secret_context(&app), secret.as_bytes()))
        }
    };
    let source = Source {
        app: app.clone(),
        url: req.url,
        provider: req.provider,
        sealed_secret,
        poll_interval_ms: req.poll_interval_ms,
        heads: existing.map(|s| s.heads).unwrap_or_default(),
        polled_at_ms: None,
    };
    ctx.store().set_source(&source)?;
    Ok(Json(view(&ctx, &source)))
}

pub(crate) async fn show(State(ctx): State<Arc<Ctx>>, Path(app): Path<String>) -> ApiResult<Json<SourceView>> {
    let app = AppName::parse(&app).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let source = ctx.store().source(&app)?.ok_or_else(|| ApiError::not_found(format!("{app} has no source")))?;
    Ok(Json(view(&ctx, &source)))
}

fn answer(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "message": message.into() }))).into_response()
}

/// `POST /hooks/PROVIDER/APP`: authenticated by the provider's signature, not the API token.
pub(crate) async fn receive(
    State(ctx): State<Arc<Ctx>>,
    Path((provider, app)): Path<(String, String)>,
    request: Request,
) -> Response {
    let (Some(provider), Ok(app)) = (Provider::parse(&provider), AppName::parse(&app)) else {
        return answer(StatusCode::NOT_FOUND, "no such webhook");
    };
    let source = match ctx.store().source(&app) {
        Ok(Some(source)) if source.provider.as_deref() == Some(provider.name()) => source,
        _ => return answer(StatusCode::NOT_FOUND, "no such webhook"),
    };
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let body = match crate::git::read_limited(request.into_body(), MAX_WEBHOOK_BYTES).await {
        Ok(body) => body,
        Err(()) => return answer(StatusCode::PAYLOAD_TOO_LARGE, format!("payload over {MAX_WEBHOOK_BYTES} bytes")),
    };
    let Some(secret) = source.sealed_secret.as_ref().and_then(|s| ctx.keyring.open(&secret_context(&app), s).ok())
    else {
        return answer(StatusCode::INTERNAL_SERVER_ERROR, "the webhook secret cannot be read");
    };
    if let Err(e) = webhook::verify(provider, &headers[..], &body, secret.expose()) {
        warn!(app = %app, provider = provider.name(), error = %e, "webhook refused");
        return answer(StatusCode::UNAUTHORIZED, e.to_string());
    }
    let delivery = match webhook::parse(provider, &headers[..], &body) {
        Ok(delivery) => delivery,
        Err(e) => return answer(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if let Some(signed_at) = delivery.signed_at {
        if let Err(message) = check_signed_time(signed_at, now_ms() / 1000) {
            warn!(app = %app, provider = provider.name(), %message, "webhook refused");
            return answer(StatusCode::BAD_REQUEST, message);
        }
    }
    if let Some(id) = &delivery.id {
        match ctx.store().record_delivery(provider.name(), id, &app, now_ms()) {
            Ok(true) => {}
            Ok(false) => return answer(StatusCode::OK, format!("delivery {id} was already handled")),
            Err(e) => return answer(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
    let changes = match delivery.event {
        Event::Ping => return answer(StatusCode::OK, "pong"),
        Event::Other(name) => return answer(StatusCode::OK, format!("{name} events are ignored")),
        Event::Push(changes) => changes,
    };
    let mut messages = Vec::new();
    for change in changes {
        messages.push(apply_change(&ctx, &source, &change.refname, change.after.as_deref(), "webhook").await);
    }
    ctx.runs_wake.notify_one();
    (StatusCode::ACCEPTED, Json(serde_json::json!({ "messages": messages }))).into_response()
}

/// How old a delivery's signed push time may be: a captured delivery replayed later, under any
/// delivery id, is refused once this has passed. A delivery redelivered by hand after that is
/// refused too; pushing again (or polling) brings the branch in.
const MAX_DELIVERY_AGE_SECS: u64 = 60 * 60;
/// How far ahead of this clock a signed push time may be, for clocks that disagree.
const MAX_CLOCK_SKEW_SECS: u64 = 5 * 60;

/// Refuses a delivery whose signed push time is too old, or too far in the future.
fn check_signed_time(signed_at: u64, now: u64) -> Result<(), String> {
    if signed_at > now + MAX_CLOCK_SKEW_SECS {
        return Err(format!("the delivery is signed {}s in the future: check this machine's clock", signed_at - now));
    }
    let age = now.saturating_sub(signed_at);
    if age > MAX_DELIVERY_AGE_SECS {
        return Err(format!(
            "the delivery's signed push time is {age}s old, more than {MAX_DELIVERY_AGE_SECS}s: a replay? push again to deploy"
        ));
    }
    Ok(())
}

/// Fetches a moved branch and queues a run of `after`; returns a line saying what happened.
async fn apply_change(ctx: &Ctx, source: &Source, refname: &str, after: Option<&str>, trigger: &str) -> String {
    let Some(branch) = refname.strip_prefix("refs/heads/") else {
        return format!("{refname}: only branches start runs");
    };
    let Some(after) = after else {
        // A deletion is believed only once the source confirms it: a forged or replayed
        // deletion delivery must not destroy a live preview.
        return match remote_heads(ctx, source).await {
            Ok(heads) if heads.contains_key(branch) => {
                format!("branch {branch:?} still exists at the source; nothing destroyed")
            }
            Ok(_) => crate::runs::destroy_preview(ctx, &source.app, branch),
            Err(e) => format!("branch {branch:?}: cannot confirm its deletion at the source ({e}); nothing destroyed"),
        };
    };
    // The payload's commit is only data: a hex id, never an option or a revision expression.
    if !crate::runs::is_commit_id(after) {
        return format!("branch {branch:?}: {after:?} is not a commit id; nothing queued");
    }
    let repo = ctx.data.repos().join(format!("{}.git", source.app));
    // `+refs/heads/NAME:refs/heads/NAME` cannot be taken for an option, and git checks the name.
    let refspec = format!("+refs/heads/{branch}:refs/heads/{branch}");
    let mut fetch = git();
    fetch.arg("--git-dir").arg(&repo).args(["fetch", "--quiet", "--no-tags"]).arg(&source.url).arg(&refspec);
    let fetch = crate::gitcmd::output(ctx, fetch, format!("git fetch for {}", source.app)).await;
    match fetch {
        Ok(out) if out.status.success() => {}
        Ok(out) => return format!("branch {branch:?}: fetch failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
        Err(e) => return format!("branch {branch:?}: running git fetch: {e}"),
    }
    let mut head = local_git(&repo);
    head.args(["rev-parse", "--verify", "--quiet"]).arg(format!("refs/heads/{branch}^{{commit}}"));
    let head = crate::gitcmd::output(ctx, head, format!("git rev-parse for {}", source.app)).await;
    let head = match head {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        _ => return format!("branch {branch:?}: not found after fetching"),
    };
    if head != after {
        // A delivery for a commit the branch has since moved past is stale: the newer push
        // has (or will have) its own delivery.
        let mut ancestor = local_git(&repo);
        ancestor.args(["merge-base", "--is-ancestor", after, &head]);
        let ancestor = crate::gitcmd::output(ctx, ancestor, format!("git merge-base for {}", source.app)).await;
        if ancestor.is_ok_and(|out| out.status.success()) {
            return format!(
                "branch {branch:?}: stale delivery for {}, the branch is at {}",
                &after[..12.min(after.len())],
                &head[..12]
            );
        }
        return format!("branch {branch:?}: commit {after} is not on the branch; nothing queued");
    }
    // A delivery replayed (under a new delivery id, or none) names the commit the branch is
    // already at: the run of that commit, whatever became of it, is the run of this delivery.
    match ctx.store().latest_run_of_branch(&source.app, branch) {
        Ok(Some(run)) if run.commit == head => {
            return format!("branch {branch:?}: commit {} already has run {}; nothing queued", &head[..12], run.id)
        }
        Ok(_) => {}
        Err(e) => return format!("branch {branch:?}: {e}"),
    }
    match ctx.store().queue_run(&source.app, branch, &head, trigger, now_ms()) {
        Ok((id, _)) => {
            info!(app = %source.app, branch, run = id, trigger, "run queued");
            format!("run {id} queued for branch {branch:?}")
        }
        Err(e) => format!("branch {branch:?}: {e}"),
    }
}

/// Polls sources that ask for it and queues runs for branches whose head moved.
pub(crate) async fn poll_loop(ctx: Arc<Ctx>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sources = match ctx.store().sources() {
            Ok(sources) => sources,
            Err(e) => {
                warn!(error = %e, "could not read sources");
                continue;
            }
        };
        let now = now_ms();
        for mut source in sources {
            let Some(interval) = source.poll_interval_ms else { continue };
            if source.polled_at_ms.is_some_and(|at| now < at + interval) {
                continue;
            }
            let heads = match remote_heads(&ctx, &source).await {
                Ok(heads) => heads,
                Err(e) => {
                    warn!(app = %source.app, error = %e, "polling failed");
                    source.polled_at_ms = Some(now);
                    let _ = ctx.store().set_source(&source);
                    continue;
                }
            };
            for (branch, sha) in &heads {
                if source.heads.get(branch) != Some(sha) {
                    let line = apply_change(&ctx, &source, &format!("refs/heads/{branch}"), Some(sha), "poll").await;
                    info!(app = %source.app, "{line}");
                }
            }
            source.heads = heads;
            source.polled_at_ms = Some(now);
            if let Err(e) = ctx.store().set_source(&source) {
                warn!(error = %e, "could not record poll");
            }
            ctx.runs_wake.notify_one();
        }
    }
}

async fn remote_heads(ctx: &Ctx, source: &Source) -> Result<BTreeMap<String, String>, String> {
    let mut list = git();
    list.args(["ls-remote", "--heads"]).arg(&source.url);
    let what = format!("git ls-remote for {}", source.app);
    let out = crate::gitcmd::output(ctx, list, what).await.map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (sha, refname) = line.split_once('\t')?;
            Some((refname.strip_prefix("refs/heads/")?.to_owned(), sha.to_owned()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_9_f10_old_or_future_signed_deliveries_are_refused() {
        let now = 1_764_633_600;
        assert!(check_signed_time(now, now).is_ok());
        assert!(check_signed_time(now - MAX_DELIVERY_AGE_SECS, now).is_ok());
        assert!(check_signed_time(now + MAX_CLOCK_SKEW_SECS, now).is_ok());
        let old = check_signed_time(now - MAX_DELIVERY_AGE_SECS - 1, now).unwrap_err();
        assert!(old.contains("3601s old"), "{old}");
        assert!(check_signed_time(now + MAX_CLOCK_SKEW_SECS + 1, now).unwrap_err().contains("future"));
    }
}
