//! Drover's git remote without its token on a command line or in a file of the work tree.
//!
//! `drover git-remote` sets a remote whose URL holds no credentials, and makes `drover
//! git-credential` git's credential helper for that URL alone. git runs the helper when the
//! server asks for a password and hands it the request on standard input; the helper answers with
//! the token on standard output. So the token never appears in `ps` (argv is readable by every
//! local user), in `.git/config`, or in the shell's history.
//!
//! The helper list for the URL is reset first (an empty `helper` entry), so a helper of the
//! user's global config, such as `store`, is neither asked for the token nor told to save it.

use anyhow::{bail, Context};
use api::datadir::DataDir;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

/// The API address a remote should point at: the running server's, else the saved setting.
fn api_addr(data: &DataDir) -> anyhow::Result<SocketAddr> {
    if let Some(info) = crate::client::running_server(data) {
        return Ok(info.api_addr);
    }
    let settings: Option<api::datadir::Settings> = DataDir::read_json(&data.settings());
    match settings {
        Some(settings) if settings.api_addr.port() != 0 => Ok(settings.api_addr),
        _ => bail!(
            "no Drover server runs for {} and none has run there yet (start one with `drover server start`)",
            data.root().display()
        ),
    }
}

/// The URL prefix the helper answers for, as git's `credential.<url>` config key wants it.
fn base_url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// Points remote `remote` of the git work tree `dir` at app `app` on this data dir's server, with
/// `drover git-credential` as the only credential helper for it. Returns the remote's URL.
pub fn set_remote(data: &DataDir, dir: &Path, app: &str, remote: &str) -> anyhow::Result<String> {
    model::AppName::parse(app).map_err(|e| anyhow::anyhow!("{e}"))?;
    let base = base_url(api_addr(data)?);
    let url = format!("{base}/git/{app}.git");
    let git = |args: &[&str]| -> anyhow::Result<std::process::Output> {
        Command::new("git").arg("-C").arg(dir).args(args).output().context("running git")
    };
    let inside = git(&["rev-parse", "--is-inside-work-tree"])?;
    if !inside.status.success() {
        bail!("{} is not a git work tree (run `git init` first)", dir.display());
    }
    let has_remote = git(&["remote", "get-url", remote])?.status.success();
    let set =
        if has_remote { git(&["remote", "set-url", remote, &url])? } else { git(&["remote", "add", remote, &url])? };
    if !set.status.success() {
        bail!("git could not set remote {remote}: {}", String::from_utf8_lossy(&set.stderr).trim());
    }
    let exe = std::env::current_exe().context("finding the drover executable")?;
    let root = std::path::absolute(data.root()).context("resolving the data directory")?;
    let helper = format!(
        "!{} --data-dir {} git-credential",
        runtime::docker::sh_quote(&exe.to_string_lossy()),
        runtime::docker::sh_quote(&root.to_string_lossy())
    );
    let key = format!("credential.{base}.helper");
    for args in [
        vec!["config", "--local", "--unset-all", &key],
        vec!["config", "--local", "--add", &key, ""],
        vec!["config", "--local", "--add", &key, &helper],
        vec!["config", "--local", &format!("credential.{base}.username"), "drover"],
    ] {
        let out = git(&args)?;
        // `--unset-all` of a key that is not set exits 5, which is fine.
        if !out.status.success() && args[2] != "--unset-all" {
            bail!("git config failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
    }
    Ok(url)
}

/// git's credential helper protocol: `get` answers with the token for a request to this data
/// dir's running server, and with nothing for any other host or when the server is not running; `store` and `erase` do nothing, since the
/// token lives in the data directory.
pub fn helper(data: &DataDir, action: &str) -> anyhow::Result<i32> {
    let mut request = std::collections::HashMap::new();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.is_empty() {
            break;
        }
        if let Some((key, value)) = line.split_once('=') {
            request.insert(key.to_owned(), value.to_owned());
        }
    }
    if action != "get" {
        return Ok(0);
    }
    // Only a live server of this data dir (pid and start time in server.json) gets the token:
    // with the server stopped, whatever listens on its remembered port could be anyone's.
    let ours = crate::client::running_server(data).map(|info| info.api_addr.to_string());
    let asks_us = request.get("protocol").map(String::as_str) == Some("http")
        && ours.is_some()
        && request.get("host") == ours.as_ref();
    if !asks_us {
        return Ok(0);
    }
    let bytes = std::fs::read(data.token()).with_context(|| format!("reading {}", data.token().display()))?;
    let token = api::datadir::check_token(&data.token(), &bytes)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "username=drover")?;
    writeln!(out, "password={token}")?;
    out.flush()?;
    Ok(0)
}
