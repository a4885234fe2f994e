//! The pipeline's server side: test the exact artifact that was built, record the result as an
//! attestation of its digest, and release it to the stages a branch deploys to, waiting for
//! approval where a stage asks for it.

use crate::server::Ctx;
use deploy::reconciler::now_ms;
use model::pipeline::{preview_app_name, preview_app_name_hashed, StageSpec};
use model::{AppName, AppSpec, Digest};
use pipeline::{TestOutcome, TestStep};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use store::{Claim, StageOwner};

/// Whether a release must have a passing test record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Refuse a digest without a passing attestation when the app declares tests.
    RequireTests,
    /// Deploy anyway; recorded as an event.
    Forced,
}

/// Runs the app's test step inside the unpacked artifact `digest` and records an attestation
/// from `source`, passed or not. `Ok(None)` when the app declares no tests; `Err` when the step
/// could not run at all. Whether it passed is [`require_pass`]'s question.
pub(crate) async fn test_artifact(
    ctx: &Arc<Ctx>,
    spec: &AppSpec,
    digest: &Digest,
    source: &str,
    log: impl Fn(&str) + Send + 'static,
    cancel: Arc<AtomicBool>,
) -> Result<Option<TestOutcome>, String> {
    let Some(test) = spec.pipeline.test.clone() else { return Ok(None) };
    let ctx2 = ctx.clone();
    let spec2 = spec.clone();
    let digest2 = digest.clone();
    let what = format!("tests of {} ({source})", spec.name);
    // Names this step's test containers, when the artifact is an image.
    let containers = format!("{:08x}", rand::random::<u32>());
    let containers2 = containers.clone();
    let outcome = tokio::task::spawn_blocking(move || -> Result<pipeline::TestOutcome, String> {
        let work = tempfile::Builder::new()
            .prefix("test-")
            .tempdir_in(ctx2.data.tmp())
            .map_err(|e| format!("creating the test work dir: {e}"))?;
        // Removed when the step ends, whatever happens.
        let secrets_dir = tempfile::Builder::new()
            .prefix("drover-test-")
            .tempdir_in("/dev/shm")
            .map_err(|e| format!("creating a tmpfs directory for the test's secrets: {e}"))?;
        // Tests run where the release will: a slug under the process runtime on the host, an
        // image or (under the Docker runtime) a slug in the stack image in containers.
        let slug_dir = match &spec2.dockerfile {
            Some(_) => None,
            None => Some(ctx2.artifacts.unpacked(&digest2).map_err(|e| crate::routes::chain(&e))?),
        };
        let stack = ctx2.runtime.slug_stack_image().map(str::to_owned);
        let (commands, env, artifact_dir, masker, user) = match (slug_dir, stack) {
            (Some(artifact_dir), None) => {
                let (env, masker) = crate::vars::step_env(&ctx2, &spec2)?;
                let user = crate::vars::step_user(&ctx2, &spec2.name)?;
                (test.run.clone(), env, artifact_dir, masker, user)
            }
            (slug_dir, stack) => {
                let image = match (&slug_dir, &stack) {
                    (Some(slug), Some(stack)) => crate::images::TestImage::Slug { stack, slug },
                    _ => crate::images::TestImage::Image(&digest2),
                };
                let (env, secrets, masker) = crate::vars::step_env_parts(&ctx2, &spec2)?;
                let file = match secrets.is_empty() {
                    true => None,
                    false => Some(write_secrets(secrets_dir.path(), &secrets)?),
                };
                let commands =
                    crate::images::test_commands(&ctx2, &test.run, &image, &env, file.as_deref(), &containers2);
                // The commands run in containers; on the host they need only an empty directory.
                let cwd = work.path().join("image");
                std::fs::create_dir(&cwd).map_err(|e| format!("creating {}: {e}", cwd.display()))?;
                // The reports directory is mounted into containers whose image may run as any
                // user; the work dir around it is private to the server.
                let reports = work.path().join("reports");
                std::fs::create_dir(&reports).map_err(|e| format!("creating {}: {e}", reports.display()))?;
                std::fs::set_permissions(&reports, std::os::unix::fs::PermissionsExt::from_mode(0o777))
                    .map_err(|e| format!("opening {} to containers: {e}", reports.display()))?;
                // The step's `docker` client talks to the engine the server uses; it is not one
                // of the names passed into the containers.
                let mut env = env;
                if let Some(host) = crate::images::docker_host() {
                    env.insert("DOCKER_HOST".to_owned(), host);
                }
                // The `docker` clients run as the server: only it may reach the engine.
                (commands, env, cwd, masker, None)
            }
        };
        log(&format!("testing {digest2} inside the artifact ({} command(s))", test.run.len()));
        let work_dir = work.path().to_owned();
        let step = TestStep { commands, env, artifact_dir, work_dir, timeout: test.timeout, user };
        let mut masks = masker.stream();
        let mut groups = crate::groups::GroupRecorder::new(&ctx2.store, what);
        let outcome = pipeline::run_tests(
            &step,
            &mut |line| {
                for masked in masks.push(line) {
                    log(&masked);
                }
            },
            &mut |pid| groups.spawned(pid),
            &cancel,
        );
        drop(groups);
        for masked in masks.flush() {
            log(&masked);
        }
        drop(masks);
        let mut outcome = outcome.map_err(|e| crate::routes::chain(&e))?;
        // The report is the tests' own words (messages, captured output): stored with the
        // attestation and the run, and shown by `drover run show`, it is masked like the log.
        if let Some(report) = outcome.report.take() {
            outcome.report = Some(mask_report(&masker, report));
        }
        for error in &mut outcome.report_errors {
            *error = masker.mask_text(error);
        }
        Ok(outcome)
    })
    .await
    .expect("tests do not panic");
    if spec.dockerfile.is_some() || ctx.runtime.slug_stack_image().is_some() {
        // A stopped `docker run` client leaves its container running.
        crate::images::remove_test_containers(ctx, Some(&containers)).await;
    }
    let outcome = outcome?;

    let passed = outcome.passed();
    let report_json = outcome.report.as_ref().map(|r| serde_json::to_string(r).expect("reports serialize"));
    ctx.store()
        .record_attestation(digest, source, passed, report_json.as_deref(), now_ms())
        .map_err(|e| e.to_string())?;
    Ok(Some(outcome))
}

