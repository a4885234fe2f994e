//! The `drover` binary: command-line parsing and glue over the library crates.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "drover", version, about = "Build, test and deploy apps like cattle")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the data-plane proxy in the foreground (normally started by the server).
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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Proxy { listen, admin_socket, state_file, threads } => {
            let _ = (listen, admin_socket, state_file, threads);
            anyhow::bail!("not wired yet")
        }
    }
}
