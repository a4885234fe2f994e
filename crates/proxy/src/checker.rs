//! Active health checks: one task per backend in the table, routed or not.
//!
//! The checker set follows the table: [`Checkers::sync`] starts a task for each new backend,
//! restarts one whose probe settings changed, and stops those that left the table. Results go
//! into the backend's shared state, where the request path sees them through an atomic.

use crate::table::{BackendState, Snapshot};
use model::{HealthSpec, InstanceId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::AbortHandle;
use tokio::time::MissedTickBehavior;

#[derive(Debug)]
struct Running {
    state: Arc<BackendState>,
    spec: HealthSpec,
    host: String,
    task: AbortHandle,
}

/// The running health-check tasks, keyed by backend.
#[derive(Debug, Default)]
pub(crate) struct Checkers {
    running: HashMap<InstanceId, Running>,
}

impl Checkers {
    /// Makes the running checks match `snapshot`. Must be called inside the tokio runtime.
    pub fn sync(&mut self, snapshot: &Snapshot) {
        let mut previous = std::mem::take(&mut self.running);
        for backend in &snapshot.backends {
            let id = &backend.state.id;
            if let Some(running) = previous.remove(id) {
                let unchanged = Arc::ptr_eq(&running.state, &backend.state)
                    && running.spec == backend.health
                    && running.host == backend.probe_host;
                if unchanged {
                    self.running.insert(id.clone(), running);
                    continue;
                }
                running.task.abort();
            }
            let task = tokio::spawn(check_loop(
                Arc::clone(&backend.state),
                backend.health.clone(),
                backend.probe_host.clone(),
            ));
            self.running.insert(
                id.clone(),
                Running {
                    state: Arc::clone(&backend.state),
                    spec: backend.health.clone(),
                    host: backend.probe_host.clone(),
                    task: task.abort_handle(),
                },
            );
        }
        for (_, gone) in previous {
            gone.task.abort();
        }
    }
}

impl Drop for Checkers {
    fn drop(&mut self) {
        for running in self.running.values() {
            running.task.abort();
        }
    }
}

async fn check_loop(backend: Arc<BackendState>, spec: HealthSpec, host: String) {
    let mut ticker = tokio::time::interval(spec.interval);
    // A probe that takes longer than the interval delays the next one rather than bunching up.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let result = match &spec.path {
            Some(path) => health::http_probe(backend.addr, path, &host, spec.timeout).await,
            None => health::tcp_probe(backend.addr, spec.timeout).await,
        };
        tracing::trace!(instance = %backend.id, ok = result.is_ok(), "probe");
        backend.record(result, Instant::now());
    }
}
