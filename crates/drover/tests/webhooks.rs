//! Webhooks and polling against a real upstream repository (a local bare repo): signed
//! deliveries start runs of the fetched commit; bad, duplicate, stale and oversized ones do not.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

struct Upstream {
    bare: tempfile::TempDir,
    work: Repo,
}

impl Upstream {
    fn new(app: &str) -> Self {
        let bare = tempfile::tempdir().unwrap();
        let work = Repo::new();
        work.ok(&["init", "--quiet", "--bare", "--initial-branch=main", bare.path().to_str().unwrap()]);
        let example = app_dir(app, "");
        for file in ["app.py", "drover.yml"] {
            std::fs::copy(example.path().join(file), work.path().join(file)).unwrap();
        }
        work.commit_all("first");
        work.ok(&["remote", "add", "origin", bare.path().to_str().unwrap()]);
        work.ok(&["push", "--quiet", "origin", "main"]);
        Self { bare, work }
    }

    fn head(&self) -> String {
        self.work.ok(&["rev-parse", "HEAD"]).trim().to_owned()
    }

    fn commit_and_push(&self, file: &str) -> String {
        std::fs::write(self.work.path().join(file), file).unwrap();
        self.work.commit_all(file);
        self.work.ok(&["push", "--quiet", "origin", "main"]);
        self.head()
    }
}

fn post(url: &str, headers: &[(&str, String)], body: Vec<u8>) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut request = client.post(url).body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    })
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    // The same HMAC-SHA256 the providers compute, done with openssl's CLI as an independent check.
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret, "-hex"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    out.trim().rsplit(' ').next().unwrap().to_owned()
}

fn github_push(after: &str) -> Vec<u8> {
    serde_json::json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000000",
        "after": after,
        "deleted": false,
        "repository": {"clone_url": "https://example.invalid/elsewhere.git"},
        "head_commit": {"message": "$(touch pwned)"}
    })
    .to_string()
    .into_bytes()
}

#[test]
fn signed_github_deliveries_start_runs_and_bad_ones_do_not() {
    let drover = Drover::new();
    drover.start();
    let upstream = Upstream::new("hooked");
    let source =
        drover.json(&["source", "set", "hooked", upstream.bare.path().to_str().unwrap(), "--provider", "github"]);
    let url = source["webhook_url"].as_str().unwrap().to_owned();
    let secret = source["webhook_secret"].as_str().unwrap().to_owned();
    assert!(url.ends_with("/hooks/github/hooked"), "{url}");

    let first = upstream.head();
    let body = github_push(&first);
    let signed = |id: &str, body: &[u8]| {
        vec![
            ("X-GitHub-Event", "push".to_owned()),
            ("X-GitHub-Delivery", id.to_owned()),
            ("X-Hub-Signature-256", format!("sha256={}", hmac_hex(&secret, body))),
            ("Content-Type", "application/json".to_owned()),
        ]
    };

    // Wrong and missing signatures: 401, nothing queued.
    let mut forged = signed("d0", &body);
    forged[2].1 = format!("sha256={}", hmac_hex("not-the-secret", &body));
    assert_eq!(post(&url, &forged, body.clone()).0, 401);
    assert_eq!(post(&url, &forged[..2], body.clone()).0, 401);
    assert_eq!(drover.json(&["runs", "hooked"]), serde_json::json!([]));

    let (status, answer) = post(&url, &signed("d1", &body), body.clone());
    assert_eq!(status, 202, "{answer}");
    let run = run_id(&answer);
    let logs = drover.ok(&["run", "logs", &run, "-f"]);
    assert!(logs.contains("is live"), "{logs}");
    assert_eq!(drover.get("hooked", "/").0, 200);

    // A redelivery of the same event runs nothing.
    let (status, answer) = post(&url, &signed("d1", &body), body.clone());
    assert_eq!(status, 200);
    assert!(answer.contains("already handled"), "{answer}");

    // A late delivery for a commit the branch has moved past is stale.
    let second = upstream.commit_and_push("second.txt");
    let (status, answer) = post(&url, &signed("d2", &body), body.clone());
    assert_eq!(status, 202);
    assert!(answer.contains("stale delivery"), "{answer}");
    let fresh = github_push(&second);
    let (_, answer) = post(&url, &signed("d3", &fresh), fresh.clone());
    let second_run = run_id(&answer);
    drover.ok(&["run", "logs", &second_run, "-f"]);

    // issue 9, finding 10: the same signed delivery replayed under a new delivery id, or none,
    // names the commit the branch is at: it has its run, and nothing more is queued.
    let (status, answer) = post(&url, &signed("d3-replayed", &fresh), fresh.clone());
    assert_eq!(status, 202, "{answer}");
    assert!(answer.contains(&format!("already has run {second_run}")), "{answer}");
    let (status, answer) = post(&url, &[signed("-", &fresh)[0].clone(), signed("-", &fresh)[2].clone()], fresh.clone());
    assert_eq!(status, 202, "{answer}");
    assert!(answer.contains("already has run"), "{answer}");
    // A deletion of a branch the source still has destroys nothing; a commit that is not a
    // commit id is not passed to git.
    let deleted = github_push("0000000000000000000000000000000000000000");
    let (status, answer) = post(&url, &signed("d-del", &deleted), deleted.clone());
    assert_eq!(status, 202, "{answer}");
    assert!(answer.contains("still exists at the source; nothing destroyed"), "{answer}");
    let odd = github_push("--upload-pack=touch pwned2");
    let (status, answer) = post(&url, &signed("d-odd", &odd), odd.clone());
    assert_eq!(status, 202, "{answer}");
    assert!(answer.contains("is not a commit id"), "{answer}");
    assert_eq!(drover.get("hooked", "/").0, 200);
    // A delivery whose signed push time is old is refused, whatever its id.
    let mut old = serde_json::from_slice::<serde_json::Value>(&fresh).unwrap();
    old["repository"]["pushed_at"] = serde_json::json!(1_600_000_000u64);
    let old = old.to_string().into_bytes();
    let (status, answer) = post(&url, &signed("d-old", &old), old.clone());
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("a replay?"), "{answer}");

    // Oversized bodies are refused before anything is parsed.
    let huge = vec![b' '; 6 * 1024 * 1024];
    assert_eq!(post(&url, &signed("d4", &huge), huge.clone()).0, 413);

    let runs = drover.json(&["runs", "hooked"]);
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs}");
    assert!(!drover.data.path().join("pwned").exists());
}

