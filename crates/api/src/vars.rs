//! Config vars and secrets of an app. Config vars are plain and become part of the next release;
//! secrets are sealed with the server's key before they are stored, and only their names are
//! part of a release. Changing either makes a new release of the running artifact.

use crate::pipeline::Gate;
use crate::routes::{deploy_view, release, ApiError, ApiResult};
use crate::server::Ctx;
use crate::wire::{ConfigRequest, ConfigView, DeployView, SecretRequest};
use axum::extract::{Path, Query, State};
use axum::Json;
use deploy::reconciler::{now_ms, secret_context};
use model::{AppName, AppSpec, VarScope};
use std::collections::BTreeMap;
use std::sync::Arc;
use store::{AppVar, Store};

/// Refuses a variable no process could be started with (a NUL byte, an oversized value) or
/// that Drover sets itself, before anything is stored: see `model::env`.
fn check_var(key: &str, value: Option<&str>) -> ApiResult<()> {
    let checked = match value {
        Some(value) => model::env::check_env_var(key, value),
        None => model::env::check_env_key(key),
    };
    checked.map_err(|e| ApiError::bad_request(format!("{}: {e}", key.escape_debug())))
}

/// Puts the app's current config vars and secret names into `spec`.
pub(crate) fn apply_vars(store: &Store, spec: &mut AppSpec) -> Result<(), store::StoreError> {
    spec.config.clear();
    spec.secrets.clear();
    let scope = spec.var_scope();
    for var in store.scoped_vars(&scope.app, &scope.stage)? {
        if var.secret {
            spec.secrets.push(var.key);
        } else {
            spec.config.insert(var.key, String::from_utf8_lossy(&var.value).into_owned());
        }
    }
    Ok(())
}

/// The environment of a build or test step of `spec`: its `env:`, the config vars and the
/// secrets (in plain text, memory only) of its var scope as they are now, and a masker for
/// those secrets' values.
pub(crate) fn step_env(ctx: &Ctx, spec: &AppSpec) -> Result<(BTreeMap<String, String>, secrets::Masker), String> {
    let (mut env, secrets, masker) = step_env_parts(ctx, spec)?;
    env.extend(secrets);
    Ok((env, masker))
}

/// The user the build and test steps of `app` run as on this machine: its own when the server
/// is root, else the server's (`None`).
pub(crate) fn step_user(ctx: &Ctx, app: &model::AppName) -> Result<Option<model::AppUser>, String> {
    deploy::reconciler::app_user(&mut ctx.store(), app).map_err(|e| e.to_string())
}

/// [`step_env`] with the secrets apart from the plain env, for a step that must pass them
/// another way (a container's secrets file).
pub(crate) fn step_env_parts(ctx: &Ctx, spec: &AppSpec) -> Result<StepEnv, String> {
    let mut spec = spec.clone();
    apply_vars(&ctx.store(), &mut spec).map_err(|e| e.to_string())?;
    let secrets = open_secrets(ctx, &spec.var_scope())?;
    let masker = secrets::Masker::new(secrets.iter().map(|(_, v)| v.as_str()));
    Ok((spec.run_env(), secrets, masker))
}

/// A step's plain env, its secrets in plain text, and the masker of those secrets.
pub(crate) type StepEnv = (BTreeMap<String, String>, Vec<(String, String)>, secrets::Masker);

/// The secrets of `scope` in plain text, for a build or test step's environment (memory only).
pub(crate) fn open_secrets(ctx: &Ctx, scope: &VarScope) -> Result<Vec<(String, String)>, String> {
    let vars = ctx.store().scoped_vars(&scope.app, &scope.stage).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for var in vars.into_iter().filter(|v| v.secret) {
        let value = ctx
            .keyring
            .open(&secret_context(&scope.app, &var.stage, &var.key), &var.value)
            .map_err(|e| format!("secret {}: {e}", var.key))?;
        let text = value.expose_str().ok_or_else(|| format!("secret {} is not UTF-8", var.key))?;
        out.push((var.key, text.to_owned()));
    }
    Ok(out)
}

