//! Push webhooks from GitHub, GitLab, Gitea and Bitbucket: check the signature over the raw
//! body, then read which refs moved.
//!
//! Each provider has its own headers and signature scheme:
//!
//! | provider  | event header        | delivery id          | signature                                   |
//! |-----------|---------------------|----------------------|---------------------------------------------|
//! | GitHub    | `X-GitHub-Event`    | `X-GitHub-Delivery`  | `X-Hub-Signature-256: sha256=HMAC-SHA256`   |
//! | GitLab    | `X-Gitlab-Event`    | `X-Gitlab-Event-UUID`| `X-Gitlab-Token: SECRET` (a shared token)   |
//! | Gitea     | `X-Gitea-Event`     | `X-Gitea-Delivery`   | `X-Gitea-Signature: HMAC-SHA256` (hex)      |
//! | Bitbucket | `X-Event-Key`       | `X-Request-UUID`     | `X-Hub-Signature: sha256=HMAC-SHA256`       |
//!
//! Comparisons are constant-time. The payload's repository URL is not trusted: Drover fetches
//! from the clone URL configured for the app, so a forged payload cannot redirect it. This crate
//! does no IO.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    GitLab,
    Gitea,
    Bitbucket,
}

impl Provider {
    pub const ALL: [Provider; 4] = [Provider::GitHub, Provider::GitLab, Provider::Gitea, Provider::Bitbucket];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Gitea => "gitea",
            Provider::Bitbucket => "bitbucket",
        }
    }

    fn event_header(self) -> &'static str {
        match self {
            Provider::GitHub => "x-github-event",
            Provider::GitLab => "x-gitlab-event",
            Provider::Gitea => "x-gitea-event",
            Provider::Bitbucket => "x-event-key",
        }
    }

    fn delivery_headers(self) -> &'static [&'static str] {
        match self {
            Provider::GitHub => &["x-github-delivery"],
            Provider::GitLab => &["x-gitlab-event-uuid", "idempotency-key"],
            Provider::Gitea => &["x-gitea-delivery"],
            Provider::Bitbucket => &["x-request-uuid", "x-hook-uuid"],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("missing {0} header")]
    MissingSignature(&'static str),
    #[error("bad signature")]
    BadSignature,
    /// An empty secret would make a signature anyone can compute, or a GitLab token anyone can
    /// send: nothing verifies against one.
    #[error("the webhook secret is empty")]
    EmptySecret,
    #[error("missing {0} header")]
    MissingEvent(&'static str),
    #[error("payload is not a valid {provider} push event: {message}")]
    BadPayload { provider: &'static str, message: String },
}

/// Looks a header up by lowercase name.
pub trait Headers {
    fn get(&self, lowercase_name: &str) -> Option<&str>;
}

impl Headers for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

/// Checks that `body` was sent by someone who knows `secret`.
pub fn verify(
    provider: Provider,
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    secret: &[u8],
) -> Result<(), WebhookError> {
    if secret.is_empty() {
        return Err(WebhookError::EmptySecret);
    }
    match provider {
        Provider::GitLab => {
            let token = headers.get("x-gitlab-token").ok_or(WebhookError::MissingSignature("X-Gitlab-Token"))?;
            if constant_time_eq(token.as_bytes(), secret) {
                Ok(())
            } else {
                Err(WebhookError::BadSignature)
            }
        }
        Provider::GitHub => {
            check_hmac(headers, "x-hub-signature-256", "X-Hub-Signature-256", Some("sha256="), body, secret)
        }
        Provider::Bitbucket => check_hmac(headers, "x-hub-signature", "X-Hub-Signature", Some("sha256="), body, secret),
        Provider::Gitea => check_hmac(headers, "x-gitea-signature", "X-Gitea-Signature", None, body, secret),
    }
}

fn check_hmac(
    headers: &(impl Headers + ?Sized),
    name: &str,
    display: &'static str,
    prefix: Option<&str>,
    body: &[u8],
    secret: &[u8],
) -> Result<(), WebhookError> {
    let value = headers.get(name).ok_or(WebhookError::MissingSignature(display))?;
    let hex_sig = match prefix {
        Some(prefix) => value.strip_prefix(prefix).ok_or(WebhookError::BadSignature)?,
        None => value,
    };
    let given = hex::decode(hex_sig.trim()).map_err(|_| WebhookError::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&given).map_err(|_| WebhookError::BadSignature)
}

/// Compares without an early exit, so timing does not reveal how much matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The HMAC-SHA256 of `body` under `secret`, hex-encoded: what GitHub, Gitea and Bitbucket send.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// One verified delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The provider's id of this delivery; a redelivery carries the same one.
    pub id: Option<String>,
    pub event: Event,
    /// When the provider says the push happened, in seconds since the Unix epoch, from inside
    /// the signed body: GitHub's `repository.pushed_at`. The other providers sign no time.
    pub signed_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Push(Vec<RefChange>),
    /// A provider's connectivity check (GitHub `ping`).
    Ping,
    /// Any other event; named, and ignored.
    Other(String),
}

/// One ref that moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefChange {
    /// `refs/heads/NAME` or `refs/tags/NAME`.
    pub refname: String,
    /// The commit it now points at; `None` when the ref was deleted.
    pub after: Option<String>,
}

const ZERO: &str = "0000000000000000000000000000000000000000";

fn commit(sha: Option<String>) -> Option<String> {
    sha.filter(|s| s != ZERO && !s.is_empty())
}

#[derive(Deserialize)]
struct RefPush {
    #[serde(rename = "ref")]
    refname: String,
    after: Option<String>,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    repository: Option<PushRepository>,
}

#[derive(Deserialize)]
struct PushRepository {
    /// GitHub: seconds since the epoch in push events (a date string in other events).
    #[serde(default)]
    pushed_at: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct BitbucketPush {
    push: BitbucketChanges,
}

#[derive(Deserialize)]
struct BitbucketChanges {
    changes: Vec<BitbucketChange>,
}

#[derive(Deserialize)]
struct BitbucketChange {
    new: Option<BitbucketRef>,
    old: Option<BitbucketRef>,
}

#[derive(Deserialize)]
struct BitbucketRef {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    target: Option<BitbucketTarget>,
}

#[derive(Deserialize)]
struct BitbucketTarget {
    hash: String,
}

fn bitbucket_refname(r: &BitbucketRef) -> String {
    match r.kind.as_str() {
        "tag" => format!("refs/tags/{}", r.name),
        _ => format!("refs/heads/{}", r.name),
    }
}

/// Reads a delivery whose signature was already verified.
pub fn parse(provider: Provider, headers: &(impl Headers + ?Sized), body: &[u8]) -> Result<Delivery, WebhookError> {
    let event_name = headers.get(provider.event_header()).ok_or(WebhookError::MissingEvent(provider.event_header()))?;
    let id = provider.delivery_headers().iter().find_map(|h| headers.get(h)).map(str::to_owned);
    let bad = |e: serde_json::Error| WebhookError::BadPayload { provider: provider.name(), message: e.to_string() };
    let mut signed_at = None;
    let event = match (provider, event_name) {
        (Provider::GitHub, "ping") => Event::Ping,
        (Provider::GitHub | Provider::Gitea, "push") | (Provider::GitLab, "Push Hook" | "Tag Push Hook") => {
            let push: RefPush = serde_json::from_slice(body).map_err(bad)?;
            if provider == Provider::GitHub {
                signed_at = push.repository.and_then(|r| r.pushed_at).and_then(|t| t.as_u64());
            }
            let after = if push.deleted { None } else { commit(push.after) };
            Event::Push(vec![RefChange { refname: push.refname, after }])
        }
        (Provider::Bitbucket, "repo:push") => {
            let push: BitbucketPush = serde_json::from_slice(body).map_err(bad)?;
            let changes = push
                .push
                .changes
                .into_iter()
                .filter_map(|change| match (change.new, change.old) {
                    (Some(new), _) => {
                        Some(RefChange { refname: bitbucket_refname(&new), after: new.target.map(|t| t.hash) })
                    }
                    (None, Some(old)) => Some(RefChange { refname: bitbucket_refname(&old), after: None }),
                    (None, None) => None,
                })
                .collect();
            Event::Push(changes)
        }
        (_, other) => Event::Other(other.to_owned()),
    };
    Ok(Delivery { id, event, signed_at })
}

#[cfg(test)]
mod tests;
