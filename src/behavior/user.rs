//! The user: the traffic source. It opens conversations (scripted or Poisson arrivals), receives
//! the answers, and — for traffic that names a `[[user]]` — goes on talking: a scripted user says
//! its next line, a rules user follows its rules, a model-driven user asks its model. Each
//! follow-up goes to the agent that answered last, with the conversation so far, as the OpenAI
//! Agents SDK's `to_input_list()` and `last_agent` carry a dialogue into the next run.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::route::GuardRoute;
use crate::kernel::{Behavior, HandlerError, RngStream, StreamFamily};
use crate::llm::tokens;
use crate::protocol::transcript::REPLY_PRIMING_TOKENS;
use crate::protocol::{
    AgentMsg, AnswerStatus, Caller, ConvId, Directory, Effect, Injection, LlmMsg, LlmRequest, ModelAnswer, ModelReply,
    Origin, Payload, ReplyTo, ToolCall, ToolMsg, Transcript, TurnContext, UserEnding, UserMsg,
};
use crate::scenario::expr::{Context, Value, Var};
use crate::scenario::guardrail::Stage;
use crate::scenario::user::{UserAct, UserStep};
use crate::scenario::{AgentIdx, Scenario, ToolIdx, Traffic, UserIdx, UserKind};

/// One conversation whose user talks back, between the user's turns.
struct Dialogue {
    user: UserIdx,
    /// User messages said so far, the opening one included.
    turns: u32,
    /// A scripted user's next step.
    next_step: usize,
    /// The user's own stream for this conversation: step chances and think times.
    stream: RngStream,
    /// Numbers the user simulator's calls; a reply with another number is stale.
    call_seq: u32,
    /// The agent that answered last: the next message goes to it.
    agent: AgentIdx,
    /// The conversation so far, as it came back with the last answer.
    transcript: Transcript,
}

/// The user's state: one random stream per traffic source (arrivals and opening messages), one
/// family per `[[user]]`, the dialogues going on, and each open conversation's saga log: the
/// successful calls to tools that name a compensation, in the order they were made.
pub struct UserBehavior {
    scenario: Arc<Scenario>,
    directory: Directory,
    streams: Vec<RngStream>,
    families: Vec<StreamFamily>,
    dialogues: BTreeMap<ConvId, Dialogue>,
    sagas: BTreeMap<ConvId, Saga>,
    /// Whether any tool names a compensation (else no saga is kept).
    has_sagas: bool,
}

/// One conversation's saga: the steps to undo should it end badly, and how it ended.
#[derive(Default)]
struct Saga {
    /// Logged steps not undone or settled: (step number, tool, call), in order.
    steps: Vec<(u32, ToolIdx, ToolCall)>,
    /// Steps logged so far: the next one's number.
    logged: u32,
    /// `Some(true)`: it ended well, so later steps stand; `Some(false)`: badly, so later steps
    /// are undone at once.
    ended_well: Option<bool>,
}

impl UserBehavior {
    pub fn new(scenario: Arc<Scenario>, directory: Directory, seed: u64) -> UserBehavior {
        let streams = scenario
            .traffic_names()
            .iter()
            .map(|name| RngStream::new(seed, name))
            .collect();
        let families = scenario
            .users
            .iter()
            .map(|user| StreamFamily::new(seed, &format!("user:{}", user.name)))
            .collect();
        UserBehavior {
            has_sagas: scenario.has_compensations(),
            scenario,
            directory,
            streams,
            families,
            dialogues: BTreeMap::new(),
            sagas: BTreeMap::new(),
        }
    }

    /// A successful call to a tool with a compensation: logged, with a timer if the tool gives
    /// an unfinished conversation a time limit. A step that comes after the conversation ended
    /// badly is undone at once; after it ended well, it stands.
    fn log_step(
        &mut self,
        context: &TurnContext,
        conv: ConvId,
        tool: ToolIdx,
        call: ToolCall,
        effects: &mut Vec<Effect>,
    ) {
        let saga = self.sagas.entry(conv).or_default();
        let step = saga.logged;
        saga.logged += 1;
        match saga.ended_well {
            Some(false) => return self.undo(conv, (tool, call), step, effects),
            Some(true) => return,
            None => saga.steps.push((step, tool, call)),
        }
        if let Some(after_us) = self.scenario.tools[tool].compensation.and_then(|c| c.after_us) {
            effects.push(Effect::Send {
                to: context.me,
                delay_us: after_us,
                payload: Payload::User(UserMsg::CompensationDue { conv }),
            });
        }
    }

