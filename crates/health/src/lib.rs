//! Health probes and the healthy/unhealthy state machine.
//!
//! [`HealthState`] is pure: it is fed probe results together with the time they were taken and
//! decides when an instance flips between healthy and unhealthy. It reads no clock and does no
//! IO, so its tests need neither. The probes in [`probe`] are the IO half: one HTTP GET or one TCP
//! connect, bounded by a timeout, reduced to `Ok(())` or a one-line reason.
//!
//! This crate knows nothing of routing tables, proxies or instances; callers decide what a flip
//! means (the proxy stops routing, the reconciler replaces the instance).

mod probe;
mod state;

pub use probe::{http_probe, tcp_probe};
pub use state::{HealthState, Status};
