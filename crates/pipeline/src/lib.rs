//! The parts of Drover's CI pipeline that do not need the server.
//!
//! - [`spec`]: the data model of the `pipeline:` section of `drover.yml` (the test step and the
//!   stages a branch deploys to), with pure validation and branch matching, and the name of a
//!   branch's preview app.
//! - [`run_tests`]: runs the test commands inside the exact unpacked artifact that will be
//!   deployed, in their own process groups, with a clean environment and a deadline.
//! - [`junit`]: parses the JUnit XML reports those commands leave in `$DROVER_REPORTS`.
//!
//! Everything here is synchronous: the server calls [`run_tests`] from a blocking task. This
//! crate knows nothing of SQLite, HTTP, tokio or git: the server decides when a pipeline runs,
//! records its results and turns branch pushes into calls here. Branch names, commit messages
//! and other user-controlled text never reach a command line; only the app author's own test
//! commands are run with `sh -c`.

mod command;
mod error;
pub mod junit;
mod reports;
mod runner;
/// The `pipeline:` spec types live in `model`, so an `AppSpec` can carry them.
pub use model::pipeline as spec;

pub use error::PipelineError;
pub use junit::{Outcome, TestCase, TestReport};
pub use runner::{run_tests, CommandStatus, ExitSummary, TestOutcome, TestStep};
pub use spec::{preview_app_name, Approval, BranchPattern, PatternError, PipelineSpec, SpecError, StageSpec, TestSpec};
