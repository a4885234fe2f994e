//! Fuzz target `parsers`: webhook deliveries of the four providers, as anyone on the network can
//! send them, through [`webhook::verify`] and [`webhook::parse`].
//!
//! Drover's fuzz targets are plain tests (see issue 9): this one first replays every file of the
//! committed corpus in `fuzz/corpus/parsers/` (real payload shapes; the file name's prefix names
//! the provider, and `ping`/`tag` in it the event), then runs a bounded number of proptest cases
//! that mutate the bodies (bit flips, insertions of bytes and JSON tokens, removals,
//! truncation, splicing) and the headers (event names, signatures re-encoded, truncated, flipped
//! or missing, delivery ids). `DROVER_FUZZ_CASES` sets the number of cases; failures are not
//! persisted: a failing input is printed, and belongs in the corpus once fixed.
//!
//! What must hold for any input:
//! - no panic;
//! - GitHub, Gitea, Bitbucket: a body other than the one signed never verifies, and whatever
//!   verifies carries a signature header that decodes to the HMAC of that body;
//! - GitLab signs nothing (its token is a shared secret sent as is, and its body is not
//!   authenticated), so there: only the exact token verifies;
//! - a parsed push names a commit for every moved ref that was not deleted, never the zero id,
//!   and an event that is not a push is named as its header says.

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use std::path::Path;
use testkit::fuzz::{cases, Mutations};
use webhook::{parse, sign, verify, Event, Provider, WebhookError};

/// Proptest cases when `DROVER_FUZZ_CASES` is unset.
const DEFAULT_CASES: u32 = 2000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const ZERO: &str = "0000000000000000000000000000000000000000";

const TOKENS: &[&str] = &[
    "\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "null",
    "true",
    "0",
    "-1",
    "1e400",
    "18446744073709551616",
    "\\u0000",
    "\\ud800",
    "\"ref\":",
    "\"after\":",
    "\"deleted\":true,",
    "\"push\":",
    "\"changes\":",
    "\"new\":",
    "\"old\":",
    "\"target\":",
    "\"hash\":",
    "\"type\":\"tag\",",
    "\"pushed_at\":",
    ZERO,
    "refs/heads/",
    "refs/tags/",
    "../",
    "\u{0}",
    "é",
    "🦀",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
];

/// How the bodies are mutated: JSON tokens three times as often as any other change; no byte is
/// set.
const MUTATIONS: Mutations = Mutations {
    tokens: TOKENS,
    token_weight: 3,
    set_byte: false,
    max_insert: 8,
    max_remove: 32,
    max_splice: 128,
    block: None,
};

/// A corpus file: the provider and event its name says, and its body.
#[derive(Debug, Clone)]
struct Seed {
    name: String,
    provider: Provider,
    event: &'static str,
    body: Vec<u8>,
}

fn corpus() -> Vec<Seed> {
    let files = testkit::fuzz::corpus(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parsers"));
    let seeds: Vec<Seed> = files
        .into_iter()
        .map(|(name, body)| {
            let provider = Provider::ALL
                .into_iter()
                .find(|provider| name.starts_with(&format!("{}_", provider.name())))
                .unwrap_or_else(|| panic!("{name}: the file name starts with the provider"));
            let event = match provider {
                Provider::GitHub if name.contains("ping") => "ping",
                Provider::GitHub | Provider::Gitea => "push",
                Provider::GitLab if name.contains("tag") => "Tag Push Hook",
                Provider::GitLab => "Push Hook",
                Provider::Bitbucket => "repo:push",
            };
            Seed { name, provider, event, body }
        })
        .collect();
    assert!(seeds.len() >= 5, "the corpus has its seeds");
    seeds
}

fn event_header(provider: Provider) -> &'static str {
    match provider {
        Provider::GitHub => "X-GitHub-Event",
        Provider::GitLab => "X-Gitlab-Event",
        Provider::Gitea => "X-Gitea-Event",
        Provider::Bitbucket => "X-Event-Key",
    }
}