    /// The conversation ended badly: every logged step is undone, the latest first, each by its
    /// tool's compensating tool with the step's arguments.
    fn compensate(&mut self, conv: ConvId, effects: &mut Vec<Effect>) {
        if !self.has_sagas {
            return;
        }
        let saga = self.sagas.entry(conv).or_default();
        if saga.ended_well.is_none() {
            saga.ended_well = Some(false);
        }
        let steps = std::mem::take(&mut saga.steps);
        for (step, tool, call) in steps.into_iter().rev() {
            self.undo(conv, (tool, call), step, effects);
        }
    }

    /// The conversation ended well (unless it had already ended badly): its saga is done.
    fn settle(&mut self, conv: ConvId) {
        if !self.has_sagas {
            return;
        }
        let saga = self.sagas.entry(conv).or_default();
        saga.ended_well.get_or_insert(true);
        saga.steps.clear();
    }

    /// Asks the compensating tool to undo step number `step` of `conv`'s saga.
    fn undo(&self, conv: ConvId, (of, call): (ToolIdx, ToolCall), step: u32, effects: &mut Vec<Effect>) {
        let Some(compensation) = self.scenario.tools[of].compensation else {
            return;
        };
        effects.push(Effect::Send {
            to: self.directory.tool(compensation.tool),
            delay_us: 0,
            payload: Payload::Tool(ToolMsg::Compensate {
                conv,
                of,
                call: Box::new(call),
                step,
            }),
        });
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
        self.say(conv, agent, Arc::from(text), Transcript::new(), delay_us, effects);
        if let Some(user) = self.scenario.traffic[traffic].user() {
            let stream = self.families[user].member(self.scenario.conversation_key(conv));
            self.dialogues.insert(
                conv,
                Dialogue {
                    user,
                    turns: 1,
                    next_step: 0,
                    stream,
                    call_seq: 0,
                    agent,
                    transcript: Transcript::new(),
                },
            );
        }
    }

    /// Sends a user message to `agent`, through the input guardrails.
    fn say(
        &self,
        conv: ConvId,
        agent: AgentIdx,
        text: Arc<str>,
        history: Transcript,
        delay_us: u64,
        effects: &mut Vec<Effect>,
    ) {
        let start = Payload::Agent(AgentMsg::Start {
            conv,
            text,
            origin: Origin::User,
            reply_to: ReplyTo::User,
            history,
            handoffs: 0,
        });
        GuardRoute {
            stage: Stage::Input,
            conv,
            agent,
            tool: None,
            dest: self.directory.agent(agent),
        }
        .send(&self.scenario, &self.directory, start, None, delay_us, effects);
    }

    fn next_arrival_us(&mut self, traffic: usize, rate_milli_per_hour: u64) -> u64 {
        let mean_us = 3_600_000_000_000.0 / rate_milli_per_hour as f64;
        self.streams[traffic].exponential_us(mean_us)
    }

