//! The drain: what the core does, step by step, when the instance or the agent is going away
//! (the game saved, DNS back, the last metrics, the lifecycle hook, the exit).

use tokio::time::Instant;

use super::steps::{Drain, Step};
use super::{Action, Alert, Core, DrainCause, Output, WakeOutcome};

impl Core {
    pub(super) fn start_drain(&mut self, cause: DrainCause) {
        let p = &self.policy;
        // An instance seen only in the warm pool (prepared, stopped into the pool, or
        // terminated from it) has no game to save and no record to revert: nothing visible.
        // Without that evidence (an unknown lifecycle state, a running game) it saves.
        let pool_only = self.pooled && !self.served && !self.container_running;
        let stops_game = cause != DrainCause::AgentStop && !pool_only;
        let drain = self.drain.get_or_insert(Drain {
            cause,
            stop: Step::Skip,
            dns: Step::Skip,
            flush: Step::Skip,
            lifecycle: Step::Skip,
            exit: false,
            exit_sent: false,
            saved: None,
        });
        if stops_game {
            drain.stop.want();
            if p.dns {
                drain.dns.want();
            }
        }
        if cause == DrainCause::Terminating {
            drain.cause = cause;
            if p.lifecycle_hook {
                drain.lifecycle.want();
            }
        }
        // A Spot notice alone leaves the agent running until the instance goes away or the
        // termination arrives; every other cause ends with the agent's exit.
        if cause != DrainCause::SpotInterruption {
            drain.exit = true;
            if p.metrics_interval.is_some() {
                drain.flush.want();
            }
        }
    }

    pub(super) fn advance_drain(&mut self, now: Instant, out: &mut Output) {
        let heartbeat = self.policy.lifecycle_hook;
        let flush_now = self
            .drain
            .as_ref()
            .is_some_and(|d| d.flush == Step::Pending && !d.stop.busy());
        let batch = flush_now.then(|| self.take_metrics(now));
        let Some(d) = self.drain.as_mut() else {
            return;
        };
        if d.stop == Step::Pending {
            d.stop = Step::Running;
            out.actions.push(Action::GracefulStop {
                cause: d.cause,
                heartbeat: heartbeat && d.lifecycle.busy(),
            });
            // The game stops for the instance's end: this wake is over. Its outcome goes on
            // the group (for `status`) and into the next metrics (for the dashboard).
            if !std::mem::replace(&mut self.wake_told, true) {
                let wake = WakeOutcome {
                    joined: self.someone_came,
                    up_for: now.saturating_duration_since(self.booted),
                };
                self.wake_unpublished = Some(wake);
                out.actions.push(Action::RecordWakeOutcome(wake));
            }
        }
        // DNS goes back to the placeholder while the game saves, not after: a lookup during the
        // save must not send a new player to a server that is about to stop (found by the cloud
        // twin's story 4). Players already connected keep their address.
        if d.dns == Step::Pending {
            d.dns = Step::Running;
            out.actions.push(Action::RevertDns);
        }
        if d.stop.busy() {
            return;
        }
        // The game is saved (or there was none): now the idle stop can be told, with the
        // outcome of the save. Only for a termination: the group acted on the scale-in.
        if d.cause == DrainCause::Terminating
            && let Some((idle_for, unused)) = self.idle_stop_pending.take()
        {
            out.actions.push(Action::Alert(Alert::IdleStop {
                idle_for,
                unused,
                uptime: now.saturating_duration_since(self.booted),
                saved: d.saved,
            }));
        }
        if let Some(batch) = batch {
            d.flush = Step::Running;
            out.actions
                .push(Action::PublishMetrics { batch, flush: true });
        }
        if d.dns.busy() || d.flush.busy() {
            return;
        }
        if d.lifecycle == Step::Pending {
            d.lifecycle = Step::Running;
            out.actions.push(Action::CompleteLifecycle);
        }
        if d.lifecycle.busy() {
            return;
        }
        if d.exit && !d.exit_sent {
            d.exit_sent = true;
            out.actions.push(Action::Exit);
        }
    }
}
