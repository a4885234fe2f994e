//! Drover's domain types, shared by every other crate.
//!
//! Values here are parsed once at the edge (`AppName::parse`, `Digest::parse`) and are valid by
//! construction afterwards. This crate does no IO and knows nothing of SQLite, HTTP or processes.

pub mod env;
mod name;
pub mod pipeline;
mod route;
mod spec;
mod user;

pub use env::{check_env_var, EnvVarError};
pub use name::{AppName, Digest, InstanceId, NameError, ProcessType, ReleaseId};
pub use route::{Backend, BackendStatus, Balance, HealthCheck, ProxyStatus, RouteTable, Site};
pub use spec::{
    AppSpec, BuildStep, DeploySpec, DurationRange, DurationRangeError, HealthSpec, HumanDuration, InvalidSpec,
    RoutingSpec, Strategy, VarScope, BUILD_TIMEOUT_RANGE, DEFAULT_BUILD_TIMEOUT, POLL_INTERVAL_RANGE,
    TEST_TIMEOUT_RANGE,
};
pub use user::AppUser;
