//! The Runtime trait and its process backend: supervised instances that outlive the control plane.
