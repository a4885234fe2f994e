//! HTTP handlers. Every route but `/healthz` requires `Authorization: Bearer TOKEN`.

use crate::pipeline::Gate;
use crate::server::Ctx;
use crate::wire::*;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use deploy::reconciler::now_ms;
use model::{AppName, ProcessType, ReleaseId};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use store::DeployStatus;
use tracing::{info, warn};

/// An error answered as `{"error": "..."}` with a status code.
pub(crate) struct ApiError(pub StatusCode, pub String);

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, message.into())
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self(StatusCode::NOT_FOUND, message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> Self {
        match e {
            store::StoreError::NoApp(_) | store::StoreError::NoRelease { .. } => Self::not_found(e.to_string()),
            store::StoreError::Refused(_) => Self(StatusCode::CONFLICT, e.to_string()),
            other => Self(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// An error with its causes, `outer: inner: innermost`, as users need to see it.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub(crate) fn router(ctx: Arc<Ctx>) -> Router {
    let limit = ctx.settings.upload_limit as usize;
    let api = Router::new()
        .route("/apps", get(apps))
        .route("/apps/{app}/releases", get(releases))
        .route("/apps/{app}/ps", get(ps))
        .route("/apps/{app}/logs", get(app_logs))
        .route("/apps/{app}/rollback", post(rollback))
        .route("/apps/{app}/scale", post(scale))
        .route("/deploys", post(create_deploy).layer(DefaultBodyLimit::max(limit)))
        .route("/deploys/{id}", get(deploy_status))
        .route("/events", get(events))
        .route("/apps/{app}/pushes", post(crate::runs::push))
        .route("/apps/{app}/source", get(crate::sources::show).post(crate::sources::set))
        .route("/apps/{app}/config", get(crate::vars::show).post(crate::vars::set))
        .route("/apps/{app}/secrets", post(crate::vars::set_secret))
        .route("/runs", get(crate::runs::list))
        .route("/runs/{id}", get(crate::runs::show))
        .route("/runs/{id}/cancel", post(crate::runs::cancel))
        .route("/runs/{id}/approve", post(crate::runs::approve))
        .route("/runs/{id}/reject", post(crate::runs::reject))
        .route("/server", get(server_status))
        .route("/server/shutdown", post(shutdown))
        .layer(middleware::from_fn_with_state(ctx.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/hooks/{provider}/{app}", post(crate::sources::receive).layer(DefaultBodyLimit::disable()))
        .route("/git/{*path}", get(crate::git::serve).post(crate::git::serve).layer(DefaultBodyLimit::disable()))
        .nest("/api/v1", api)
        .with_state(ctx)
}

/// Whether `given` is the server's `token`. An empty token matches nothing, whatever the server
/// was started with. The comparison has no early exit, so timing does not reveal how much of the
/// token matched.
pub(crate) fn same_token(given: &[u8], token: &[u8]) -> bool {
    !token.is_empty()
        && given.len() == token.len()
        && given.iter().zip(token).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_token(State(ctx): State<Arc<Ctx>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same_token(given.as_bytes(), ctx.token.as_bytes()) {
        return ApiError(StatusCode::UNAUTHORIZED, "missing or wrong API token".into()).into_response();
    }
    next.run(request).await
}

fn app_name(raw: &str) -> ApiResult<AppName> {
    AppName::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

async fn apps(State(ctx): State<Arc<Ctx>>) -> ApiResult<Json<Vec<AppView>>> {
    let store = ctx.store();
    let instances = store.instances()?;
    let apps = store
        .apps()?
        .into_iter()
        .map(|app| AppView {
            url: ctx.app_url(app.name.as_str()),
            instances: instances.iter().filter(|i| i.app == app.name && i.draining_since_ms.is_none()).count(),
            target: app.target.map(|r| r.0),
            stable: app.stable.map(|r| r.0),
            scale: app.scale.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            name: app.name.to_string(),
        })
        .collect();
    Ok(Json(apps))
}

async fn releases(State(ctx): State<Arc<Ctx>>, Path(app): Path<String>) -> ApiResult<Json<Vec<ReleaseView>>> {
    let app = app_name(&app)?;
    let store = ctx.store();
    let target = store.app(&app)?.target;
    let releases = store
        .releases(&app)?
        .into_iter()
        .map(|r| ReleaseView {
            id: r.id.0,
            digest: r.digest.to_string(),
            description: r.description,
            created_at_ms: r.created_at_ms,
            target: Some(r.id) == target,
        })
        .collect();
    Ok(Json(releases))
}

async fn ps(State(ctx): State<Arc<Ctx>>, Path(app): Path<String>) -> ApiResult<Json<Vec<InstanceView>>> {
    use runtime::{InstanceState, Runtime};
    let app = app_name(&app)?;
    let rows = {
        let store = ctx.store();
        store.app(&app)?;
        store.instances()?
    };
    let statuses: HashMap<_, _> = ctx
        .runtime
        .list()
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .into_iter()
        .map(|s| (s.spec.id.clone(), s))
        .collect();
    let health: HashMap<_, _> = match ctx.proxy.status().await {
        Ok(status) => status.backends.into_iter().map(|b| (b.id.clone(), b)).collect(),
        Err(e) => {
            warn!(error = %e, "proxy status unavailable");
            HashMap::new()
        }
    };
    let views = rows
        .into_iter()
        .filter(|r| r.app == app)
        .map(|r| {
            let status = statuses.get(&r.id);
            let backend = health.get(&r.id);
            InstanceView {
                state: match status.map(|s| &s.state) {
                    None => "starting".into(),
                    Some(InstanceState::Starting) => "starting".into(),
                    Some(InstanceState::Running) => "running".into(),
                    Some(InstanceState::Restarting) => "restarting".into(),
                    Some(InstanceState::Stopping) => "stopping".into(),
                    Some(InstanceState::Exited(_)) => "exited".into(),
                },
                pid: status.and_then(|s| s.pid),
                restarts: status.map_or(0, |s| s.restarts),
                healthy: r.process.is_web().then(|| backend.is_some_and(|b| b.healthy)),
                inflight: backend.map_or(0, |b| b.inflight),
                id: r.id.to_string(),
                release: r.release.0,
                process: r.process.to_string(),
                port: r.port,
                routed: r.routed,
                draining: r.draining_since_ms.is_some(),
            }
        })
        .collect();
    Ok(Json(views))
}

#[derive(Deserialize)]
struct DeployQuery {
    /// Names the app when the upload has only a Procfile.
    name: Option<String>,
    /// Skip the test step and deploy without a passing test record (recorded as an event).
    #[serde(default)]
    force: bool,
}

/// Accepts a gzip'd tarball of an app's source: validates it fully, then builds and rolls out in
/// the background. Bad input is answered 400 before any state changes.
async fn create_deploy(
    State(ctx): State<Arc<Ctx>>,
    Query(query): Query<DeployQuery>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<DeployView>)> {
    let fallback = query.name.as_deref().map(app_name).transpose()?;
    let workdir = tempfile::Builder::new()
        .prefix("upload-")
        .tempdir_in(ctx.data.tmp())
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("creating an upload dir: {e}")))?;
    let src = workdir.path().join("src");
    let limit = ctx.settings.upload_limit;
    let spec = tokio::task::spawn_blocking({
        let src = src.clone();
        move || -> Result<model::AppSpec, String> {
            artifact::ArtifactStore::unpack_source(&body[..], &src, limit)
                .map_err(|e| format!("upload: {}", chain(&e)))?;
            config::load_dir(&src, fallback.as_ref()).map_err(|e| chain(&e))
        }
    })
    .await
    .expect("validation does not panic")
    .map_err(ApiError::bad_request)?;

    // Refused now rather than after a long build; the release checks again when it is made.
    ctx.store().check_release(&spec, &ctx.settings.domain)?;
    let app = spec.name.clone();
    let deploy_id = ctx.store().create_deploy(Some(&app), "building", now_ms())?;
    info!(app = %app, deploy = deploy_id, "deploy accepted");
    let gate = if query.force { Gate::Forced } else { Gate::RequireTests };
    tokio::spawn(build_and_release(ctx.clone(), deploy_id, spec, workdir, gate));
    let view = deploy_view(&ctx, deploy_id, 0)?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// An upload's pipeline: build, test inside the artifact (unless forced), release.
async fn build_and_release(
    ctx: Arc<Ctx>,
    deploy_id: u64,
    spec: model::AppSpec,
    workdir: tempfile::TempDir,
    gate: Gate,
) {
    let log = {
        let ctx = ctx.clone();
        move |line: &str| {
            let _ = ctx.store().append_deploy_log(deploy_id, line);
        }
    };
    let built = build(&ctx, &spec, workdir.path().join("src"), log.clone(), None).await;
    drop(workdir);
    let built = match built {
        Ok(built) => built,
        Err(e) => {
            fail_deploy(&ctx, deploy_id, &spec.name, &format!("build failed: {e}"));
            return;
        }
    };
    if gate == Gate::RequireTests {
        let source = format!("deploy {deploy_id}");
        let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tested = crate::pipeline::test_artifact(&ctx, &spec, &built.digest, &source, log.clone(), cancel).await;
        let passed = tested.and_then(|outcome| match outcome {
            Some(outcome) => crate::pipeline::require_pass(&outcome).map(|()| Some(outcome)),
            None => Ok(None),
        });
        match passed {
            Ok(Some(outcome)) => {
                log(&format!("tests passed: {}; attested {}", crate::pipeline::pass_summary(&outcome), built.digest))
            }
            Ok(None) => {}
            Err(e) => {
                fail_deploy(&ctx, deploy_id, &spec.name, &e);
                return;
            }
        }
    }
    if let Err(e) = release(&ctx, deploy_id, &spec, &built.digest, "deploy", gate) {
        fail_deploy(&ctx, deploy_id, &spec.name, &e);
    }
    ctx.wake.notify_one();
}

/// Builds the source tree `src` into an artifact, reporting progress to `log`. The build is
/// stopped, and fails, once it takes longer than the spec's `build_timeout` or `cancel` is set.
pub(crate) async fn build(
    ctx: &Arc<Ctx>,
    spec: &model::AppSpec,
    src: std::path::PathBuf,
    log: impl Fn(&str) + Send + 'static,
    cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
) -> Result<artifact::Built, String> {
    if let Some(dockerfile) = &spec.dockerfile {
        return crate::images::build(ctx, spec, dockerfile, src, log, cancel).await;
    }
    let ctx = ctx.clone();
    let spec = spec.clone();
    tokio::task::spawn_blocking(move || {
        log(&format!("building {} ({} build step(s))", spec.name, spec.build.len()));
        let (env, masker) = crate::vars::step_env(&ctx, &spec)?;
        let user = crate::vars::step_user(&ctx, &spec.name)?;
        let mut masks = masker.stream();
        let mut groups = crate::groups::GroupRecorder::new(&ctx.store, format!("build of {}", spec.name));
        let control = artifact::Control { user, timeout: Some(spec.build_timeout), cancel: cancel.as_deref() };
        let built = ctx.artifacts.build(
            &src,
            &spec.build,
            &env,
            &control,
            &mut |line| {
                for masked in masks.push(line) {
                    log(&masked);
                }
            },
            &mut |pid| groups.spawned(pid),
        );
        drop(groups);
        for masked in masks.flush() {
            log(&masked);
        }
        let built = built.map_err(|e| chain(&e))?;
        let cached = match (built.cached, built.layers_reused) {
            (true, _) => " (cached: inputs unchanged)".to_owned(),
            (false, 0) => String::new(),
            (false, n) => format!(" ({n} cached layer(s) reused)"),
        };
        log(&format!("artifact {}{cached}", built.digest));
        Ok(built)
    })
    .await
    .expect("builds do not panic")
}

/// Creates the next release of `spec.name` from `digest` and starts rolling it out as deploy
/// `deploy_id`.
pub(crate) fn release(
    ctx: &Ctx,
    deploy_id: u64,
    spec: &model::AppSpec,
    digest: &model::Digest,
    description: &str,
    gate: Gate,
) -> Result<ReleaseId, String> {
    crate::pipeline::check_gate(ctx, spec, digest, gate)?;
    let now = now_ms();
    let mut store = ctx.store();
    let mut spec = spec.clone();
    crate::vars::apply_vars(&store, &mut spec).map_err(|e| e.to_string())?;
    // Every way into a release passes here: what no process could start with is refused now.
    spec.validate().map_err(|e| format!("{}: {}", e.field, e.message))?;
    let spec = &spec;
    let previous = store.app(&spec.name).ok().and_then(|a| a.stable);
    let release =
        store.create_release(spec, digest, description, now, &ctx.settings.domain).map_err(|e| e.to_string())?;
    store.deploy_released(deploy_id, &spec.name, release.id, previous).map_err(|e| e.to_string())?;
    store
        .append_deploy_log(deploy_id, &format!("release {} created; rolling out", release.id))
        .map_err(|e| e.to_string())?;
    store
        .add_event(Some(&spec.name), "release.created", &format!("{} from {digest}", release.id), now)
        .map_err(|e| e.to_string())?;
    drop(store);
    ctx.wake.notify_one();
    Ok(release.id)
}

pub(crate) fn fail_deploy(ctx: &Ctx, deploy_id: u64, app: &AppName, message: &str) {
    let now = now_ms();
    let store = ctx.store();
    let _ = store.append_deploy_log(deploy_id, message);
    let _ = store.finish_deploy(deploy_id, DeployStatus::Failed, message, now);
    let _ = store.add_event(Some(app), "deploy.failed", message, now);
}

pub(crate) fn deploy_view(ctx: &Ctx, id: u64, after: u64) -> ApiResult<DeployView> {
    let store = ctx.store();
    let deploy = store.deploy(id)?.ok_or_else(|| ApiError::not_found(format!("no deploy {id}")))?;
    let log = store.deploy_log(id, after)?.into_iter().map(|(seq, line)| LogLine { seq, line }).collect();
    Ok(DeployView {
        id,
        url: deploy.app.as_ref().map(|a| ctx.app_url(a.as_str())),
        app: deploy.app.map(|a| a.to_string()),
        release: deploy.release.map(|r| r.0),
        previous: deploy.previous.map(|r| r.0),
        status: serde_json::to_value(deploy.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        message: deploy.message,
        log,
    })
}

#[derive(Deserialize)]
struct AfterQuery {
    #[serde(default)]
    after: u64,
}

async fn deploy_status(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<u64>,
    Query(q): Query<AfterQuery>,
) -> ApiResult<Json<DeployView>> {
    Ok(Json(deploy_view(&ctx, id, q.after)?))
}

/// Rolls back by making a new release from an earlier one's artifact and spec (Heroku-style), so
/// history only grows and a roll-forward is one more rollback.
async fn rollback(
    State(ctx): State<Arc<Ctx>>,
    Path(app): Path<String>,
    Json(req): Json<RollbackRequest>,
) -> ApiResult<(StatusCode, Json<DeployView>)> {
    let app = app_name(&app)?;
    let now = now_ms();
    let deploy_id = {
        let mut store = ctx.store();
        let state = store.app(&app)?;
        let current = state.target.ok_or_else(|| ApiError::bad_request(format!("{app} has no release running")))?;
        let to = match req.release {
            Some(r) => ReleaseId(r),
            None => {
                let older = store.releases(&app)?.into_iter().find(|r| r.id < current);
                older.ok_or_else(|| ApiError::bad_request(format!("{app} has no release before {current}")))?.id
            }
        };
        let source = store.release(&app, to)?;
        if !ctx.artifacts.has(&source.digest) {
            return Err(ApiError::bad_request(format!("the artifact of {to} ({}) is no longer stored", source.digest)));
        }
        // Checked before the deploy row exists, so a refusal leaves no deploy behind; the store
        // stays locked until the release is made.
        store.check_release(&source.spec, &ctx.settings.domain)?;
        let deploy_id = store.create_deploy(Some(&app), &format!("rollback to {to}"), now)?;
        let description = format!("rollback to {to}");
        let release = store.create_release(&source.spec, &source.digest, &description, now, &ctx.settings.domain)?;
        store.deploy_released(deploy_id, &app, release.id, state.stable)?;
        store
            .append_deploy_log(deploy_id, &format!("release {} = {to} ({}); rolling out", release.id, source.digest))?;
        store.add_event(Some(&app), "release.rollback", &format!("{} rolls back to {to}", release.id), now)?;
        deploy_id
    };
    ctx.wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(deploy_view(&ctx, deploy_id, 0)?)))
}

async fn scale(
    State(ctx): State<Arc<Ctx>>,
    Path(app): Path<String>,
    Json(req): Json<ScaleRequest>,
) -> ApiResult<Json<AppView>> {
    let app = app_name(&app)?;
    {
        let store = ctx.store();
        let state = store.app(&app)?;
        let target = state.target.ok_or_else(|| ApiError::bad_request(format!("{app} has no release to scale")))?;
        let spec = store.release(&app, target)?.spec;
        let mut scale: BTreeMap<ProcessType, u32> = state.scale.clone();
        for (process, n) in &req.scale {
            let process = ProcessType::parse(process).map_err(|e| ApiError::bad_request(e.to_string()))?;
            if !spec.processes.contains_key(&process) {
                let known: Vec<&str> = spec.processes.keys().map(|p| p.as_str()).collect();
                return Err(ApiError::bad_request(format!(
                    "{app} has no process type {process} (it has: {})",
                    known.join(", ")
                )));
            }
            if *n > 100 {
                return Err(ApiError::bad_request(format!("scale {process}={n} is above the limit of 100")));
            }
            scale.insert(process, *n);
        }
        store.set_scale(&app, &scale)?;
        let summary: Vec<String> = scale.iter().map(|(k, v)| format!("{k}={v}")).collect();
        store.add_event(Some(&app), "scale", &summary.join(" "), now_ms())?;
    }
    ctx.wake.notify_one();
    let apps = apps(State(ctx)).await?.0;
    let view = apps
        .into_iter()
        .find(|a| a.name == app.as_str())
        .ok_or_else(|| ApiError::not_found(format!("no app named {app}")))?;
    Ok(Json(view))
}

#[derive(Deserialize)]
struct LogsQuery {
    tail: Option<usize>,
    #[serde(default)]
    follow: bool,
}

/// Log records as JSON lines; with `follow=true` the response stays open and streams new lines.
async fn app_logs(
    State(ctx): State<Arc<Ctx>>,
    Path(app): Path<String>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Response> {
    let app = app_name(&app)?;
    ctx.store().app(&app)?;
    let root = ctx.data.logs();
    let opts = logs::ReadOptions { tail: Some(q.tail.unwrap_or(100)), ..Default::default() };
    let internal = |e: logs::LogError| ApiError(StatusCode::INTERNAL_SERVER_ERROR, chain(&e));
    let ndjson = |record: &logs::LogRecord| {
        let mut line = serde_json::to_vec(record).expect("log records serialize");
        line.push(b'\n');
        bytes::Bytes::from(line)
    };
    if !q.follow {
        // File reads block: on the blocking pool, so a large log never stalls the server's
        // async threads (the reconciler, other requests).
        let records = tokio::task::spawn_blocking(move || logs::read_app(&root, &app, &opts))
            .await
            .expect("reading logs does not panic")
            .map_err(internal)?;
        let body: Vec<u8> = records.iter().flat_map(|r| ndjson(r).to_vec()).collect();
        return Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response());
    }
    let follow = logs::follow(&root, &app, opts).await.map_err(internal)?;
    let stream = futures_util::stream::unfold(follow, move |mut follow| async move {
        let record = follow.next().await?;
        Some((Ok::<_, std::io::Error>(ndjson(&record)), follow))
    });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(stream)).into_response())
}

#[derive(Deserialize)]
struct EventsQuery {
    app: Option<String>,
}

async fn events(State(ctx): State<Arc<Ctx>>, Query(q): Query<EventsQuery>) -> ApiResult<Json<Vec<EventView>>> {
    let app = q.app.as_deref().map(app_name).transpose()?;
    let events = ctx
        .store()
        .events(app.as_ref(), 200)?
        .into_iter()
        .map(|e| EventView { ts_ms: e.ts_ms, app: e.app.map(|a| a.to_string()), kind: e.kind, message: e.message })
        .collect();
    Ok(Json(events))
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn server_status(State(ctx): State<Arc<Ctx>>) -> ApiResult<Json<ServerStatus>> {
    let store = ctx.store();
    Ok(Json(ServerStatus {
        pid: std::process::id(),
        api_addr: ctx.api_addr.to_string(),
        http_addr: ctx.settings.http_addr.to_string(),
        apps: store.apps()?.len(),
        instances: store.instances()?.len(),
        rss_kib: rss_kib(),
    }))
}

async fn shutdown(State(ctx): State<Arc<Ctx>>, Json(req): Json<ShutdownRequest>) -> ApiResult<StatusCode> {
    if req.all {
        crate::server::stop_everything(&ctx).await;
    }
    ctx.shutdown.notify_one();
    Ok(StatusCode::ACCEPTED)
}
