//! The core's bookkeeping of the steps it asked for: each drain step's progress ([`Step`]), the
//! drain itself ([`Drain`]) and a requested scale-in ([`ScaleIn`]).

use tokio::time::Instant;

use super::output::DrainCause;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Skip,
    Pending,
    Running,
    Done,
}

impl Step {
    pub(super) fn want(&mut self) {
        if *self == Step::Skip {
            *self = Step::Pending;
        }
    }
    pub(super) fn busy(self) -> bool {
        matches!(self, Step::Pending | Step::Running)
    }
}

#[derive(Debug, Clone)]
pub(super) struct Drain {
    pub(super) cause: DrainCause,
    pub(super) stop: Step,
    pub(super) dns: Step,
    pub(super) flush: Step,
    pub(super) lifecycle: Step,
    pub(super) exit: bool,
    pub(super) exit_sent: bool,
    /// The outcome of the graceful stop, for the `idle_stop` notification.
    pub(super) saved: Option<bool>,
}

#[derive(Debug, Clone)]
pub(super) struct ScaleIn {
    pub(super) done_at: Option<Instant>,
}