fn delivery_header(provider: Provider) -> &'static str {
    match provider {
        Provider::GitHub => "X-GitHub-Delivery",
        Provider::GitLab => "X-Gitlab-Event-UUID",
        Provider::Gitea => "X-Gitea-Delivery",
        Provider::Bitbucket => "X-Request-UUID",
    }
}

/// The signature header and its prefix, for the providers that sign the body.
fn signature_header(provider: Provider) -> Option<(&'static str, &'static str)> {
    match provider {
        Provider::GitHub => Some(("X-Hub-Signature-256", "sha256=")),
        Provider::Bitbucket => Some(("X-Hub-Signature", "sha256=")),
        Provider::Gitea => Some(("X-Gitea-Signature", "")),
        Provider::GitLab => None,
    }
}

/// The headers a provider sends for `body` signed with [`SECRET`].
fn signed_headers(provider: Provider, event: &str, body: &[u8]) -> Vec<(String, String)> {
    let mut headers = vec![
        (event_header(provider).to_owned(), event.to_owned()),
        (delivery_header(provider).to_owned(), "72d3162e-cc78-11e3-81ab-4c9367dc0958".to_owned()),
    ];
    match signature_header(provider) {
        Some((name, prefix)) => headers.push((name.to_owned(), format!("{prefix}{}", sign(SECRET, body)))),
        None => headers.push(("X-Gitlab-Token".to_owned(), String::from_utf8(SECRET.to_vec()).expect("ascii"))),
    }
    headers
}

fn first<'h>(headers: &'h [(&str, &str)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
}

/// Checks one delivery, whose headers were made for `signed_body`; `Err` says which property
/// failed.
fn check(provider: Provider, headers: &[(String, String)], body: &[u8], signed_body: &[u8]) -> Result<(), String> {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let verified = verify(provider, &headers[..], body, SECRET).is_ok();
    match signature_header(provider) {
        Some((name, prefix)) => {
            if verified && body != signed_body {
                return Err("a body other than the signed one verifies".to_owned());
            }
            if verified {
                let value = first(&headers, name).ok_or("verified without a signature header")?;
                let given = value.strip_prefix(prefix).ok_or("verified without the signature's prefix")?;
                if !given.trim().eq_ignore_ascii_case(&sign(SECRET, body)) {
                    return Err(format!("verified with the signature {value:?}, which is not the body's"));
                }
            }
        }
        None => {
            let token_ok = first(&headers, "x-gitlab-token").is_some_and(|token| token.as_bytes() == SECRET);
            if verified != token_ok {
                return Err(format!("verified: {verified}, but the token is right: {token_ok}"));
            }
        }
    }
    // The parser sees bodies whose signature was checked; it must still hold up on any body.
    let Ok(delivery) = parse(provider, &headers[..], body) else { return Ok(()) };
    let event = first(&headers, event_header(provider)).ok_or("parsed without an event header")?;
    match &delivery.event {
        Event::Push(changes) => {
            for change in changes {
                if change.after.as_deref().is_some_and(|after| after.is_empty() || after == ZERO) {
                    return Err(format!("a push names the commit {:?}", change.after));
                }
            }
        }
        Event::Ping => {}
        Event::Other(name) if name == event => {}
        Event::Other(name) => return Err(format!("event {event:?} is reported as {name:?}")),
    }
    Ok(())
}