    /// The agent answered a turn: the user decides what comes next.
    fn on_answer(
        &mut self,
        conv: ConvId,
        status: AnswerStatus,
        from: AgentIdx,
        history: Transcript,
        effects: &mut Vec<Effect>,
    ) {
        // A turn that did not end in an answer (failed, blocked, out of turns …) ends the
        // conversation the way the turn ended; a human who took it over decides what to undo.
        if !matches!(status, AnswerStatus::Answered | AnswerStatus::Escalated) {
            self.dialogues.remove(&conv);
            return self.compensate(conv, effects);
        }
        let Some(mut dialogue) = self.dialogues.remove(&conv) else {
            // Without a user who talks back, the answer ends the conversation: its saga is done.
            return self.settle(conv);
        };
        if status != AnswerStatus::Answered {
            return self.settle(conv);
        }
        dialogue.agent = from;
        dialogue.transcript = history;
        let scenario = self.scenario.clone();
        let user = &scenario.users[dialogue.user];
        let act = match &user.kind {
            UserKind::Scripted(steps) => {
                let mut act = None;
                while act.is_none() && dialogue.next_step < steps.len() {
                    let step = &steps[dialogue.next_step];
                    dialogue.next_step += 1;
                    if takes(step, conv, &scenario, &mut dialogue) {
                        act = Some(step.act.clone());
                    }
                }
                act
            }
            UserKind::Rules(rules) => rules
                .iter()
                .find(|step| takes(step, conv, &scenario, &mut dialogue))
                .map(|step| step.act.clone()),
            UserKind::Model { llm, .. } => {
                if dialogue.turns >= user.max_turns {
                    end(conv, &dialogue, UserEnding::MaxUserTurns, effects);
                } else {
                    self.ask_model(conv, *llm, dialogue, effects);
                }
                return;
            }
        };
        // Nothing more to say: the conversation ends with this answer.
        let Some(act) = act else {
            return self.settle(conv);
        };
        let text: Arc<str> = match act {
            UserAct::GiveUp => return end(conv, &dialogue, UserEnding::Abandoned, effects),
            UserAct::Done => return end(conv, &dialogue, UserEnding::Resolved, effects),
            UserAct::Say(template) => {
                let context = DialogueContext::new(&scenario, conv, &dialogue);
                template.render_shared(&context, &|_| None)
            }
            UserAct::Insist => Arc::from(dialogue.transcript.last_user()),
            UserAct::Contradict(text) => Arc::from(text),
        };
        self.follow_up(conv, dialogue, text, effects);
    }

    /// The user's next message, after its think time; or the end, if it has said all it may.
    fn follow_up(&mut self, conv: ConvId, mut dialogue: Dialogue, text: Arc<str>, effects: &mut Vec<Effect>) {
        let user = &self.scenario.users[dialogue.user];
        if dialogue.turns >= user.max_turns {
            return end(conv, &dialogue, UserEnding::MaxUserTurns, effects);
        }
        dialogue.turns += 1;
        let think_us = user.think.sample_us(&mut dialogue.stream);
        let history = dialogue.transcript.clone();
        self.say(conv, dialogue.agent, text, history, think_us, effects);
        self.dialogues.insert(conv, dialogue);
    }

    /// Asks the user simulator's model for the user's next message: its persona as the system
    /// message, the dialogue with the roles swapped.
    fn ask_model(&mut self, conv: ConvId, llm: usize, mut dialogue: Dialogue, effects: &mut Vec<Effect>) {
        let caller = Caller::User(dialogue.user);
        let transcript = dialogue.transcript.flipped();
        let instruction_tokens = tokens::instruction_tokens(&self.scenario, caller);
        dialogue.call_seq += 1;
        let empty: Arc<str> = Arc::from("");
        let request = LlmRequest {
            conv,
            caller,
            call_seq: dialogue.call_seq,
            attempt: 1,
            turn: dialogue.turns,
            tool_calls: 0,
            input_tokens: instruction_tokens
                .saturating_add(transcript.tokens())
                .saturating_add(REPLY_PRIMING_TOKENS),
            instruction_tokens,
            transcript,
            next_call_id: 0,
            origin: Origin::User,
            last_tool: empty.clone(),
            last_tool_output: empty.clone(),
            delegations: 0,
            results: empty.clone(),
            feedback: empty,
            via: Vec::new(),
        };
        effects.push(Effect::Send {
            to: self.directory.llm(llm),
            delay_us: 0,
            payload: Payload::Llm(LlmMsg::Complete(Box::new(request))),
        });
        self.dialogues.insert(conv, dialogue);
    }

    /// The user simulator answered: a stop marker ends the dialogue, anything else is said.
    fn on_model_reply(&mut self, conv: ConvId, reply: ModelReply, effects: &mut Vec<Effect>) {
        let Some(dialogue) = self.dialogues.remove(&conv) else {
            return;
        };
        if reply.call_seq != dialogue.call_seq {
            self.dialogues.insert(conv, dialogue);
            return;
        }
        let UserKind::Model { stop, give_up, .. } = &self.scenario.users[dialogue.user].kind else {
            return;
        };
        let text = match &reply.answer {
            ModelAnswer::Text(text) => text.clone(),
            // A simulator that fails, or answers with anything but text, has left the dialogue.
            _ => return end(conv, &dialogue, UserEnding::Abandoned, effects),
        };
        if text.contains(stop.as_str()) {
            return end(conv, &dialogue, UserEnding::Resolved, effects);
        }
        if give_up.as_deref().is_some_and(|marker| text.contains(marker)) {
            return end(conv, &dialogue, UserEnding::Abandoned, effects);
        }
        self.follow_up(conv, dialogue, text, effects);
    }
}

