//! The reconciler: plan(desired, actual) -> actions, and the applier that carries them out.