/// `report` with every text the tests wrote masked: names, messages and details (which hold the
/// captured output).
fn mask_report(masker: &secrets::Masker, mut report: pipeline::TestReport) -> pipeline::TestReport {
    if masker.is_empty() {
        return report;
    }
    for case in &mut report.cases {
        for text in [&mut case.suite, &mut case.classname, &mut case.name] {
            *text = masker.mask_text(text);
        }
        match &mut case.outcome {
            pipeline::Outcome::Passed => {}
            pipeline::Outcome::Failed { message, detail } | pipeline::Outcome::Error { message, detail } => {
                *message = masker.mask_text(message);
                *detail = masker.mask_text(detail);
            }
            pipeline::Outcome::Skipped { message } => *message = masker.mask_text(message),
        }
    }
    report
}

/// Writes a test's secrets to a 0600 file in `dir` (on a tmpfs) for its containers to source.
fn write_secrets(dir: &std::path::Path, secrets: &[(String, String)]) -> Result<std::path::PathBuf, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("secrets.env");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        // Readable by a container running as any user; `dir` (0700) keeps everyone else out.
        .mode(0o644)
        .open(&path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    file.write_all(runtime::docker::env_file_text(secrets).as_bytes())
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

/// `Err("tests failed: ...")`, with the first failures, unless the test step passed.
pub(crate) fn require_pass(outcome: &TestOutcome) -> Result<(), String> {
    if outcome.passed() {
        return Ok(());
    }
    Err(format!("tests failed: {}", summarize(outcome)))
}

/// A short line on a test step that passed, e.g. `12 tests, 0 failures, 1 skipped`.
pub(crate) fn pass_summary(outcome: &TestOutcome) -> String {
    match &outcome.report {
        Some(report) => {
            format!("{} tests, {} failures, {} skipped", report.tests, report.failures + report.errors, report.skipped)
        }
        None => "every test command succeeded (no JUnit report)".to_owned(),
    }
}

/// One line on how a test step went, with the first failures.
pub(crate) fn summarize(outcome: &pipeline::TestOutcome) -> String {
    let mut text = outcome.exit.to_string();
    if let Some(report) = &outcome.report {
        text = format!(
            "{} tests, {} failed, {} errors, {} skipped; {text}",
            report.tests, report.failures, report.errors, report.skipped
        );
        let failures: Vec<String> = report
            .cases
            .iter()
            .filter_map(|case| match &case.outcome {
                pipeline::Outcome::Failed { message, .. } | pipeline::Outcome::Error { message, .. } => {
                    Some(format!("{}: {message}", case.name))
                }
                _ => None,
            })
            .take(3)
            .collect();
        if !failures.is_empty() {
            text.push_str(&format!(" ({})", failures.join("; ")));
        }
    }
    for error in &outcome.report_errors {
        text.push_str(&format!("; {error}"));
    }
    text
}

/// Refuses `digest` for `spec` unless it passed the app's tests, or the deploy is forced.
pub(crate) fn check_gate(ctx: &Ctx, spec: &AppSpec, digest: &Digest, gate: Gate) -> Result<(), String> {
    if spec.pipeline.test.is_none() {
        return Ok(());
    }
    match gate {
        Gate::Forced => {
            let message = format!("{digest} deployed without a passing test record (forced)");
            ctx.store().add_event(Some(&spec.name), "deploy.forced", &message, now_ms()).map_err(|e| e.to_string())?;
            Ok(())
        }
        Gate::RequireTests => match ctx.store().passing_attestation(digest).map_err(|e| e.to_string())? {
            Some(_) => Ok(()),
            None => Err(format!(
                "refusing to deploy {digest}: it has no passing test record (deploy with --force to override; it is recorded)"
            )),
        },
    }
}

/// The app a stage deploys to, claimed for this pipeline in the store: `production` is the app
/// itself, `preview` an app per branch, any other stage `APP-STAGE`. An app that exists without
/// being this stage's (deployed by hand, another pipeline's stage, another branch's preview) is
/// never taken over: a preview then gets its hashed name, any other stage fails naming the app.
pub(crate) fn claim_stage_app(ctx: &Ctx, app: &AppName, stage: &StageSpec, branch: &str) -> Result<AppName, String> {
    let preview = stage.name == "preview";
    if stage.name == "production" {
        return Ok(app.clone());
    }
    let owner = StageOwner {
        pipeline_app: app.clone(),
        stage: stage.name.clone(),
        branch: if preview { branch.to_owned() } else { String::new() },
    };
    let mut candidates = Vec::new();
    // The app this stage had before comes first, so a branch keeps its preview app.
    candidates.extend(ctx.store().stage_app(&owner).map_err(|e| e.to_string())?);
    if preview {
        candidates.extend(preview_app_name(app, branch));
        candidates.extend(preview_app_name_hashed(app, branch));
    } else {
        candidates
            .push(AppName::parse(&format!("{app}-{}", stage.name)).map_err(|e| format!("stage {}: {e}", stage.name))?);
    }
    candidates.dedup();
    if candidates.is_empty() {
        return Err(format!("branch {branch:?} has no preview name"));
    }
    let mut taken = Vec::new();
    for candidate in candidates {
        match ctx.store().claim_stage_app(&candidate, &owner).map_err(|e| e.to_string())? {
            Claim::Ours => return Ok(candidate),
            Claim::Taken(why) => taken.push(format!("{candidate} is taken: {why}")),
        }
    }
    Err(format!("stage {} has no app to deploy to: {}", stage.name, taken.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_9_f8_a_test_report_is_masked_in_every_text_it_holds() {
        let secret = "hunter2-s3cret";
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        let case = |name: &str, outcome| pipeline::TestCase {
            suite: format!("suite {secret}"),
            classname: "tests".to_owned(),
            name: name.to_owned(),
            duration_ms: 1,
            outcome,
        };
        let report = pipeline::TestReport::from_cases(vec![
            case(
                "test_login",
                pipeline::Outcome::Failed {
                    message: format!("expected {secret}"),
                    detail: format!("--- system-out ---\nkey=hunter2-\ns3cret\n{hex}"),
                },
            ),
            case(&format!("test_{secret}"), pipeline::Outcome::Skipped { message: secret.to_owned() }),
        ]);
        let masked = mask_report(&secrets::Masker::new([secret]), report);
        let json = serde_json::to_string(&masked).unwrap();
        assert!(!json.contains(secret) && !json.contains("hunter2-\\ns3cret"), "{json}");
        assert!(!json.contains(&hex), "{json}");
        assert_eq!((masked.tests, masked.failures, masked.skipped), (2, 1, 1), "the counts are kept");
        assert!(json.contains(r#""kind":"failed""#), "{json}");
    }
}