#[test]
fn parsers_corpus_replays() {
    for seed in corpus() {
        let headers = signed_headers(seed.provider, seed.event, &seed.body);
        let verdict = verify(
            seed.provider,
            &headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect::<Vec<_>>()[..],
            &seed.body,
            SECRET,
        );
        assert_eq!(verdict, Ok(()), "{}: a correctly signed seed verifies", seed.name);
        if let Err(problem) = check(seed.provider, &headers, &seed.body, &seed.body) {
            panic!("corpus file {}: {problem}", seed.name);
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let delivery = parse(seed.provider, &headers[..], &seed.body);
        assert!(delivery.is_ok(), "{}: a seed parses: {delivery:?}", seed.name);
    }
}

/// One change to the headers of a signed delivery.
#[derive(Debug, Clone)]
enum HeaderChange {
    Keep,
    /// Removes the header at this index (modulo their number).
    Drop(usize),
    /// Replaces the header value at this index with generated text.
    Value(usize, String),
    /// Flips one character of the value: a signature one hex digit off.
    FlipChar(usize, usize),
    /// Cuts the value short.
    Truncate(usize, usize),
    /// Upper-cases the value: the same hex signature, spelled differently.
    Upper(usize),
    /// Surrounds the value with whitespace.
    Pad(usize),
    /// Adds a header before the others, which a lookup finds first.
    Prepend(String, String),
    /// Changes the case of a header's name.
    NameCase(usize),
}

fn header_change() -> impl Strategy<Value = HeaderChange> {
    let name = prop_oneof![
        Just("X-Hub-Signature-256".to_owned()),
        Just("x-hub-signature".to_owned()),
        Just("X-Gitea-Signature".to_owned()),
        Just("X-Gitlab-Token".to_owned()),
        Just("X-GitHub-Event".to_owned()),
        Just("X-Gitlab-Event".to_owned()),
        Just("X-Event-Key".to_owned()),
        "[A-Za-z-]{1,20}",
    ];
    let value = prop_oneof![
        "[ -~]{0,80}",
        "sha256=[0-9a-fA-F]{0,70}",
        "[0-9a-f]{64}",
        Just("ping".to_owned()),
        Just("push".to_owned()),
        Just("Push Hook".to_owned()),
        Just("repo:push".to_owned()),
        Just(String::new()),
    ];
    prop_oneof![
        2 => Just(HeaderChange::Keep),
        1 => any::<usize>().prop_map(HeaderChange::Drop),
        1 => (any::<usize>(), value.clone()).prop_map(|(idx, value)| HeaderChange::Value(idx, value)),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(idx, at)| HeaderChange::FlipChar(idx, at)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(idx, at)| HeaderChange::Truncate(idx, at)),
        1 => any::<usize>().prop_map(HeaderChange::Upper),
        1 => any::<usize>().prop_map(HeaderChange::Pad),
        1 => (name, value).prop_map(|(name, value)| HeaderChange::Prepend(name, value)),
        1 => any::<usize>().prop_map(HeaderChange::NameCase),
    ]
}

fn change_headers(mut headers: Vec<(String, String)>, changes: &[HeaderChange]) -> Vec<(String, String)> {
    for change in changes {
        let n = headers.len().max(1);
        match change {
            HeaderChange::Keep => {}
            HeaderChange::Drop(idx) if !headers.is_empty() => drop(headers.remove(idx % n)),
            HeaderChange::Value(idx, value) if !headers.is_empty() => headers[idx % n].1 = value.clone(),
            HeaderChange::FlipChar(idx, at) if !headers.is_empty() => {
                let value = &mut headers[idx % n].1;
                let mut chars: Vec<char> = value.chars().collect();
                if !chars.is_empty() {
                    let at = at % chars.len();
                    chars[at] = match chars[at] {
                        '0' => '1',
                        'f' => 'e',
                        c if c.is_ascii_hexdigit() => '0',
                        _ => 'x',
                    };
                    *value = chars.into_iter().collect();
                }
            }
            HeaderChange::Truncate(idx, at) if !headers.is_empty() => {
                let value = &mut headers[idx % n].1;
                let keep = value.chars().count().checked_sub(1).map_or(0, |max| at % (max + 1));
                *value = value.chars().take(keep).collect();
            }
            HeaderChange::Upper(idx) if !headers.is_empty() => headers[idx % n].1 = headers[idx % n].1.to_uppercase(),
            HeaderChange::Pad(idx) if !headers.is_empty() => headers[idx % n].1 = format!(" {} ", headers[idx % n].1),
            HeaderChange::Prepend(name, value) => headers.insert(0, (name.clone(), value.clone())),
            HeaderChange::NameCase(idx) if !headers.is_empty() => {
                headers[idx % n].0 = headers[idx % n].0.to_ascii_lowercase();
            }
            HeaderChange::Drop(_)
            | HeaderChange::Value(..)
            | HeaderChange::FlipChar(..)
            | HeaderChange::Truncate(..)
            | HeaderChange::Upper(_)
            | HeaderChange::Pad(_)
            | HeaderChange::NameCase(_) => {}
        }
    }
    headers
}

