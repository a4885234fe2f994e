//! Each provider's real header names and payload shapes, signed and tampered.

use super::*;

const SECRET: &[u8] = b"s3cret";
const SHA: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";

fn github_body() -> Vec<u8> {
    format!(
        r#"{{"ref":"refs/heads/main","before":"{ZERO}","after":"{SHA}","created":true,"deleted":false,"forced":false,
        "repository":{{"full_name":"o/r","clone_url":"https://github.com/o/r.git"}},"head_commit":{{"message":"x; rm -rf ~"}}}}"#
    )
    .into_bytes()
}

fn gitlab_body() -> Vec<u8> {
    format!(
        r#"{{"object_kind":"push","ref":"refs/heads/feature/x","before":"{ZERO}","after":"{SHA}","checkout_sha":"{SHA}",
        "project":{{"git_http_url":"http://gitlab.test/o/r.git"}}}}"#
    )
    .into_bytes()
}

fn bitbucket_body() -> Vec<u8> {
    format!(
        r#"{{"push":{{"changes":[
            {{"new":{{"type":"branch","name":"main","target":{{"hash":"{SHA}"}}}},"old":{{"type":"branch","name":"main","target":{{"hash":"{ZERO}"}}}}}},
            {{"new":null,"old":{{"type":"branch","name":"gone","target":{{"hash":"{SHA}"}}}}}},
            {{"new":{{"type":"tag","name":"v1","target":{{"hash":"{SHA}"}}}},"old":null}}
        ]}},"repository":{{"full_name":"o/r"}}}}"#
    )
    .into_bytes()
}

struct Case {
    name: &'static str,
    provider: Provider,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    expect: Result<&'static str, WebhookError>,
}

fn render(delivery: &Delivery) -> String {
    let event = match &delivery.event {
        Event::Ping => "ping".to_owned(),
        Event::Other(name) => format!("other {name}"),
        Event::Push(changes) => changes
            .iter()
            .map(|c| format!("{}={}", c.refname, c.after.as_deref().map_or("deleted", |a| &a[..7])))
            .collect::<Vec<_>>()
            .join(" "),
    };
    format!("{} {event}", delivery.id.as_deref().unwrap_or("-"))
}

fn check(case: &Case) {
    let headers: Vec<(&str, &str)> = case.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let got = verify(case.provider, &headers[..], &case.body, SECRET)
        .and_then(|()| parse(case.provider, &headers[..], &case.body))
        .map(|d| render(&d));
    assert_eq!(got.as_deref().map_err(Clone::clone), case.expect.clone(), "case {}", case.name);
}