fn view(store: &Store, scope: &VarScope) -> ApiResult<ConfigView> {
    let mut view = ConfigView::default();
    for var in store.scoped_vars(&scope.app, &scope.stage)? {
        if var.secret {
            view.secrets.push(var.key);
        } else {
            view.vars.insert(var.key, String::from_utf8_lossy(&var.value).into_owned());
        }
    }
    Ok(view)
}

#[derive(serde::Deserialize)]
pub(crate) struct StageQuery {
    stage: Option<String>,
}

/// The vars and secret names an app, or one of its pipeline stages, gets.
pub(crate) async fn show(
    State(ctx): State<Arc<Ctx>>,
    Path(app): Path<String>,
    Query(q): Query<StageQuery>,
) -> ApiResult<Json<ConfigView>> {
    let scope = scope(&app, q.stage.as_deref())?;
    Ok(Json(view(&ctx.store(), &scope)?))
}

/// The app and stage a request names; a stage must be a pipeline stage's name (a DNS label).
/// The scope a change of vars is for: [`scope`], unless the app is a pipeline stage's. A stage's
/// app takes its vars from its pipeline's scope, so vars set on it directly would never reach a
/// release.
fn scope_to_change(ctx: &Ctx, app: &str, stage: Option<&str>) -> ApiResult<VarScope> {
    let scope = scope(app, stage)?;
    if let Some(owner) = ctx.store().stage_owner(&scope.app)? {
        return Err(ApiError::bad_request(format!(
            "{} is the {} app of {}'s pipeline: set its vars with `--stage {}` on {}",
            scope.app, owner.stage, owner.pipeline_app, owner.stage, owner.pipeline_app
        )));
    }
    Ok(scope)
}

fn scope(app: &str, stage: Option<&str>) -> ApiResult<VarScope> {
    let app = AppName::parse(app).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let stage = stage.unwrap_or("");
    if !stage.is_empty() {
        AppName::parse(stage).map_err(|_| ApiError::bad_request(format!("{stage:?} is not a stage name")))?;
    }
    Ok(VarScope { app, stage: stage.to_owned() })
}

/// The running app a change of `scope`'s vars applies to: the app itself for shared vars and
/// `production`, `APP-STAGE` for other stages, none for previews (their next deploy takes it).
fn app_of_scope(scope: &VarScope) -> Option<AppName> {
    match scope.stage.as_str() {
        "" | "production" => Some(scope.app.clone()),
        "preview" => None,
        stage => AppName::parse(&format!("{}-{stage}", scope.app)).ok(),
    }
}

/// The length of a var's value as a process would get it: a secret's opened value.
fn value_len(ctx: &Ctx, app: &AppName, var: &AppVar) -> usize {
    if !var.secret {
        return var.value.len();
    }
    match ctx.keyring.open(&secret_context(app, &var.stage, &var.key), &var.value) {
        Ok(value) => value.expose().len(),
        Err(_) => var.value.len(),
    }
}

/// Refuses a change after which the app's variables (its `env:`, config vars and secrets) would
/// no longer fit in a process environment together: every start would fail with E2BIG, far from
/// the change that caused it.
fn check_total(ctx: &Ctx, scope: &VarScope, set: &[AppVar], unset: &[String]) -> ApiResult<()> {
    let store = ctx.store();
    let mut lens: BTreeMap<String, usize> = BTreeMap::new();
    if let Some(app) = app_of_scope(scope) {
        if let Ok(Some(target)) = store.app(&app).map(|state| state.target) {
            for (key, value) in store.release(&app, target)?.spec.env {
                lens.insert(key, value.len());
            }
        }
    }
    for var in store.scoped_vars(&scope.app, &scope.stage)? {
        lens.insert(var.key.clone(), value_len(ctx, &scope.app, &var));
    }
    drop(store);
    for key in unset {
        lens.remove(key);
    }
    for var in set {
        lens.insert(var.key.clone(), value_len(ctx, &scope.app, var));
    }
    let total: usize = lens.iter().map(|(key, len)| key.len() + len + 2).sum();
    if total > model::env::MAX_ENV_LEN {
        return Err(ApiError::bad_request(format!(
            "the app's env, config vars and secrets would take {total} bytes together, more than {} a process \
             environment can be given",
            model::env::MAX_ENV_LEN
        )));
    }
    Ok(())
}

