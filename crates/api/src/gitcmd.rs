//! Every git command Drover runs on user data is built by [`command`], and the server runs each
//! one with [`output`] or [`spawn`], so that none reads the operator's git configuration and
//! none outlives the server.
//!
//! Repositories hold what users pushed or what a source fetched: ref names, trees and
//! `.gitattributes` are user data. The operator's `~/.gitconfig` and `/etc/gitconfig` may name
//! filter drivers (LFS is one), hooks, credential helpers, `url.*.insteadOf` rewrites or an ssh
//! command; applied to user data they run programs on input a pusher chooses (a pushed
//! `.gitattributes` picks the filter). So a command built here:
//!
//! - starts from an empty environment: no `GIT_*` variable of the server's (`GIT_DIR`,
//!   `GIT_CONFIG_PARAMETERS`, `GIT_EXEC_PATH`, `GIT_SSH_COMMAND`, ...) is inherited; `PATH` is
//!   kept, and `HOME` is `/dev/null`, under which nothing can be read or written;
//! - reads no system or global configuration (`GIT_CONFIG_NOSYSTEM`, and `GIT_CONFIG_SYSTEM` and
//!   `GIT_CONFIG_GLOBAL` are `/dev/null`) and no system or global attributes
//!   (`GIT_ATTR_NOSYSTEM`, `core.attributesFile=/dev/null`);
//! - runs no hooks (`core.hooksPath=/dev/null`), except under `git http-backend`, whose
//!   `receive-pack` runs Drover's own hooks in the repository;
//! - uses no transport at all, or for a source's fetch only the protocols the caller lists,
//!   and never recurses into submodules; never prompts; skips LFS smudging; ignores replace refs.
//!
//! A repository's own config is written by Drover (`git init`); no push can change it. With no
//! filter driver configured, `git archive` runs no program: what it honours of the commit's
//! `.gitattributes` is built into git. `export-ignore` leaves files out of the checkout and
//! `export-subst` expands `$Format:...$` placeholders from commit metadata; neither runs
//! anything, and builds may rely on them, so both stay.
//!
//! A source may be a local path the operator named, so `file` is one of the protocols a fetch
//! may list; nothing in a repository's content makes git fetch from elsewhere.
//!
//! The server runs git in a process group of its own, recorded in the store like a build
//! step's ([`crate::groups`]), so a starting server kills what a killed one left; and its
//! leader gets SIGKILL as its parent-death signal, so a `git http-backend` whose request
//! stopped with the server does not wait (or spin) forever. That signal fires when the
//! *thread* that forked the child exits, and tokio's blocking threads exit when idle, so every
//! git process is forked by one thread that lives as long as the server.

use crate::groups::GroupRecord;
use crate::server::Ctx;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;

/// Where the repository a command works on is.
#[derive(Debug, Clone, Copy)]
pub enum Repo<'a> {
    /// None, or one named on the command line (`git init DIR`, `git ls-remote URL`) or by
    /// `GIT_PROJECT_ROOT` (`git http-backend`).
    Unnamed,
    /// The repository at this path (`--git-dir`).
    At(&'a Path),
    /// The repository a hook of `git receive-pack` runs in (its working directory), including
    /// the objects of the push the hook is checking, which git keeps in a quarantine directory
    /// until the hooks accept them.
    OfHook,
}

