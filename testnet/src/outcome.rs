//! How a run ends, and its exit code.

/// Every assertion that ran passed.
pub const EXIT_PASSED: i32 = 0;
/// An assertion failed.
pub const EXIT_FAILED: i32 = 1;
/// Bad input, or the setup failed (a program did not build, a node did not
/// start, the mesh did not form).
pub const EXIT_ERROR: i32 = 2;
/// This machine cannot run the scenario (no root, no namespaces, no TUN, no
/// aarch64 build, no clang): nothing was run. The automake convention.
pub const EXIT_SKIPPED: i32 = 77;
pub const EXIT_INTERRUPTED: i32 = 130;

/// The end of a run.
pub enum Outcome {
    Passed,
    Failed,
    Skipped(String),
    Error(String),
    Interrupted,
}

impl Outcome {
    pub fn code(&self) -> i32 {
        match self {
            Outcome::Passed => EXIT_PASSED,
            Outcome::Failed => EXIT_FAILED,
            Outcome::Skipped(_) => EXIT_SKIPPED,
            Outcome::Error(_) => EXIT_ERROR,
            Outcome::Interrupted => EXIT_INTERRUPTED,
        }
    }

    /// `PASSED`, `FAILED`, `SKIPPED`, `ERROR` or `INTERRUPTED`.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Passed => "PASSED",
            Outcome::Failed => "FAILED",
            Outcome::Interrupted => "INTERRUPTED",
            Outcome::Error(_) => "ERROR",
            Outcome::Skipped(_) => "SKIPPED",
        }
    }

    /// Why it skipped or failed to run.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Error(why) | Outcome::Skipped(why) => Some(why),
            _ => None,
        }
    }
}