#[test]
fn deliveries() {
    let gh = github_body();
    let sig = format!("sha256={}", sign(SECRET, &gh));
    let gl = gitlab_body();
    let bb = bitbucket_body();
    let bb_sig = format!("sha256={}", sign(SECRET, &bb));
    let mut tampered = gh.clone();
    tampered[10] ^= 1;
    let cases = vec![
        Case {
            name: "github push",
            provider: Provider::GitHub,
            headers: vec![("X-GitHub-Event", "push".into()), ("X-GitHub-Delivery", "d1".into()), ("X-Hub-Signature-256", sig.clone())],
            body: gh.clone(),
            expect: Ok("d1 refs/heads/main=9fceb02"),
        },
        Case {
            name: "github tampered body",
            provider: Provider::GitHub,
            headers: vec![("X-GitHub-Event", "push".into()), ("X-Hub-Signature-256", sig.clone())],
            body: tampered,
            expect: Err(WebhookError::BadSignature),
        },
        Case {
            name: "github missing signature",
            provider: Provider::GitHub,
            headers: vec![("X-GitHub-Event", "push".into())],
            body: gh.clone(),
            expect: Err(WebhookError::MissingSignature("X-Hub-Signature-256")),
        },
        Case {
            name: "github sha1-style header is not enough",
            provider: Provider::GitHub,
            headers: vec![("X-GitHub-Event", "push".into()), ("X-Hub-Signature", format!("sha1={}", "00".repeat(20)))],
            body: gh.clone(),
            expect: Err(WebhookError::MissingSignature("X-Hub-Signature-256")),
        },
        Case {
            name: "github ping",
            provider: Provider::GitHub,
            headers: vec![("X-GitHub-Event", "ping".into()), ("X-Hub-Signature-256", format!("sha256={}", sign(SECRET, b"{}")))],
            body: b"{}".to_vec(),
            expect: Ok("- ping"),
        },
        Case {
            name: "github branch delete",
            provider: Provider::GitHub,
            headers: vec![("X-GitHub-Event", "push".into()), ("X-Hub-Signature-256", format!("sha256={}", sign(SECRET, br#"{"ref":"refs/heads/x","after":"0000000000000000000000000000000000000000","deleted":true}"#)))],
            body: br#"{"ref":"refs/heads/x","after":"0000000000000000000000000000000000000000","deleted":true}"#.to_vec(),
            expect: Ok("- refs/heads/x=deleted"),
        },
        Case {
            name: "gitlab push",
            provider: Provider::GitLab,
            headers: vec![("X-Gitlab-Event", "Push Hook".into()), ("X-Gitlab-Event-UUID", "g1".into()), ("X-Gitlab-Token", "s3cret".into())],
            body: gl.clone(),
            expect: Ok("g1 refs/heads/feature/x=9fceb02"),
        },
        Case {
            name: "gitlab wrong token",
            provider: Provider::GitLab,
            headers: vec![("X-Gitlab-Event", "Push Hook".into()), ("X-Gitlab-Token", "s3creT".into())],
            body: gl.clone(),
            expect: Err(WebhookError::BadSignature),
        },
        Case {
            name: "gitea push",
            provider: Provider::Gitea,
            headers: vec![("X-Gitea-Event", "push".into()), ("X-Gitea-Delivery", "t1".into()), ("X-Gitea-Signature", sign(SECRET, &gh))],
            body: gh.clone(),
            expect: Ok("t1 refs/heads/main=9fceb02"),
        },
        Case {
            name: "gitea signature with another secret",
            provider: Provider::Gitea,
            headers: vec![("X-Gitea-Event", "push".into()), ("X-Gitea-Signature", sign(b"other", &gh))],
            body: gh.clone(),
            expect: Err(WebhookError::BadSignature),
        },
        Case {
            name: "bitbucket push with delete and tag",
            provider: Provider::Bitbucket,
            headers: vec![("X-Event-Key", "repo:push".into()), ("X-Request-UUID", "b1".into()), ("X-Hub-Signature", bb_sig)],
            body: bb,
            expect: Ok("b1 refs/heads/main=9fceb02 refs/heads/gone=deleted refs/tags/v1=9fceb02"),
        },
        Case {
            name: "signed but not a push payload",
            provider: Provider::Gitea,
            headers: vec![("X-Gitea-Event", "push".into()), ("X-Gitea-Signature", sign(SECRET, b"[1]"))],
            body: b"[1]".to_vec(),
            expect: Err(WebhookError::BadPayload {
                provider: "gitea",
                message: "invalid type: integer `1`, expected a string at line 1 column 2".into(),
            }),
        },
        Case {
            name: "other events are named and ignored",
            provider: Provider::GitLab,
            headers: vec![("X-Gitlab-Event", "Merge Request Hook".into()), ("X-Gitlab-Token", "s3cret".into())],
            body: b"{}".to_vec(),
            expect: Ok("- other Merge Request Hook"),
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn providers_round_trip_by_name() {
    for provider in Provider::ALL {
        assert_eq!(Provider::parse(provider.name()), Some(provider));
    }
    assert_eq!(Provider::parse("GitHub"), None);
}

#[test]
fn issue_9_f10_a_github_push_carries_its_signed_push_time() {
    let headers = [("X-GitHub-Event", "push"), ("X-GitHub-Delivery", "d1")];
    let timed = String::from_utf8(github_body())
        .unwrap()
        .replace(r#""full_name":"o/r""#, r#""full_name":"o/r","pushed_at":1764633600"#);
    assert_eq!(parse(Provider::GitHub, &headers[..], timed.as_bytes()).unwrap().signed_at, Some(1764633600));
    assert_eq!(parse(Provider::GitHub, &headers[..], &github_body()).unwrap().signed_at, None);
    // A date string (as other GitHub events carry) is no push time; Gitea signs none.
    let dated = String::from_utf8(github_body())
        .unwrap()
        .replace(r#""full_name":"o/r""#, r#""full_name":"o/r","pushed_at":"2026-12-01T00:00:00Z""#);
    assert_eq!(parse(Provider::GitHub, &headers[..], dated.as_bytes()).unwrap().signed_at, None);
    let gitea = [("X-Gitea-Event", "push"), ("X-Gitea-Delivery", "d2")];
    assert_eq!(parse(Provider::Gitea, &gitea[..], timed.as_bytes()).unwrap().signed_at, None);
}
