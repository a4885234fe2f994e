//! The instances whose `start` is in progress in this process, shared by the backends: `list`
//! does not report them half-made, and `remove` does not pull them away.

use crate::RuntimeError;
use model::InstanceId;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default, Clone)]
pub(crate) struct StartingSet(Arc<Mutex<HashSet<InstanceId>>>);

impl StartingSet {
    /// Marks `id` as being started until the returned claim is dropped; an id already being
    /// started is refused.
    pub(crate) fn claim(&self, id: &InstanceId) -> Result<Claim, RuntimeError> {
        if !self.lock().insert(id.clone()) {
            return Err(RuntimeError::AlreadyExists { id: id.clone() });
        }
        Ok(Claim { set: self.clone(), id: id.clone() })
    }

    pub(crate) fn contains(&self, id: &InstanceId) -> bool {
        self.lock().contains(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<InstanceId>> {
        self.0.lock().expect("the starting set is never left poisoned")
    }
}

/// An id marked as being started, for as long as it lives.
pub(crate) struct Claim {
    set: StartingSet,
    id: InstanceId,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.set.lock().remove(&self.id);
    }
}
