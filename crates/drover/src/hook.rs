//! `drover hook pre-receive|post-receive`: git calls these in a pushed repository. Ref names
//! arrive on stdin and stay data: they are never put into a command line. The hooks' own git
//! commands are built by `api::gitcmd`, like the server's: no configuration of the operator's.

use crate::client::Client;
use api::datadir::DataDir;
use api::gitcmd;
use api::wire::{PushRequest, PushResponse, RefUpdate};
use std::io::BufRead;

/// The app a repository belongs to: its directory is `repos/APP.git`, and git runs hooks there.
fn app_of_repo() -> anyhow::Result<model::AppName> {
    let dir = std::env::current_dir()?;
    let name = dir.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".git")).unwrap_or("");
    Ok(model::AppName::parse(name)?)
}

fn read_updates() -> anyhow::Result<Vec<RefUpdate>> {
    let mut updates = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let mut parts = line.splitn(3, ' ');
        if let (Some(old), Some(new), Some(refname)) = (parts.next(), parts.next(), parts.next()) {
            updates.push(RefUpdate { old: old.to_owned(), new: new.to_owned(), refname: refname.to_owned() });
        }
    }
    Ok(updates)
}

fn is_commit_id(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit()) && !text.bytes().all(|b| b == b'0')
}

/// The contents of `path` in commit `commit`, if it has that file. The pushed objects are still
/// in git's quarantine directory, which `Repo::OfHook` passes on.
fn show(commit: &str, path: &str) -> Option<String> {
    let mut git = gitcmd::command(gitcmd::Repo::OfHook, gitcmd::Access::Local);
    let out = git.args(["cat-file", "-p"]).arg(format!("{commit}:{path}")).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Why the pushed commit cannot become a release, if it cannot.
fn check_commit(app: &model::AppName, branch: &str, commit: &str) -> Option<String> {
    let spec = if let Some(text) = show(commit, config::DROVER_YML) {
        config::parse_yaml(config::DROVER_YML, &text)
    } else if let Some(text) = show(commit, config::PROCFILE) {
        config::parse_procfile(config::PROCFILE, &text, app.clone())
    } else {
        return Some(format!(
            "branch {branch:?} at {}: no drover.yml or Procfile at the top of the tree, so there is nothing to build",
            &commit[..12]
        ));
    };
    match spec {
        Err(e) => Some(format!("branch {branch:?} at {}: {e}", &commit[..12])),
        Ok(spec) if &spec.name != app => {
            Some(format!("branch {branch:?}: drover.yml names app {}, but this is the repository of {app}", spec.name))
        }
        Ok(_) => None,
    }
}

pub fn pre_receive() -> anyhow::Result<i32> {
    let app = app_of_repo()?;
    let mut refused = false;
    for update in read_updates()? {
        let Some(branch) = update.refname.strip_prefix("refs/heads/") else { continue };
        if !is_commit_id(&update.new) {
            continue;
        }
        if let Some(why) = check_commit(&app, branch, &update.new) {
            // Reaches the pusher's terminal through git: branch names and drover.yml errors are
            // the pusher's own text, shown, never obeyed.
            eprintln!("drover: refused: {}", crate::terminal::render(&why));
            refused = true;
        }
    }
    Ok(if refused { 1 } else { 0 })
}

fn render_error(e: &anyhow::Error) -> String {
    crate::terminal::render(&format!("{e:#}")).into_owned()
}

pub async fn post_receive(data: &DataDir) -> anyhow::Result<i32> {
    let app = app_of_repo()?;
    let updates = read_updates()?;
    let client = match Client::connect(data) {
        Ok(client) => client,
        Err(e) => {
            println!("drover: the push is stored, but no run was queued: {}", render_error(&e));
            return Ok(0);
        }
    };
    match client.post::<_, PushResponse>(&format!("/apps/{app}/pushes"), &PushRequest { updates }).await {
        Ok(response) => {
            for message in response.messages {
                println!("drover: {}", crate::terminal::render(&message));
            }
        }
        Err(e) => println!("drover: the push is stored, but no run was queued: {}", render_error(&e)),
    }
    Ok(0)
}
