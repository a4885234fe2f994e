//! The control plane's HTTP API (axum) and the server that runs reconciles.
