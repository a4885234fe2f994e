//! The control plane: the HTTP API, the reconcile loop, and starting the data plane.
//!
//! `server::run` is what `drover server run` does. The CLI talks to it only over HTTP, with the
//! token from the data directory; the wire types live in [`wire`].

pub mod datadir;
mod git;
pub mod gitcmd;
mod groups;
mod images;
mod pipeline;
mod routes;
mod runs;
pub mod server;
mod sources;
mod vars;
pub mod wire;