/// What a command may do beyond reading and writing its repository.
#[derive(Debug, Clone, Copy)]
pub enum Access<'a> {
    /// Nothing: no transport, no hooks.
    Local,
    /// Fetch from or list a remote over only these protocols (a `GIT_ALLOW_PROTOCOL` list);
    /// no hooks, no submodules.
    Remote { protocols: &'a str },
    /// Serve a push or fetch (`git http-backend`): no transport; the hooks in this directory
    /// run; nothing detaches from the request's process group.
    Serve { hooks: &'a Path },
}

/// The quarantine variables `git receive-pack` gives its hooks, so a hook sees the pushed
/// objects. They come from git run by Drover, never from the operator's environment.
const HOOK_ENV: [&str; 3] = ["GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH"];

/// A `git` command that reads no configuration but its repository's and runs no program
/// except Drover's hooks where `access` allows them. Add the subcommand and its arguments.
/// Stdin is `/dev/null`.
pub fn command(repo: Repo<'_>, access: Access<'_>) -> std::process::Command {
    let mut git = std::process::Command::new("git");
    git.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_SYSTEM", "/dev/null")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_ATTR_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_PROTOCOL_FROM_USER", "0")
        .env("GIT_LFS_SKIP_SMUDGE", "1")
        .env("GIT_NO_REPLACE_OBJECTS", "1")
        .stdin(Stdio::null());
    git.args(["-c", "core.attributesFile=/dev/null", "-c", "core.fsmonitor=false", "-c", "protocol.allow=never"]);
    match access {
        Access::Local => {
            // An empty list allows no transport at all.
            git.env("GIT_ALLOW_PROTOCOL", "").args(["-c", "core.hooksPath=/dev/null"]);
        }
        Access::Remote { protocols } => {
            git.env("GIT_ALLOW_PROTOCOL", protocols).args([
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "fetch.recurseSubmodules=false",
                "-c",
                "submodule.recurse=false",
            ]);
            // The operator's ssh agent is how ssh sources authenticate; it is not git config.
            if let Some(agent) = std::env::var_os("SSH_AUTH_SOCK") {
                git.env("SSH_AUTH_SOCK", agent);
            }
        }
        Access::Serve { hooks } => {
            let mut hooks_path = std::ffi::OsString::from("core.hooksPath=");
            hooks_path.push(hooks);
            // A detached `git gc --auto` would leave the request's process group.
            git.env("GIT_ALLOW_PROTOCOL", "").arg("-c").arg(hooks_path).args([
                "-c",
                "gc.autoDetach=false",
                "-c",
                "maintenance.autoDetach=false",
            ]);
        }
    }
    match repo {
        Repo::Unnamed => {}
        Repo::At(path) => {
            git.arg("--git-dir").arg(path);
        }
        Repo::OfHook => {
            git.arg("--git-dir").arg(".");
            for name in HOOK_ENV {
                if let Some(value) = std::env::var_os(name) {
                    git.env(name, value);
                }
            }
        }
    }
    git
}

/// A git process of the server's: its own process group, recorded until this is dropped,
/// which kills what is left of the group.
pub(crate) struct Running {
    pub child: tokio::process::Child,
    pub group: GroupRecord,
}

/// Starts `git`, built by [`command`], in its own recorded process group, with SIGKILL as the
/// leader's parent-death signal. `what` names it in logs and in the record.
pub(crate) async fn spawn(ctx: &Ctx, mut git: std::process::Command, what: String) -> io::Result<Running> {
    let server = nix::unistd::getpid().as_raw();
    git.process_group(0);
    // SAFETY: prctl and getppid are async-signal-safe and touch no memory of the parent.
    unsafe {
        git.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The server may have died before the signal was armed.
            if libc::getppid() != server {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let runtime = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _runtime = runtime.enter();
        let mut git = tokio::process::Command::from(git);
        git.kill_on_drop(true);
        let _ = tx.send(git.spawn());
    });
    let gone = || io::Error::other("the thread that starts git processes is gone");
    spawner().send(job).map_err(|_| gone())?;
    let child = rx.await.map_err(|_| gone())??;
    let pid = child.id().expect("a child that was not waited for has a pid");
    let group = GroupRecord::new(ctx.store.clone(), pid, what);
    Ok(Running { child, group })
}

/// Runs `git`, built by [`command`], to its end and collects its output, like
/// `Command::output`, in its own recorded process group that dies with the server.
pub(crate) async fn output(ctx: &Ctx, mut git: std::process::Command, what: String) -> io::Result<Output> {
    git.stdout(Stdio::piped()).stderr(Stdio::piped());
    let running = spawn(ctx, git, what).await?;
    let output = running.child.wait_with_output().await;
    drop(running.group);
    output
}

type Job = Box<dyn FnOnce() + Send>;

/// The thread that forks every git process; it lives as long as the server.
fn spawner() -> &'static mpsc::Sender<Job> {
    static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("git-spawner".to_owned())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .expect("the server can start a thread");
        tx
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(git: &std::process::Command) -> Vec<(String, Option<String>)> {
        git.get_envs()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.map(|v| v.to_string_lossy().into_owned())))
            .collect()
    }

    #[test]
    fn git_gets_no_configuration_of_the_operator() {
        let git = command(Repo::At(Path::new("/r.git")), Access::Local);
        let env = env_of(&git);
        for (name, value) in [
            ("HOME", "/dev/null"),
            ("GIT_CONFIG_GLOBAL", "/dev/null"),
            ("GIT_CONFIG_NOSYSTEM", "1"),
            ("GIT_ATTR_NOSYSTEM", "1"),
            ("GIT_ALLOW_PROTOCOL", ""),
            ("GIT_LFS_SKIP_SMUDGE", "1"),
        ] {
            assert!(env.contains(&(name.to_owned(), Some(value.to_owned()))), "{name}: {env:?}");
        }
        let args: Vec<String> = git.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args,
            [
                "-c",
                "core.attributesFile=/dev/null",
                "-c",
                "core.fsmonitor=false",
                "-c",
                "protocol.allow=never",
                "-c",
                "core.hooksPath=/dev/null",
                "--git-dir",
                "/r.git"
            ]
        );
    }
}