/// Whether the user takes `step` now: its condition holds and its chance comes up.
fn takes(step: &UserStep, conv: ConvId, scenario: &Scenario, dialogue: &mut Dialogue) -> bool {
    if let Some(when) = &step.when {
        if !when.eval(&DialogueContext::new(scenario, conv, dialogue)) {
            return false;
        }
    }
    step.probability.is_none_or(|p| p.draw(&mut dialogue.stream))
}

/// The user ends the conversation: a message to itself, so the trace shows it.
fn end(conv: ConvId, dialogue: &Dialogue, ending: UserEnding, effects: &mut Vec<Effect>) {
    effects.push(Effect::Send {
        to: Directory::USER,
        delay_us: 0,
        payload: Payload::User(UserMsg::End {
            conv,
            ending,
            turns: dialogue.turns,
        }),
    });
}

/// What a user's conditions and templates read: the dialogue so far.
struct DialogueContext<'a> {
    scenario: &'a Scenario,
    conv: ConvId,
    turns: u32,
    agent: AgentIdx,
    transcript: &'a Transcript,
    history: OnceCell<String>,
    tools_called: OnceCell<String>,
}

impl<'a> DialogueContext<'a> {
    fn new(scenario: &'a Scenario, conv: ConvId, dialogue: &'a Dialogue) -> DialogueContext<'a> {
        DialogueContext {
            scenario,
            conv,
            turns: dialogue.turns,
            agent: dialogue.agent,
            transcript: &dialogue.transcript,
            history: OnceCell::new(),
            tools_called: OnceCell::new(),
        }
    }
}

impl Context for DialogueContext<'_> {
    fn var(&self, var: Var) -> Value<'_> {
        let transcript = self.transcript;
        match var {
            Var::Turn | Var::UserTurn => Value::Int(self.turns as i64),
            Var::ToolCalls => Value::Int(transcript.calls_made() as i64),
            Var::User => Value::Str(transcript.first_user()),
            Var::LastUser => Value::Str(transcript.last_user()),
            Var::Answer => Value::Str(transcript.last_answer()),
            Var::History => Value::Str(self.history.get_or_init(|| transcript.text())),
            Var::ToolsCalled => Value::Str(self.tools_called.get_or_init(|| transcript.tools_called())),
            Var::Agent => Value::Str(&self.scenario.agents[self.agent].name),
            Var::Conversation => Value::Int(self.conv as i64),
            Var::From => Value::Str("user"),
            Var::Delegations => Value::Int(0),
            Var::LastTool | Var::LastToolOutput | Var::Results | Var::Text | Var::Feedback => Value::Str(""),
        }
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
                        Traffic::Script { to, items, .. } => {
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
            UserMsg::Answer {
                conv,
                status,
                from,
                history,
                ..
            } => self.on_answer(conv, status, from, history, effects),
            UserMsg::LlmReply { conv, reply } => self.on_model_reply(conv, reply, effects),
            // The user left (its own decision, or `user.abandon`): nothing more is said.
            UserMsg::End { conv, ending, .. } => {
                self.dialogues.remove(&conv);
                match ending {
                    UserEnding::Resolved => self.settle(conv),
                    UserEnding::Abandoned | UserEnding::MaxUserTurns => self.compensate(conv, effects),
                }
            }
            UserMsg::Compensable { conv, tool, call } => self.log_step(context, conv, tool, *call, effects),
            // Still open when its time is up: taken as lost (a crash, a hang), and undone.
            UserMsg::CompensationDue { conv } => self.compensate(conv, effects),
            // The compensation's outcome is the observer's to count; nothing more to do here.
            UserMsg::Compensated { .. } => {}
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
