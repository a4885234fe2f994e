//! Pipeline runs: a pushed commit goes through checkout, build, test and release, one run per app
//! at a time, oldest first. Runs are queued by `git push` (through the post-receive hook). Each
//! step (`checkout`, `build`, `test`, `deploy:STAGE`, `approval:STAGE`) is a record with a status,
//! its times and a message, and the run's progress is stored line by line, so
//! `drover run logs -f` can follow it.

use crate::pipeline::Gate;
use crate::routes::{build, chain, release, ApiError, ApiResult};
use crate::server::Ctx;
use crate::wire::{PushRequest, PushResponse, RunView, StepView};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use deploy::reconciler::now_ms;
use model::AppName;
use serde::Deserialize;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{DeployStatus, Run, RunStatus, StepStatus};
use tracing::{info, warn};

/// Runs executing at once across all apps (each app runs one at a time).
const MAX_CONCURRENT_RUNS: usize = 2;

/// Branches that deploy to the app itself when the app declares no pipeline stages.
const DEFAULT_BRANCHES: &[&str] = &["main", "master"];

/// Cancellation flags of the runs in progress.
#[derive(Default)]
pub(crate) struct RunControl {
    cancels: Mutex<HashMap<u64, Arc<AtomicBool>>>,
}

/// A full commit id: 40 hex digits (SHA-1), or 64 (SHA-256 repositories).
pub(crate) fn is_commit_id(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Starts queued runs whenever there is room.
pub(crate) async fn run_loop(ctx: Arc<Ctx>) {
    let interrupted = ctx.store().fail_interrupted_runs(now_ms()).unwrap_or(0);
    if interrupted > 0 {
        warn!(interrupted, "marked runs interrupted by the last stop as failed");
    }
    loop {
        loop {
            let next = {
                let store = ctx.store();
                match store.count_running_runs() {
                    Ok(n) if n < MAX_CONCURRENT_RUNS => store.next_queued_run(),
                    Ok(_) => Ok(None),
                    Err(e) => Err(e),
                }
            };
            match next {
                Ok(Some(run)) => {
                    let _ = ctx.store().set_run_status(run.id, RunStatus::Running, "checking out", now_ms());
                    let cancel = Arc::new(AtomicBool::new(false));
                    ctx.runs.cancels.lock().expect("never poisoned").insert(run.id, cancel.clone());
                    tokio::spawn(execute(ctx.clone(), run, cancel));
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(error = %e, "could not pick the next run");
                    break;
                }
            }
        }
        tokio::select! {
            _ = ctx.runs_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Runs one pipeline run to its end and records the outcome.
async fn execute(ctx: Arc<Ctx>, run: Run, cancel: Arc<AtomicBool>) {
    info!(run = run.id, app = %run.app, branch = %run.branch, "run started");
    let outcome = steps(&ctx, &run, &cancel).await;
    let (status, message) = match outcome {
        _ if cancel.load(Ordering::SeqCst) => (RunStatus::Cancelled, "cancelled".to_owned()),
        Ok(Step::Done(message)) => (RunStatus::Succeeded, message),
        Ok(Step::AwaitApproval(stage)) => {
            let _ = ctx.store().set_run_stage(run.id, Some(&stage));
            let message = format!("waiting for approval to deploy to {stage}: `drover approve {}`", run.id);
            (RunStatus::Waiting, message)
        }
        Err(message) => (RunStatus::Failed, message),
    };
    {
        let store = ctx.store();
        let line = match message == status.as_str() {
            true => format!("run {message}"),
            false => format!("run {}: {message}", status.as_str()),
        };
        let _ = store.append_run_log(run.id, &line);
        let _ = store.set_run_status(run.id, status, &message, now_ms());
        let _ = store.add_event(
            Some(&run.app),
            &format!("run.{}", status.as_str()),
            &format!("run {}: {message}", run.id),
            now_ms(),
        );
    }
    ctx.runs.cancels.lock().expect("never poisoned").remove(&run.id);
    ctx.runs_wake.notify_one();
    info!(run = run.id, status = status.as_str(), "run finished");
}

fn log(ctx: &Ctx, run: u64, line: &str) {
    if let Err(e) = ctx.store().append_run_log(run, line) {
        warn!(run, error = %e, "could not store a run log line");
    }
}

/// Runs `work` as step `name` of run `run`: the step is recorded as running when it starts and
/// finished with its outcome, succeeded with `describe(&value)` as its message, or failed with
/// the error (cancelled if the run was). Its end is also a line of the run's log, so
/// `drover run logs` shows progress.
async fn in_step<T>(
    ctx: &Ctx,
    run: u64,
    cancel: &AtomicBool,
    name: &str,
    work: impl Future<Output = Result<T, String>>,
    describe: impl FnOnce(&T) -> String,
) -> Result<T, String> {
    let step = StepRecord::start(ctx, run, name, StepStatus::Running, "");
    let result = work.await;
    match &result {
        Ok(value) => step.finish(ctx, StepStatus::Succeeded, &describe(value)),
        Err(_) if cancel.load(Ordering::SeqCst) => step.finish(ctx, StepStatus::Cancelled, "cancelled"),
        Err(message) => step.finish(ctx, StepStatus::Failed, message),
    }
    result
}

/// A step of a run in progress, as recorded in the store.
struct StepRecord {
    run: u64,
    name: String,
    /// `None` if the run ended before the step could be added (a cancel): nothing to finish.
    seq: Option<u64>,
    started: Instant,
}

impl StepRecord {
    /// Records step `name` as begun now, `Running` or `Waiting`.
    fn start(ctx: &Ctx, run: u64, name: &str, status: StepStatus, message: &str) -> Self {
        if status == StepStatus::Running {
            // What `drover runs` shows while the run is in this step.
            let _ = ctx.store().set_running_run_message(run, name);
        }
        let seq = match ctx.store().add_run_step(run, name, status, message, now_ms()) {
            Ok(seq) => seq,
            Err(e) => {
                warn!(run, step = name, error = %e, "could not record a step");
                None
            }
        };
        Self { run, name: name.to_owned(), seq, started: Instant::now() }
    }

    /// Records a step that had nothing to do.
    fn skip(ctx: &Ctx, run: u64, name: &str, message: &str) {
        StepRecord::start(ctx, run, name, StepStatus::Skipped, message);
        log(ctx, run, &format!("step {name} skipped: {message}"));
    }

    fn finish(self, ctx: &Ctx, status: StepStatus, message: &str) {
        if let Some(seq) = self.seq {
            if let Err(e) = ctx.store().finish_run_step(self.run, seq, status, message, now_ms()) {
                warn!(run = self.run, step = %self.name, error = %e, "could not record the end of a step");
            }
        }
        let took = self.started.elapsed().as_secs_f64();
        // A failure's message ends the run's log as the run's own message; not said twice.
        let line = match status {
            StepStatus::Failed | StepStatus::Cancelled => {
                format!("step {} {} after {took:.2}s", self.name, status.as_str())
            }
            _ if message.is_empty() => format!("step {} {} in {took:.2}s", self.name, status.as_str()),
            _ => format!("step {} {} in {took:.2}s: {message}", self.name, status.as_str()),
        };
        log(ctx, self.run, &line);
    }
}

/// `is queued`, `has failed`, `was cancelled`: a run's status as the end of a sentence.
fn run_state(status: &RunStatus) -> String {
    let verb = match status {
        RunStatus::Queued | RunStatus::Running | RunStatus::Waiting => "is",
        RunStatus::Succeeded | RunStatus::Failed => "has",
        RunStatus::Cancelled | RunStatus::Superseded | RunStatus::Rejected => "was",
    };
    format!("{verb} {}", status.as_str())
}

fn check_cancel(cancel: &AtomicBool) -> Result<(), String> {
    if cancel.load(Ordering::SeqCst) {
        return Err("cancelled".to_owned());
    }
    Ok(())
}

/// Where a run's steps stopped.
enum Step {
    Done(String),
    /// Built, tested and deployed up to a stage that needs approval.
    AwaitApproval(String),
}

/// Checks out the run's commit into a fresh directory and reads its `drover.yml`.
async fn checkout(ctx: &Ctx, run: &Run, dir: &std::path::Path) -> Result<model::AppSpec, String> {
    let repo = ctx.data.repos().join(format!("{}.git", run.app));
    // The commit id was checked to be 40 hex digits; the branch name is not passed to git.
    let mut archive = crate::gitcmd::command(crate::gitcmd::Repo::At(&repo), crate::gitcmd::Access::Local);
    archive.args(["archive", "--format=tar.gz"]).arg(&run.commit);
    let archive = crate::gitcmd::output(ctx, archive, format!("git archive for run {}", run.id))
        .await
        .map_err(|e| format!("running git archive: {e}"))?;
    if !archive.status.success() {
        return Err(format!("git archive {} failed: {}", run.commit, String::from_utf8_lossy(&archive.stderr).trim()));
    }
    let limit = ctx.settings.upload_limit;
    let app = run.app.clone();
    let dir = dir.to_owned();
    let spec = tokio::task::spawn_blocking(move || -> Result<model::AppSpec, String> {
        artifact::ArtifactStore::unpack_source(&archive.stdout[..], &dir, limit).map_err(|e| chain(&e))?;
        config::load_dir(&dir, Some(&app)).map_err(|e| chain(&e))
    })
    .await
    .expect("checkout does not panic")?;
    if spec.name != run.app {
        return Err(format!("drover.yml names app {}, but this is the repository of {}", spec.name, run.app));
    }
    Ok(spec)
}

async fn steps(ctx: &Arc<Ctx>, run: &Run, cancel: &Arc<AtomicBool>) -> Result<Step, String> {
    let short = &run.commit[..12.min(run.commit.len())];
    let workdir = tempfile::Builder::new()
        .prefix(&format!("run-{}-", run.id))
        .tempdir_in(ctx.data.tmp())
        .map_err(|e| format!("creating a work dir: {e}"))?;
    let src = workdir.path().join("src");
    let run_id = run.id;
    let logger = {
        let ctx = ctx.clone();
        move |line: &str| log(&ctx, run_id, line)
    };

    // A run resumed after an approval already built and tested its artifact.
    let resume = match (&run.stage, &run.digest) {
        (Some(stage), Some(digest)) => Some((stage.clone(), digest.clone())),
        _ => None,
    };
    if resume.is_none() {
        log(ctx, run.id, &format!("checkout {short} of branch {:?}", run.branch));
    }
    let spec = in_step(ctx, run.id, cancel, "checkout", checkout(ctx, run, &src), |_| short.to_owned()).await?;
    check_cancel(cancel)?;

    let digest = match resume.as_ref() {
        Some((stage, digest)) => {
            log(ctx, run.id, &format!("approved: continuing at stage {stage} with {digest}"));
            digest.clone()
        }
        None => {
            let built = in_step(
                ctx,
                run.id,
                cancel,
                "build",
                build(ctx, &spec, src.clone(), logger.clone(), Some(cancel.clone())),
                |built| {
                    if built.cached {
                        format!("cached: inputs unchanged, {}", built.digest)
                    } else {
                        built.digest.to_string()
                    }
                },
            )
            .await?;
            ctx.store().set_run_digest(run.id, &built.digest).map_err(|e| e.to_string())?;
            check_cancel(cancel)?;
            match spec.pipeline.test {
                Some(_) => {
                    let tests = test(ctx, run, &spec, &built.digest, logger.clone(), cancel.clone());
                    in_step(ctx, run.id, cancel, "test", tests, crate::pipeline::pass_summary).await?;
                }
                None => StepRecord::skip(ctx, run.id, "test", "no tests declared"),
            }
            check_cancel(cancel)?;
            built.digest
        }
    };
    drop(workdir);

    if spec.pipeline.stages.is_empty() {
        if !DEFAULT_BRANCHES.contains(&run.branch.as_str()) {
            return Ok(Step::Done(format!("built {digest}; branch {:?} deploys nowhere", run.branch)));
        }
        let deploy = deploy_to(ctx, run, &spec, &spec.name, &digest);
        let release =
            in_step(ctx, run.id, cancel, "deploy", deploy, |release| format!("{release} of {} is live", spec.name))
                .await?;
        return Ok(Step::Done(format!("{release} of {} is live", spec.name)));
    }
    let stages = spec.pipeline.stages_for(&run.branch);
    if stages.is_empty() {
        return Ok(Step::Done(format!("built {digest}; no stage takes branch {:?}", run.branch)));
    }
    let start = match &resume {
        Some((stage, _)) => stages.iter().position(|s| &s.name == stage).ok_or(format!("no stage {stage} any more"))?,
        None => 0,
    };
    let mut live = Vec::new();
    for (idx, stage) in stages.iter().enumerate().skip(start) {
        let approved = resume.is_some() && idx == start;
        if stage.approval == model::pipeline::Approval::Required && !approved {
            let waiting = format!("waiting for `drover approve {}` or `drover reject {}`", run.id, run.id);
            StepRecord::start(ctx, run.id, &format!("approval:{}", stage.name), StepStatus::Waiting, &waiting);
            return Ok(Step::AwaitApproval(stage.name.clone()));
        }
        let app = crate::pipeline::claim_stage_app(ctx, &spec.name, stage, &run.branch)?;
        log(ctx, run.id, &format!("stage {}: deploying {digest} to {app}", stage.name));
        let mut staged = spec.clone();
        staged.vars_from = Some(model::VarScope { app: spec.name.clone(), stage: stage.name.clone() });
        staged.routing.hosts = stage.hosts(&spec.routing.hosts);
        let deploy = deploy_to(ctx, run, &staged, &app, &digest);
        let name = format!("deploy:{}", stage.name);
        let release =
            in_step(ctx, run.id, cancel, &name, deploy, |release| format!("{release} of {app} is live")).await?;
        live.push(format!("{}: {app} {release}", stage.name));
        check_cancel(cancel)?;
    }
    Ok(Step::Done(format!("live on {}", live.join(", "))))
}

/// The test step of a run: tests the built artifact, keeps the report with the run (passed or
/// not, so `drover run show` lists the failures) and fails unless the tests passed.
async fn test(
    ctx: &Arc<Ctx>,
    run: &Run,
    spec: &model::AppSpec,
    digest: &model::Digest,
    logger: impl Fn(&str) + Send + 'static,
    cancel: Arc<AtomicBool>,
) -> Result<pipeline::TestOutcome, String> {
    let source = format!("run {}", run.id);
    let outcome = crate::pipeline::test_artifact(ctx, spec, digest, &source, logger, cancel)
        .await?
        .ok_or("the app declares no tests")?;
    if let Some(report) = &outcome.report {
        let json = serde_json::to_string(report).expect("reports serialize");
        ctx.store().set_run_tests(run.id, &json).map_err(|e| e.to_string())?;
    }
    crate::pipeline::require_pass(&outcome)?;
    log(ctx, run.id, &format!("tests passed: {}", crate::pipeline::pass_summary(&outcome)));
    Ok(outcome)
}

/// Releases `digest` as app `target` (the spec's app, or a stage's) and waits for the rollout.
async fn deploy_to(
    ctx: &Ctx,
    run: &Run,
    spec: &model::AppSpec,
    target: &AppName,
    digest: &model::Digest,
) -> Result<model::ReleaseId, String> {
    let mut spec = spec.clone();
    spec.name = target.clone();
    let deploy_id = ctx.store().create_deploy(Some(target), "deploying", now_ms()).map_err(|e| e.to_string())?;
    log(ctx, run.id, &format!("deploy {deploy_id}: releasing {digest} to {target}"));
    let short = &run.commit[..12.min(run.commit.len())];
    let description = format!("run {} ({short} on {})", run.id, run.branch);
    let release = match release(ctx, deploy_id, &spec, digest, &description, Gate::RequireTests) {
        Ok(release) => release,
        Err(e) => {
            crate::routes::fail_deploy(ctx, deploy_id, target, &e);
            return Err(e);
        }
    };
    wait_for_deploy(ctx, run.id, deploy_id).await?;
    Ok(release)
}

/// Waits for a deploy to finish, copying its progress into the run's log.
async fn wait_for_deploy(ctx: &Ctx, run: u64, deploy_id: u64) -> Result<(), String> {
    let mut seen = 0;
    loop {
        let (deploy, lines) = {
            let store = ctx.store();
            let deploy = store.deploy(deploy_id).map_err(|e| e.to_string())?.ok_or("deploy vanished")?;
            (deploy, store.deploy_log(deploy_id, seen).map_err(|e| e.to_string())?)
        };
        for (seq, line) in lines {
            log(ctx, run, &format!("  {line}"));
            seen = seq;
        }
        match deploy.status {
            DeployStatus::Succeeded => return Ok(()),
            DeployStatus::Building | DeployStatus::Deploying => {}
            DeployStatus::Failed | DeployStatus::RolledBack | DeployStatus::Superseded => return Err(deploy.message),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn run_view(ctx: &Ctx, run: Run, after: u64) -> ApiResult<RunView> {
    let (log, steps) = {
        let store = ctx.store();
        (store.run_log(run.id, after)?, store.run_steps(run.id)?)
    };
    let log = log.into_iter().map(|(seq, line)| crate::wire::LogLine { seq, line }).collect();
    let now = now_ms();
    let steps = steps
        .into_iter()
        .map(|step| StepView {
            duration_ms: step.finished_at_ms.unwrap_or(now).saturating_sub(step.started_at_ms),
            name: step.name,
            status: step.status.as_str().to_owned(),
            message: step.message,
            started_at_ms: step.started_at_ms,
            finished_at_ms: step.finished_at_ms,
        })
        .collect();
    Ok(RunView {
        id: run.id,
        app: run.app.to_string(),
        branch: run.branch,
        commit: run.commit,
        trigger: run.trigger,
        status: run.status.as_str().to_owned(),
        message: run.message,
        digest: run.digest.map(|d| d.to_string()),
        created_at_ms: run.created_at_ms,
        started_at_ms: run.started_at_ms,
        finished_at_ms: run.finished_at_ms,
        stage: run.stage,
        tests: run.test_json.and_then(|json| serde_json::from_str(&json).ok()),
        steps,
        log,
    })
}

/// Ref updates of a push, sent by the post-receive hook. Queues a run per updated branch.
pub(crate) async fn push(
    State(ctx): State<Arc<Ctx>>,
    Path(app): Path<String>,
    Json(req): Json<PushRequest>,
) -> ApiResult<Json<PushResponse>> {
    let app = AppName::parse(&app).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut messages = Vec::new();
    let mut runs = Vec::new();
    for update in &req.updates {
        if let Some(tag) = update.refname.strip_prefix("refs/tags/") {
            messages.push(format!("tag {tag:?}: tags start no run"));
            continue;
        }
        let Some(branch) = update.refname.strip_prefix("refs/heads/") else {
            messages.push(format!("{:?}: not a branch, ignored", update.refname));
            continue;
        };
        if update.new.bytes().all(|b| b == b'0') {
            messages.push(destroy_preview(&ctx, &app, branch));
            continue;
        }
        if !is_commit_id(&update.new) {
            return Err(ApiError::bad_request(format!("{:?} is not a commit id", update.new)));
        }
        let (id, superseded) = ctx.store().queue_run(&app, branch, &update.new, "push", now_ms())?;
        for old in superseded {
            messages.push(format!("run {old} superseded"));
        }
        messages.push(format!("run {id} queued for branch {branch:?}: follow it with `drover run logs {id} -f`"));
        runs.push(id);
    }
    ctx.runs_wake.notify_one();
    Ok(Json(PushResponse { runs, messages }))
}

#[derive(Deserialize)]
pub(crate) struct RunsQuery {
    app: Option<String>,
}

pub(crate) async fn list(State(ctx): State<Arc<Ctx>>, Query(q): Query<RunsQuery>) -> ApiResult<Json<Vec<RunView>>> {
    let app = q.app.as_deref().map(AppName::parse).transpose().map_err(|e| ApiError::bad_request(e.to_string()))?;
    let runs = ctx.store().runs(app.as_ref(), 50)?;
    // The list carries no log lines; `run show` has them.
    let views = runs.into_iter().map(|r| run_view(&ctx, r, i64::MAX as u64)).collect::<ApiResult<_>>()?;
    Ok(Json(views))
}

#[derive(Deserialize)]
pub(crate) struct AfterQuery {
    #[serde(default)]
    after: u64,
}

pub(crate) async fn show(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<u64>,
    Query(q): Query<AfterQuery>,
) -> ApiResult<Json<RunView>> {
    let run = ctx.store().run(id)?.ok_or_else(|| ApiError::not_found(format!("no run {id}")))?;
    Ok(Json(run_view(&ctx, run, q.after)?))
}

pub(crate) async fn cancel(State(ctx): State<Arc<Ctx>>, Path(id): Path<u64>) -> ApiResult<(StatusCode, Json<RunView>)> {
    let run = ctx.store().run(id)?.ok_or_else(|| ApiError::not_found(format!("no run {id}")))?;
    if run.status.is_finished() {
        return Err(ApiError::bad_request(format!("run {id} {} already", run_state(&run.status))));
    }
    if let Some(flag) = ctx.runs.cancels.lock().expect("never poisoned").get(&id) {
        flag.store(true, Ordering::SeqCst);
    }
    ctx.store().set_run_status(id, RunStatus::Cancelled, "cancelled", now_ms())?;
    ctx.store().add_event(Some(&run.app), "run.cancelled", &format!("run {id} cancelled"), now_ms())?;
    let run = ctx.store().run(id)?.ok_or_else(|| ApiError::not_found(format!("no run {id}")))?;
    Ok((StatusCode::ACCEPTED, Json(run_view(&ctx, run, 0)?)))
}

/// `drover approve RUN`: a waiting run continues at the stage it waited for.
pub(crate) async fn approve(State(ctx): State<Arc<Ctx>>, Path(id): Path<u64>) -> ApiResult<Json<RunView>> {
    decide(&ctx, id, RunStatus::Queued).await
}

/// `drover reject RUN`: a waiting run ends without deploying further.
pub(crate) async fn reject(State(ctx): State<Arc<Ctx>>, Path(id): Path<u64>) -> ApiResult<Json<RunView>> {
    decide(&ctx, id, RunStatus::Rejected).await
}

async fn decide(ctx: &Arc<Ctx>, id: u64, next: RunStatus) -> ApiResult<Json<RunView>> {
    let run = ctx.store().run(id)?.ok_or_else(|| ApiError::not_found(format!("no run {id}")))?;
    if run.status != RunStatus::Waiting {
        return Err(ApiError::bad_request(format!(
            "run {id} is not waiting for approval: it {}",
            run_state(&run.status)
        )));
    }
    let stage = run.stage.clone().unwrap_or_default();
    let (kind, message, step, step_message) = match next {
        RunStatus::Queued => ("run.approved", format!("approved deploy to {stage}"), StepStatus::Succeeded, "approved"),
        _ => ("run.rejected", format!("rejected deploy to {stage}"), StepStatus::Failed, "rejected"),
    };
    {
        let store = ctx.store();
        store.finish_open_run_steps(id, step, step_message, now_ms())?;
        store.set_run_status(id, next, &message, now_ms())?;
        store.append_run_log(id, &message)?;
        store.add_event(Some(&run.app), kind, &format!("run {id}: {message}"), now_ms())?;
    }
    ctx.runs_wake.notify_one();
    let run = ctx.store().run(id)?.ok_or_else(|| ApiError::not_found(format!("no run {id}")))?;
    Ok(Json(run_view(ctx, run, 0)?))
}

/// A deleted branch takes its preview app with it: the app stops running and says why.
pub(crate) fn destroy_preview(ctx: &Ctx, app: &AppName, branch: &str) -> String {
    let owner = store::StageOwner { pipeline_app: app.clone(), stage: "preview".to_owned(), branch: branch.to_owned() };
    let store = ctx.store();
    let Ok(Some(preview)) = store.stage_app(&owner) else {
        return format!("branch {branch:?} deleted");
    };
    let _ = store.release_stage_app(&preview);
    match store.app(&preview) {
        Ok(state) if !state.destroyed => {
            let _ = store.destroy_app(&preview);
            let _ = store.add_event(
                Some(&preview),
                "preview.destroyed",
                &format!("branch {branch:?} was deleted"),
                now_ms(),
            );
            ctx.wake.notify_one();
            format!("branch {branch:?} deleted; preview app {preview} destroyed")
        }
        _ => format!("branch {branch:?} deleted"),
    }
}

/// Cancels every run in progress and waits (bounded) for their steps to stop, so a stopping
/// server leaves no test or build process behind.
pub(crate) async fn cancel_all(ctx: &Ctx) {
    let flags: Vec<Arc<AtomicBool>> = ctx.runs.cancels.lock().expect("never poisoned").values().cloned().collect();
    for flag in &flags {
        flag.store(true, Ordering::SeqCst);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !ctx.runs.cancels.lock().expect("never poisoned").is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
