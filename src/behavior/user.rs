//! The user: the traffic source. It opens conversations (scripted or Poisson arrivals) and
//! receives the answers.

use std::sync::Arc;

use super::route::GuardRoute;
use crate::kernel::{Behavior, HandlerError, RngStream};
use crate::protocol::{AgentMsg, ConvId, Directory, Effect, Injection, Origin, Payload, ReplyTo, TurnContext, UserMsg};
use crate::scenario::guardrail::Stage;
use crate::scenario::{Scenario, Traffic};

/// The user's state: one random stream per traffic source.
pub struct UserBehavior {
    scenario: Arc<Scenario>,
    directory: Directory,
    streams: Vec<RngStream>,
}

impl UserBehavior {
    pub fn new(scenario: Arc<Scenario>, directory: Directory, seed: u64) -> UserBehavior {
        let streams = scenario
            .traffic_names()
            .iter()
            .map(|name| RngStream::new(seed, name))
            .collect();
        UserBehavior {
            scenario,
            directory,
            streams,
        }
    }

    /// Opens conversation `index` of traffic source `traffic` with one of `to`, taking turns.
    fn open(
        &mut self,
        (traffic, index): (usize, u32),
        to: &[usize],
        text: &str,
        delay_us: u64,
        effects: &mut Vec<Effect>,
    ) {
        let conv: ConvId = self.scenario.first_conversation(traffic) + index;
        let agent = to[index as usize % to.len()];
        let start = Payload::Agent(AgentMsg::Start {
            conv,
            text: Arc::from(text),
            origin: Origin::User,
            reply_to: ReplyTo::User,
            history: crate::protocol::Transcript::new(),
            handoffs: 0,
        });
        let dest = self.directory.agent(agent);
        GuardRoute {
            stage: Stage::Input,
            conv,
            agent,
            tool: None,
            dest,
        }
        .send(&self.scenario, &self.directory, start, None, delay_us, effects);
    }

    fn next_arrival_us(&mut self, traffic: usize, rate_milli_per_hour: u64) -> u64 {
        let mean_us = 3_600_000_000_000.0 / rate_milli_per_hour as f64;
        self.streams[traffic].exponential_us(mean_us)
    }
}

impl Behavior for UserBehavior {
    type Msg = UserMsg;
    type Effect = Effect;
    type Injection = Injection;

    fn handle(&mut self, context: &TurnContext, msg: UserMsg, effects: &mut Vec<Effect>) -> Result<(), HandlerError> {
        let scenario = self.scenario.clone();
        match msg {
            UserMsg::Begin => {
                for (i, traffic) in scenario.traffic.iter().enumerate() {
                    match traffic {
                        Traffic::Script { to, items } => {
                            for (index, (at_us, text)) in items.iter().enumerate() {
                                self.open((i, index as u32), to, text, *at_us, effects);
                            }
                        }
                        Traffic::Poisson {
                            rate_milli_per_hour,
                            conversations,
                            start_us,
                            ..
                        } => {
                            if *conversations > 0 {
                                let delay_us = start_us + self.next_arrival_us(i, *rate_milli_per_hour);
                                effects.push(arrive(context, i as u32, 0, delay_us));
                            }
                        }
                    }
                }
            }
            UserMsg::Arrive { traffic, index } => {
                let Some(Traffic::Poisson {
                    to,
                    rate_milli_per_hour,
                    conversations,
                    messages,
                    ..
                }) = scenario.traffic.get(traffic as usize)
                else {
                    return Err(HandlerError(format!(
                        "arrival for traffic {traffic}, which is not a poisson source"
                    )));
                };
                let pick = self.streams[traffic as usize].below(messages.len() as u64) as usize;
                self.open((traffic as usize, index), to, &messages[pick], 0, effects);
                if index + 1 < *conversations {
                    let delay_us = self.next_arrival_us(traffic as usize, *rate_milli_per_hour);
                    effects.push(arrive(context, traffic, index + 1, delay_us));
                }
            }
            UserMsg::Answer { .. } => {}
        }
        Ok(())
    }
}

fn arrive(context: &TurnContext, traffic: u32, index: u32, delay_us: u64) -> Effect {
    Effect::Send {
        to: context.me,
        delay_us,
        payload: Payload::User(UserMsg::Arrive { traffic, index }),
    }
}
