//! The routing table the control plane hands to the proxy, and the status the proxy reports back.
//!
//! These types cross the proxy's admin socket as JSON. The control plane always sends the whole
//! table with a higher `generation`; the proxy swaps it in atomically and ignores older ones.

use crate::{AppName, HealthSpec, InstanceId};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Every site the proxy serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    pub generation: u64,
    pub sites: Vec<Site>,
}

/// One app as the proxy sees it: the hosts it answers and its instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    pub app: AppName,
    /// Exact host names (without port), lowercase, e.g. `hello.localhost`.
    pub hosts: Vec<String>,
    pub balance: Balance,
    pub backends: Vec<Backend>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    #[default]
    RoundRobin,
    LeastConnections,
}

/// One instance behind a site. The proxy probes every backend it is given; it sends requests only
/// to backends that are both `routed` and healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    pub id: InstanceId,
    pub addr: SocketAddr,
    /// False for instances being started but not yet switched in (blue-green), or draining.
    pub routed: bool,
    pub health: HealthSpec,
}

/// What the proxy knows about its backends, for deploy decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyStatus {
    /// The generation of the table in force.
    pub generation: u64,
    pub backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub id: InstanceId,
    pub app: AppName,
    pub healthy: bool,
    /// Probes done so far; 0 means the backend has not been checked yet.
    pub probes: u64,
    pub consecutive_failures: u32,
    /// Requests in flight right now; a drained backend can stop when this reaches 0.
    pub inflight: u64,
    /// Requests completed since the backend was added.
    pub requests: u64,
    pub last_error: Option<String>,
}

/// Alias kept for readability where only the probe settings matter.
pub type HealthCheck = HealthSpec;
