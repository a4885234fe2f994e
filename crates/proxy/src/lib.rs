//! Host-routed reverse proxy and load balancer with health checks and draining.
//!
//! This is Drover's data plane. It runs as its own process (`drover proxy`) so that a crash or
//! restart of the control plane costs no requests, and it keeps serving the last routing table it
//! was given, across its own restarts too (the table is persisted in the state file).
//!
//! Code map:
//! - [`server`]: worker threads (one single-threaded runtime and listener each), graceful
//!   shutdown.
//! - [`forward`]: one request's life as phases: route, pick upstream, connect/forward, log.
//! - [`table`]: the check of an incoming [`model::RouteTable`] (which drops only the parts that
//!   cannot be served, see [`Rejection`]), the immutable routing snapshot built from it, and the
//!   per-backend state (health, counters) that survives table updates.
//! - [`balance`]: the pure choice of a backend (round-robin, least connections).
//! - [`upstream`]: per-backend keep-alive connection pools and sending a request.
//! - [`checker`]: active health checks, one task per backend, using the `health` crate.
//! - [`admin`]: the admin API on a unix socket (`PUT /routes`, `GET /status`) and its client.
//! - [`state_file`]: atomic persistence of the table.
//!
//! **Architecture invariant:** the request path never waits on the admin side. It reads the
//! table through one `arc-swap` load and touches only atomics, except two short locks: its
//! worker's share of a backend's connection pool (which the sweeper takes once a second) and,
//! after a refused connection, the backend's health state (held for one update).
//!
//! **Architecture invariant:** nothing is logged per request above `debug`.

mod admin;
mod balance;
mod body;
mod checker;
mod error;
mod forward;
mod headers;
mod server;
mod state_file;
mod table;
mod upstream;

pub use admin::AdminClient;
pub use error::ProxyError;
pub use server::{run, start, ProxyHandle};
pub use table::Rejection;

use std::net::SocketAddr;
use std::path::PathBuf;

/// How to run the proxy; mirrors the `drover proxy` command line.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Where to accept HTTP traffic. Port 0 picks a free port (see [`ProxyHandle::local_addr`]).
    pub listen: SocketAddr,
    /// Unix socket for the admin API; created with mode 0600.
    pub admin_socket: PathBuf,
    /// Where the routing table is persisted and restored from at start.
    pub state_file: PathBuf,
    /// Worker threads, each with its own single-threaded runtime; 0 means one per core.
    pub threads: usize,
}
