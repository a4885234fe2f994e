//! The `drover` binary: command-line parsing and glue over the library crates.
//!
//! Control-plane commands talk to the server over its HTTP API; `server run`, `proxy` and `shim`
//! are the long-running processes themselves.

mod client;
mod commands;
mod credential;
mod hook;
mod terminal;

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "drover", version, about = "Build, test and deploy apps like cattle")]
struct Cli {
    /// Where Drover keeps its state [default: $DROVER_DATA_DIR or ~/.local/share/drover].
    #[arg(long, global = true, env = "DROVER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone, Default)]
pub struct ServerFlags {
    /// Address the apps' proxy listens on (saved for later starts).
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// Address of the API (saved for later starts).
    #[arg(long)]
    api_addr: Option<SocketAddr>,
    /// Apps answer at APP.DOMAIN.
    #[arg(long)]
    domain: Option<String>,
    /// Largest accepted source upload, in bytes.
    #[arg(long)]
    upload_limit: Option<u64>,
    /// Largest accepted `git push`, in bytes.
    #[arg(long)]
    push_limit: Option<u64>,
    /// Where slug instances run: `process` (supervised processes) or `docker` (containers of the
    /// local Docker engine, in --stack-image). Saved for later starts.
    #[arg(long)]
    runtime: Option<api::datadir::RuntimeKind>,
    /// The image slugs run in under `--runtime docker`; it needs `/bin/sh`. Saved.
    #[arg(long)]
    stack_image: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server if needed and deploy an app directory (default: the current directory if
    /// it has a drover.yml or Procfile, else the bundled example).
    Up {
        dir: Option<PathBuf>,
        /// App name, when the directory has only a Procfile.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        server: ServerFlags,
    },
    /// Build and roll out an app directory.
    Deploy {
        dir: Option<PathBuf>,
        #[arg(long)]
        name: Option<String>,
        /// Return once the upload is accepted.
        #[arg(long)]
        no_wait: bool,
        /// Skip the tests and deploy without a passing test record (recorded as an event).
        #[arg(long)]
        force: bool,
    },
    /// List apps.
    Apps,
    /// List an app's instances.
    Ps { app: Option<String> },
    /// List an app's releases, newest first.
    Releases { app: Option<String> },
    /// Roll back to RELEASE (default: the one before the current), as a new release.
    Rollback {
        release: Option<String>,
        #[arg(short, long)]
        app: Option<String>,
        #[arg(long)]
        no_wait: bool,
    },
    /// Set instance counts, e.g. `drover scale web=3 worker=1`.
    Scale {
        #[arg(required = true)]
        counts: Vec<String>,
        #[arg(short, long)]
        app: Option<String>,
    },
    /// Show an app's logs; -f follows.
    Logs {
        app: Option<String>,
        #[arg(short, long)]
        follow: bool,
        #[arg(long, default_value_t = 100)]
        tail: usize,
    },
    /// Show recent events (deploys, rollbacks, scaling).
    Events { app: Option<String> },
    /// Start, stop or inspect the Drover server.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Run the data-plane proxy in the foreground (normally started by the server).
    #[command(hide = true)]
    Proxy {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long)]
        admin_socket: PathBuf,
        #[arg(long)]
        state_file: PathBuf,
        /// Worker threads; 0 means one per core.
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Show a pipeline run, or print and follow its log (`drover runs` lists them).
    #[command(subcommand)]
    Run(RunCommand),
    /// List recent pipeline runs.
    Runs { app: Option<String> },
    /// Where an app's code lives besides `git push`: a remote that sends webhooks or is polled.
    #[command(subcommand)]
    Source(SourceCommand),
    /// An app's config vars: plain settings that become part of its next release.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// An app's secrets: sealed at rest, masked in every log.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Cancel a queued or running pipeline run.
    Cancel { run: u64 },
    /// Approve the deploy a waiting run waits for.
    Approve { run: u64 },
    /// Refuse the deploy a waiting run waits for.
    Reject { run: u64 },
    /// Make this git work tree push to Drover: sets remote `drover` to the app's repository on
    /// the server, with Drover as git's credential helper for it, so the token is never on a
    /// command line or in `.git/config`.
    GitRemote {
        /// The app (default: the app of the drover.yml here).
        #[arg(short, long)]
        app: Option<String>,
        /// The remote's name.
        #[arg(long, default_value = "drover")]
        remote: String,
    },
    /// git's credential helper for Drover's remotes (set up by `drover git-remote`).
    #[command(hide = true)]
    GitCredential { action: String },
    /// Called by git in a pushed repository.
    #[command(hide = true)]
    Hook {
        #[arg(value_enum)]
        kind: HookKind,
    },
    /// Supervise one instance (started by the process runtime).
    #[command(hide = true)]
    Shim {
        #[arg(long)]
        instance_dir: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum HookKind {
    PreReceive,
    PostReceive,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Show config vars and the names of secrets (of one pipeline stage with --stage).
    Show {
        app: String,
        #[arg(long)]
        stage: Option<String>,
    },
    /// Set vars, e.g. `drover config set hello GREETING=hi LEVEL=debug`; rolls out a new release.
    Set {
        app: String,
        #[arg(required = true)]
        pairs: Vec<String>,
        /// Only for this pipeline stage (e.g. staging); overrides the shared value there.
        #[arg(long)]
        stage: Option<String>,
    },
    /// Remove vars or secrets; rolls out a new release.
    Unset {
        app: String,
        #[arg(required = true)]
        keys: Vec<String>,
        #[arg(long)]
        stage: Option<String>,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Set a secret; the value is read from standard input, never from the command line.
    Set {
        app: String,
        key: String,
        /// Only for this pipeline stage (e.g. production).
        #[arg(long)]
        stage: Option<String>,
    },
    /// List the names of an app's secrets.
    List {
        app: String,
        #[arg(long)]
        stage: Option<String>,
    },
}

#[derive(Subcommand)]
enum SourceCommand {
    /// Set the clone URL, and a webhook provider and/or a poll interval.
    Set {
        app: String,
        url: String,
        /// github, gitlab, gitea or bitbucket: prints the webhook URL and secret to configure.
        #[arg(long)]
        provider: Option<String>,
        /// Poll the remote, e.g. 30s or 5m.
        #[arg(long, value_parser = parse_duration)]
        poll: Option<std::time::Duration>,
    },
    /// Show an app's source, webhook URL and secret.
    Show { app: String },
}

/// A poll interval, as drover.yml writes durations (`30s`, `1.5m`), from 1s to 24h.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    config::parse_duration(text, model::POLL_INTERVAL_RANGE)
}

#[derive(Subcommand)]
enum RunCommand {
    /// Show a run: status, steps and its log.
    Show { run: u64 },
    /// Print a run's log; -f follows it until the run ends.
    Logs {
        run: u64,
        #[arg(short, long)]
        follow: bool,
    },
}

#[derive(Subcommand)]
enum ServerCommand {
    /// Start the server in the background.
    Start(ServerFlags),
    /// Stop the server; with --all also every app instance and the proxy.
    Stop {
        #[arg(long)]
        all: bool,
    },
    /// Show whether the server runs, and where.
    Status,
    /// Run the server in the foreground.
    Run(ServerFlags),
}

fn main() {
    let cli = Cli::parse();
    let serves = matches!(
        cli.command,
        Command::Proxy { .. }
            | Command::Shim { .. }
            | Command::Hook { .. }
            | Command::GitCredential { .. }
            | Command::Server(ServerCommand::Run(_))
    );
    if !serves {
        // A command's output piped into `head` ends quietly when `head` exits, as with any Unix
        // tool, instead of failing to print. Processes that serve keep ignoring SIGPIPE: a
        // client hanging up must not kill them.
        // SAFETY: called before any thread is started; SIG_DFL is a valid disposition.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // The message may quote the server, and through it an app or a push.
            eprintln!("error: {}", terminal::for_stderr(&format!("{e:#}")));
            1
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let data = api::datadir::DataDir::new(cli.data_dir.clone().unwrap_or_else(api::datadir::DataDir::default_root));
    let out = commands::Output { json: cli.json };
    match cli.command {
        Command::Proxy { listen, admin_socket, state_file, threads } => {
            init_tracing();
            proxy::run(proxy::ProxyOptions { listen, admin_socket, state_file, threads })?;
            Ok(0)
        }
        Command::GitCredential { action } => credential::helper(&data, &action),
        Command::Hook { kind: HookKind::PreReceive } => hook::pre_receive(),
        Command::Hook { kind: HookKind::PostReceive } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(hook::post_receive(&data))
        }
        Command::Shim { instance_dir } => {
            runtime::shim::run(&instance_dir)?;
            Ok(0)
        }
        Command::Server(ServerCommand::Run(flags)) => {
            init_tracing();
            let rt = tokio::runtime::Runtime::new()?;
            let served = rt.block_on(api::server::run(api::server::ServerOptions {
                data,
                overrides: flags.into(),
                exe: std::env::current_exe()?,
            }));
            // A blocking task stuck on a file that never answers (a hung mount, a FIFO) must not
            // keep a stopped server alive; what it was doing is redone by the next server.
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
            served?;
            Ok(0)
        }
        command => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(commands::dispatch(command, data, out))
        }
    }
}

impl From<ServerFlags> for api::server::Overrides {
    fn from(f: ServerFlags) -> Self {
        Self {
            api_addr: f.api_addr,
            http_addr: f.http_addr,
            domain: f.domain,
            upload_limit: f.upload_limit,
            push_limit: f.push_limit,
            runtime: f.runtime,
            stack_image: f.stack_image,
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DROVER_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn issue_9_f11_a_poll_interval_never_wraps() {
        use std::time::Duration;
        assert_eq!(super::parse_duration("30s"), Ok(Duration::from_secs(30)));
        // The same syntax as drover.yml: fractions too.
        assert_eq!(super::parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(super::parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        for (text, says) in [
            ("25h", "must be at most 24h"),
            ("18446744073709552s", "must be at most 24h"),
            ("99999999999999999999h", "must be at most 24h"),
            ("500ms", "must be at least 1s"),
            ("5", "expected a duration"),
        ] {
            let error = super::parse_duration(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