#[test]
fn gitlab_tokens_are_checked_and_polling_finds_new_commits() {
    let drover = Drover::new();
    drover.start();
    let upstream = Upstream::new("labbed");
    let source =
        drover.json(&["source", "set", "labbed", upstream.bare.path().to_str().unwrap(), "--provider", "gitlab"]);
    let url = source["webhook_url"].as_str().unwrap().to_owned();
    let token = source["webhook_secret"].as_str().unwrap().to_owned();
    let body =
        serde_json::json!({"object_kind": "push", "ref": "refs/heads/main", "after": upstream.head()}).to_string();
    let headers = |token: &str| vec![("X-Gitlab-Event", "Push Hook".to_owned()), ("X-Gitlab-Token", token.to_owned())];
    assert_eq!(post(&url, &headers("wrong"), body.clone().into_bytes()).0, 401);
    let (status, answer) = post(&url, &headers(&token), body.into_bytes());
    assert_eq!(status, 202, "{answer}");
    drover.ok(&["run", "logs", &run_id(&answer), "-f"]);

    // Polling: a second app follows the same remote without webhooks.
    let polled = Upstream::new("polled");
    drover.ok(&["source", "set", "polled", polled.bare.path().to_str().unwrap(), "--poll", "1s"]);
    wait_until("the first poll to run", Duration::from_secs(60), || {
        drover.json(&["runs", "polled"]).as_array().unwrap().iter().any(|r| r["status"] == "succeeded")
    });
    let head = polled.commit_and_push("polled.txt");
    wait_until("a poll to find the new commit", Duration::from_secs(60), || {
        let runs: Value = drover.json(&["runs", "polled"]);
        runs.as_array().unwrap().iter().any(|r| r["commit"] == head.as_str() && r["trigger"] == "poll")
    });
}

#[test]
fn gitea_and_bitbucket_deliveries_are_verified_and_start_runs() {
    let drover = Drover::new();
    drover.start();

    // Gitea: a bare hex HMAC in X-Gitea-Signature.
    let tea = Upstream::new("tea");
    let source = drover.json(&["source", "set", "tea", tea.bare.path().to_str().unwrap(), "--provider", "gitea"]);
    let (url, secret) = (source["webhook_url"].as_str().unwrap(), source["webhook_secret"].as_str().unwrap());
    let body = github_push(&tea.head());
    let headers = |sig: String| {
        vec![("X-Gitea-Event", "push".to_owned()), ("X-Gitea-Delivery", "t1".to_owned()), ("X-Gitea-Signature", sig)]
    };
    assert_eq!(post(url, &headers(hmac_hex("wrong", &body)), body.clone()).0, 401);
    let (status, answer) = post(url, &headers(hmac_hex(secret, &body)), body.clone());
    assert_eq!(status, 202, "{answer}");
    drover.ok(&["run", "logs", &run_id(&answer), "-f"]);

    // Bitbucket: `sha256=` HMAC in X-Hub-Signature, and its own payload shape.
    let bucket = Upstream::new("bucket");
    let source =
        drover.json(&["source", "set", "bucket", bucket.bare.path().to_str().unwrap(), "--provider", "bitbucket"]);
    let (url, secret) = (source["webhook_url"].as_str().unwrap(), source["webhook_secret"].as_str().unwrap());
    let body = serde_json::json!({
        "push": {"changes": [{"new": {"type": "branch", "name": "main", "target": {"hash": bucket.head()}}, "old": null}]},
        "repository": {"full_name": "o/bucket"}
    })
    .to_string()
    .into_bytes();
    let headers = |sig: String| {
        vec![("X-Event-Key", "repo:push".to_owned()), ("X-Request-UUID", "b1".to_owned()), ("X-Hub-Signature", sig)]
    };
    assert_eq!(post(url, &headers(format!("sha256={}", hmac_hex("wrong", &body))), body.clone()).0, 401);
    let (status, answer) = post(url, &headers(format!("sha256={}", hmac_hex(secret, &body))), body.clone());
    assert_eq!(status, 202, "{answer}");
    drover.ok(&["run", "logs", &run_id(&answer), "-f"]);
    assert_eq!(drover.get("tea", "/").0, 200);
    assert_eq!(drover.get("bucket", "/").0, 200);
}
