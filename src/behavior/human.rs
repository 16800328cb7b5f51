//! A human in the loop: a reviewer who approves or rejects the tool calls that need approval.
//! Requests are taken up first come first served, `capacity` at a time; each review takes a
//! latency from the reviewer's distribution and approves with its chance; a request may be
//! missed (never taken up: it sits in the inbox until its tool times it out). Every draw comes
//! from the reviewer's own stream for the conversation, made when the request arrives.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::kernel::{Behavior, HandlerError, RngStream, StreamFamily};
use crate::protocol::{CallKey, ConvId, Directory, Effect, HumanMsg, Injection, Payload, ToolMsg, TurnContext};
use crate::scenario::{HumanIdx, Scenario, ToolIdx};

/// A request in the queue, with what its review will be.
struct Request {
    key: CallKey,
    tool: ToolIdx,
    arrived_us: u64,
    review_us: u64,
    approved: bool,
}

/// The reviewer's state: its streams, the queue, and how many reviews are under way.
pub struct HumanBehavior {
    scenario: Arc<Scenario>,
    directory: Directory,
    human: HumanIdx,
    family: StreamFamily,
    streams: BTreeMap<ConvId, RngStream>,
    queue: VecDeque<Request>,
    reviewing: u32,
}

impl HumanBehavior {
    pub fn new(
        scenario: Arc<Scenario>,
        directory: Directory,
        human: HumanIdx,
        seed: u64,
        incarnation: u32,
    ) -> HumanBehavior {
        let family = StreamFamily::new(seed, &format!("human:{}#{incarnation}", scenario.humans[human].name));
        HumanBehavior {
            scenario,
            directory,
            human,
            family,
            streams: BTreeMap::new(),
            queue: VecDeque::new(),
            reviewing: 0,
        }
    }

    /// Takes up queued requests while a reviewer is free.
    fn take_up(&mut self, now_us: u64, me: crate::kernel::ActorIdx, effects: &mut Vec<Effect>) {
        let capacity = self.scenario.humans[self.human].capacity;
        while self.reviewing < capacity {
            let Some(request) = self.queue.pop_front() else {
                return;
            };
            self.reviewing += 1;
            let (key, tool) = (request.key, request.tool);
            effects.push(Effect::Send {
                to: me,
                delay_us: 0,
                payload: Payload::Human(HumanMsg::Take {
                    key,
                    tool,
                    waited_us: now_us.saturating_sub(request.arrived_us),
                }),
            });
            effects.push(Effect::Send {
                to: me,
                delay_us: request.review_us,
                payload: Payload::Human(HumanMsg::Decided {
                    key,
                    tool,
                    approved: request.approved,
                }),
            });
        }
    }
}

impl Behavior for HumanBehavior {
    type Msg = HumanMsg;
    type Effect = Effect;
    type Injection = Injection;

    fn handle(&mut self, context: &TurnContext, msg: HumanMsg, effects: &mut Vec<Effect>) -> Result<(), HandlerError> {
        match msg {
            HumanMsg::Review { key, tool, .. } => {
                let spec = &self.scenario.humans[self.human];
                let family = &self.family;
                let stream = self
                    .streams
                    .entry(key.conv)
                    .or_insert_with(|| family.member(self.scenario.conversation_key(key.conv)));
                let missed = spec.miss.draw(stream);
                let review_us = spec.latency.sample_us(stream);
                let approved = spec.approve.draw(stream);
                if !missed {
                    self.queue.push_back(Request {
                        key,
                        tool,
                        arrived_us: context.now_us,
                        review_us,
                        approved,
                    });
                }
            }
            HumanMsg::Take { .. } => {}
            HumanMsg::Decided { key, tool, approved } => {
                self.reviewing = self.reviewing.saturating_sub(1);
                effects.push(Effect::Send {
                    to: self.directory.tool(tool),
                    delay_us: 0,
                    payload: Payload::Tool(ToolMsg::Reviewed { key, approved }),
                });
            }
            // A request under review is finished anyway; its decision comes too late.
            HumanMsg::Withdraw { key, tool } => {
                self.queue.retain(|r| (r.key, r.tool) != (key, tool));
            }
        }
        self.take_up(context.now_us, context.me, effects);
        Ok(())
    }
}
