//! Health probes and the healthy/unhealthy state machine.