/// Stores the change and, if the app runs a release, rolls out a new one with it.
fn change(
    ctx: &Ctx,
    scope: &VarScope,
    set: Vec<AppVar>,
    unset: Vec<String>,
    what: &str,
) -> ApiResult<Option<DeployView>> {
    let now = now_ms();
    check_total(ctx, scope, &set, &unset)?;
    let unset: Vec<(String, String)> = unset.into_iter().map(|k| (scope.stage.clone(), k)).collect();
    let what = if scope.stage.is_empty() { what.to_owned() } else { format!("{what} (stage {})", scope.stage) };
    let what = what.as_str();
    let Some(app) = app_of_scope(scope) else {
        let mut store = ctx.store();
        store.update_vars(&scope.app, &set, &unset, now)?;
        store.add_event(Some(&scope.app), "config", what, now)?;
        return Ok(None);
    };
    let app = &app;
    let target = {
        let mut store = ctx.store();
        store.update_vars(&scope.app, &set, &unset, now)?;
        store.add_event(Some(&scope.app), "config", what, now)?;
        match store.app(app) {
            Ok(state) => state.target.map(|t| store.release(app, t)).transpose()?,
            Err(store::StoreError::NoApp(_)) => None,
            Err(e) => return Err(e.into()),
        }
    };
    let Some(current) = target else { return Ok(None) };
    let deploy_id = ctx.store().create_deploy(Some(app), what, now)?;
    release(ctx, deploy_id, &current.spec, &current.digest, what, Gate::RequireTests).map_err(ApiError::bad_request)?;
    Ok(Some(deploy_view(ctx, deploy_id, 0)?))
}

pub(crate) async fn set(
    State(ctx): State<Arc<Ctx>>,
    Path(app): Path<String>,
    Json(req): Json<ConfigRequest>,
) -> ApiResult<Json<Option<DeployView>>> {
    let scope = scope_to_change(&ctx, &app, req.stage.as_deref())?;
    for (key, value) in &req.set {
        check_var(key, Some(value))?;
    }
    for key in &req.unset {
        check_var(key, None)?;
    }
    if req.set.is_empty() && req.unset.is_empty() {
        return Err(ApiError::bad_request("nothing to set or unset"));
    }
    // A plain value must not silently replace a secret: it would show in `config show` and stop
    // being masked.
    let secrets = ctx.store().scoped_vars(&scope.app, &scope.stage)?;
    if let Some(secret) = secrets.iter().find(|v| v.secret && v.stage == scope.stage && req.set.contains_key(&v.key)) {
        return Err(ApiError::bad_request(format!(
            "{} is a secret: set it with `drover secrets set`, or `drover config unset` it first",
            secret.key
        )));
    }
    let mut what: Vec<String> = req.set.keys().map(|k| format!("set {k}")).collect();
    what.extend(req.unset.iter().map(|k| format!("unset {k}")));
    let set = req
        .set
        .into_iter()
        .map(|(key, value)| AppVar { stage: scope.stage.clone(), key, value: value.into_bytes(), secret: false })
        .collect();
    Ok(Json(change(&ctx, &scope, set, req.unset, &format!("config: {}", what.join(", ")))?))
}

pub(crate) async fn set_secret(
    State(ctx): State<Arc<Ctx>>,
    Path(app): Path<String>,
    Json(req): Json<SecretRequest>,
) -> ApiResult<Json<Option<DeployView>>> {
    let scope = scope_to_change(&ctx, &app, req.stage.as_deref())?;
    check_var(&req.key, Some(&req.value))?;
    if req.value.is_empty() {
        return Err(ApiError::bad_request(format!("secret {} is empty", req.key)));
    }
    let sealed = ctx.keyring.seal(&secret_context(&scope.app, &scope.stage, &req.key), req.value.as_bytes());
    let var = AppVar { stage: scope.stage.clone(), key: req.key.clone(), value: sealed, secret: true };
    Ok(Json(change(&ctx, &scope, vec![var], Vec::new(), &format!("secret: set {}", req.key))?))
}
