//! The supervisor: OTP-style restart decisions over a group of children.
//!
//! ractor reports a child's panic or error to its linked supervisor actor; this actor relays it
//! to the scheduler, which then delivers a `ChildFailed` turn here. The decision (restart which
//! children, or escalate) is an effect like any other, so it is traced and deterministic.
//! Restart intensity counts virtual time.

use std::collections::VecDeque;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::kernel::ActorIdx;
use crate::protocol::{Completion, Effect, Identity, SupervisorMsg, Turn};
use crate::scenario::Strategy;

/// A supervisor's fixed policy and its restart history.
pub struct SupervisorState {
    pub identity: Identity,
    pub strategy: Strategy,
    pub max_restarts: u32,
    pub within_us: u64,
    /// Children in start order.
    pub children: Vec<ActorIdx>,
    restarts_at_us: VecDeque<u64>,
}

impl SupervisorState {
    pub fn new(
        identity: Identity,
        strategy: Strategy,
        max_restarts: u32,
        within_us: u64,
        children: Vec<ActorIdx>,
    ) -> Self {
        SupervisorState {
            identity,
            strategy,
            max_restarts,
            within_us,
            children,
            restarts_at_us: VecDeque::new(),
        }
    }

    /// The decision for a failed child at `now_us`.
    pub fn decide(&mut self, child: ActorIdx, now_us: u64) -> Effect {
        while self
            .restarts_at_us
            .front()
            .is_some_and(|t| now_us.saturating_sub(*t) >= self.within_us)
        {
            self.restarts_at_us.pop_front();
        }
        if self.restarts_at_us.len() as u32 >= self.max_restarts {
            return Effect::Escalate {
                reason: format!(
                    "more than {} restarts within {}",
                    self.max_restarts,
                    crate::scenario::units::format_duration_us(self.within_us)
                ),
            };
        }
        self.restarts_at_us.push_back(now_us);
        let position = self.children.iter().position(|c| *c == child).unwrap_or(0);
        let children = match self.strategy {
            Strategy::OneForOne => vec![child],
            Strategy::OneForAll => self.children.clone(),
            Strategy::RestForOne => self.children[position..].to_vec(),
        };
        Effect::Restart { children }
    }
}

/// The ractor actor behind a supervisor.
#[derive(Default)]
pub struct SupervisorActor;

impl Actor for SupervisorActor {
    type Msg = Turn<SupervisorMsg>;
    type State = SupervisorState;
    type Arguments = SupervisorState;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: SupervisorState,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        turn: Self::Msg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisorMsg::ChildFailed { child, .. } = turn.msg;
        let effect = state.decide(child, turn.now_us);
        let identity = &state.identity;
        identity.completions.post(Completion::Ack {
            actor: identity.me,
            incarnation: identity.incarnation,
            effects: vec![effect],
        });
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        // Only failures matter; starts and clean stops are the scheduler's own doing.
        if let SupervisionEvent::ActorFailed(cell, error) = event {
            state.identity.completions.post(Completion::Failed {
                actor_id: cell.get_id(),
                error: error.to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supervisor(strategy: Strategy, max_restarts: u32, within_us: u64) -> SupervisorState {
        let (completions, _mailbox) = crate::kernel::mailbox();
        let identity = Identity {
            me: ActorIdx(1),
            incarnation: 0,
            completions,
        };
        SupervisorState::new(
            identity,
            strategy,
            max_restarts,
            within_us,
            vec![ActorIdx(5), ActorIdx(6), ActorIdx(7)],
        )
    }

    fn restarted(effect: Effect) -> Vec<u32> {
        match effect {
            Effect::Restart { children } => children.into_iter().map(|c| c.0).collect(),
            other => panic!("expected a restart, got {other:?}"),
        }
    }

    #[test]
    fn each_strategy_restarts_exactly_its_children() {
        assert_eq!(
            restarted(supervisor(Strategy::OneForOne, 3, 1_000).decide(ActorIdx(6), 0)),
            vec![6]
        );
        assert_eq!(
            restarted(supervisor(Strategy::OneForAll, 3, 1_000).decide(ActorIdx(6), 0)),
            vec![5, 6, 7]
        );
        assert_eq!(
            restarted(supervisor(Strategy::RestForOne, 3, 1_000).decide(ActorIdx(6), 0)),
            vec![6, 7]
        );
    }

    #[test]
    fn more_restarts_than_the_intensity_within_the_window_escalate() {
        let mut s = supervisor(Strategy::OneForOne, 2, 60_000_000);
        restarted(s.decide(ActorIdx(5), 0));
        restarted(s.decide(ActorIdx(5), 10_000_000));
        assert!(matches!(s.decide(ActorIdx(5), 20_000_000), Effect::Escalate { .. }));
    }

    #[test]
    fn restarts_older_than_the_window_of_virtual_time_are_forgotten() {
        let mut s = supervisor(Strategy::OneForOne, 2, 60_000_000);
        restarted(s.decide(ActorIdx(5), 0));
        restarted(s.decide(ActorIdx(5), 10_000_000));
        // The first restart is exactly 60 s old: outside the window.
        assert_eq!(restarted(s.decide(ActorIdx(5), 60_000_000)), vec![5]);
    }

    #[test]
    fn zero_max_restarts_escalates_at_once() {
        assert!(matches!(
            supervisor(Strategy::OneForOne, 0, 1_000).decide(ActorIdx(5), 0),
            Effect::Escalate { .. }
        ));
    }
}