fn run<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), String>)
where
    S::Value: std::fmt::Debug,
{
    let config = ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() };
    let result = TestRunner::new(config).run(&strategy, |value| test(value).map_err(TestCaseError::fail));
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

/// A seed's index, and its body mutated.
fn mutated_body(seeds: &[Seed]) -> impl Strategy<Value = (usize, Vec<u8>)> {
    let bodies: Vec<Vec<u8>> = seeds.iter().map(|seed| seed.body.clone()).collect();
    (0..seeds.len(), prop::collection::vec(MUTATIONS.strategy(), 1..5)).prop_map(move |(seed_idx, mutations)| {
        let body = MUTATIONS.apply(&bodies, bodies[seed_idx].clone(), &mutations);
        (seed_idx, body)
    })
}

#[test]
fn a_mutated_body_never_verifies() {
    let seeds = corpus();
    run(cases(DEFAULT_CASES), mutated_body(&seeds), |(seed_idx, body)| {
        let seed = &seeds[seed_idx];
        let headers = signed_headers(seed.provider, seed.event, &seed.body);
        check(seed.provider, &headers, &body, &seed.body).map_err(|problem| {
            format!("{problem}\nprovider: {:?}\nbody: {:?}", seed.provider, String::from_utf8_lossy(&body))
        })
    });
}

#[test]
fn mutated_headers_verify_only_with_the_right_signature() {
    let seeds = corpus();
    let strategy = (0..seeds.len(), prop::collection::vec(header_change(), 1..4), any::<bool>());
    run(cases(DEFAULT_CASES), strategy, |(seed_idx, changes, other_provider)| {
        let seed = &seeds[seed_idx];
        let headers = change_headers(signed_headers(seed.provider, seed.event, &seed.body), &changes);
        // Also a delivery sent to another provider's endpoint.
        let provider = match other_provider {
            true => Provider::ALL[(seed_idx + 1) % Provider::ALL.len()],
            false => seed.provider,
        };
        check(provider, &headers, &seed.body, &seed.body)
            .map_err(|problem| format!("{problem}\nprovider: {provider:?}\nheaders: {headers:?}"))
    });
}

/// Signed bodies the parser must hold up on: each is what a provider (or someone holding the
/// secret) might send, so only the properties of `parse` are at stake.
#[test]
fn parsers_survive_signed_mutated_bodies() {
    let seeds = corpus();
    run(cases(DEFAULT_CASES), mutated_body(&seeds), |(seed_idx, body)| {
        let seed = &seeds[seed_idx];
        let headers = signed_headers(seed.provider, seed.event, &body);
        check(seed.provider, &headers, &body, &body).map_err(|problem| {
            format!("{problem}\nprovider: {:?}\nbody: {:?}", seed.provider, String::from_utf8_lossy(&body))
        })
    });
}

/// An empty secret verifies nothing: not a GitLab delivery whose token is empty, nor an HMAC
/// anyone can compute.
#[test]
fn issue_9_f10_an_empty_secret_verifies_nothing() {
    let headers = [("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "")];
    assert_eq!(verify(Provider::GitLab, &headers[..], b"{}", b""), Err(WebhookError::EmptySecret));
    let signature = format!("sha256={}", sign(b"", b"{}"));
    let headers = [("X-GitHub-Event", "push"), ("X-Hub-Signature-256", signature.as_str())];
    assert_eq!(verify(Provider::GitHub, &headers[..], b"{}", b""), Err(WebhookError::EmptySecret));
}
