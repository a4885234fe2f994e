//! The reconciler: decides from desired vs observed state and carries the decision out.
//!
//! [`plan`] is pure and backend-agnostic; [`reconciler`] observes the runtime, the proxy and the
//! store, calls the planner for each app and applies its actions.

pub mod plan;
pub mod reconciler;
