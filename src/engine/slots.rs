//! The actor table: one slot per logical actor (its id, kind, supervision links, incarnation and
//! live ractor handle), and how an actor is spawned under its supervisor.

use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorId, ActorRef};

use super::RunError;
use crate::behavior::{
    AgentBehavior, GuardrailBehavior, HumanBehavior, LlmBehavior, SupervisorActor, SupervisorState, ToolBehavior,
    UserBehavior,
};
use crate::kernel::{ActorIdx, Behavior, SimActor};
use crate::llm::backend::Backends;
use crate::protocol::{
    AgentMsg, Checkpoint, Directory, Effect, GuardrailMsg, HumanMsg, Identity, Injection, LlmMsg, SupervisorMsg,
    ToolMsg, Turn, UserMsg,
};
use crate::scenario::{ActorKind, Child, Scenario};

/// A live ractor handle, typed by actor kind.
pub(super) enum Handle {
    Agent(ActorRef<Turn<AgentMsg>>),
    Llm(ActorRef<Turn<LlmMsg>>),
    Tool(ActorRef<Turn<ToolMsg>>),
    User(ActorRef<Turn<UserMsg>>),
    Supervisor(ActorRef<Turn<SupervisorMsg>>),
    Guardrail(ActorRef<Turn<GuardrailMsg>>),
    Human(ActorRef<Turn<HumanMsg>>),
}

impl Handle {
    pub(super) fn cell(&self) -> ActorCell {
        match self {
            Handle::Agent(r) => r.get_cell(),
            Handle::Llm(r) => r.get_cell(),
            Handle::Tool(r) => r.get_cell(),
            Handle::User(r) => r.get_cell(),
            Handle::Supervisor(r) => r.get_cell(),
            Handle::Guardrail(r) => r.get_cell(),
            Handle::Human(r) => r.get_cell(),
        }
    }
}

/// One logical actor and its current incarnation.
pub(super) struct Slot {
    pub logical_id: Arc<str>,
    /// `logical_id` as a JSON string literal, escaped once for every delivery's trace line.
    pub logical_id_json: Box<[u8]>,
    pub kind: ActorKind,
    /// The actor's index among the scenario's entities of its kind.
    pub index: usize,
    pub handle: Option<Handle>,
    pub cell_id: Option<ActorId>,
    pub incarnation: u32,
    pub supervisor: Option<ActorIdx>,
    /// For supervisors: children in start order.
    pub children: Vec<ActorIdx>,
    pub received: u64,
    /// The last checkpoint of a `persist = true` agent, for its next incarnation.
    pub checkpoint: Option<Checkpoint>,
    /// A restarted actor is down until then (its supervisor's restart backoff).
    pub down_until_us: u64,
}

/// The actor table: logical ids, kinds and the supervision tree.
pub(super) fn build_slots(scenario: &Scenario, directory: &Directory) -> Vec<Slot> {
    let mut slots: Vec<Slot> = (0..directory.total)
        .map(|i| {
            let idx = ActorIdx(i);
            let (kind, index) = directory.locate(idx);
            let logical_id = directory.logical_id(scenario, idx);
            Slot {
                logical_id_json: Box::from(crate::trace::record::json_string(&logical_id).as_bytes()),
                logical_id: Arc::from(logical_id),
                kind,
                index,
                handle: None,
                cell_id: None,
                incarnation: 0,
                supervisor: None,
                children: Vec::new(),
                received: 0,
                checkpoint: None,
                down_until_us: 0,
            }
        })
        .collect();
    let root = directory.supervisor(0);
    slots[Directory::USER.index()].supervisor = Some(root);
    for (s, spec) in scenario.supervisors.iter().enumerate() {
        let me = directory.supervisor(s);
        for child in &spec.children {
            let idx = match *child {
                Child::Actor { kind, index } => directory.actor(kind, index),
                Child::Supervisor(index) => directory.supervisor(index),
            };
            slots[idx.index()].supervisor = Some(me);
            slots[me.index()].children.push(idx);
        }
    }
    slots
}

/// What every spawn needs besides the slot.
pub(super) struct SpawnContext<'a> {
    pub scenario: &'a Arc<Scenario>,
    pub directory: Directory,
    pub seed: u64,
    pub backends: &'a Arc<Backends>,
    pub world: &'a crate::protocol::SharedWorld,
}

/// Spawns the actor of `slot` (its current incarnation) under `parent`.
pub(super) async fn spawn(
    context: &SpawnContext<'_>,
    slot: &Slot,
    identity: Identity,
    parent: Option<ActorCell>,
) -> Result<Handle, RunError> {
    let (scenario, directory, seed) = (context.scenario.clone(), context.directory, context.seed);
    let (index, incarnation) = (slot.index, slot.incarnation);
    Ok(match slot.kind {
        ActorKind::Agent => {
            let checkpoint = slot.checkpoint.clone();
            let behavior = AgentBehavior::new(scenario, directory, index, seed, incarnation, checkpoint);
            Handle::Agent(start_behavior(behavior, identity, parent).await?)
        }
        ActorKind::Llm => {
            let backends = context.backends.clone();
            let behavior = LlmBehavior::new(scenario, directory, index, seed, incarnation, backends);
            Handle::Llm(start_behavior(behavior, identity, parent).await?)
        }
        ActorKind::Tool => {
            let world = context.world.clone();
            let behavior = ToolBehavior::new(scenario, directory, index, seed, incarnation, world);
            Handle::Tool(start_behavior(behavior, identity, parent).await?)
        }
        ActorKind::Guardrail => {
            let behavior = GuardrailBehavior::new(scenario, directory, index, seed, incarnation);
            Handle::Guardrail(start_behavior(behavior, identity, parent).await?)
        }
        ActorKind::Human => {
            let behavior = HumanBehavior::new(scenario, directory, index, seed, incarnation);
            Handle::Human(start_behavior(behavior, identity, parent).await?)
        }
        ActorKind::User => {
            Handle::User(start_behavior(UserBehavior::new(scenario, directory, seed), identity, parent).await?)
        }
        ActorKind::Supervisor => {
            let spec = &scenario.supervisors[index];
            let state = SupervisorState::new(
                identity,
                spec.strategy,
                spec.max_restarts,
                spec.within_us,
                slot.children.clone(),
            );
            Handle::Supervisor(start(SupervisorActor, state, parent).await?)
        }
    })
}

async fn start_behavior<B>(
    behavior: B,
    identity: Identity,
    parent: Option<ActorCell>,
) -> Result<ActorRef<Turn<B::Msg>>, RunError>
where
    B: Behavior<Effect = Effect, Injection = Injection>,
{
    start(SimActor::<B>::default(), (behavior, identity), parent).await
}

async fn start<A: Actor>(
    actor: A,
    args: A::Arguments,
    parent: Option<ActorCell>,
) -> Result<ActorRef<A::Msg>, RunError> {
    let spawned = match parent {
        Some(parent) => Actor::spawn_linked(None, actor, args, parent).await,
        None => Actor::spawn(None, actor, args).await,
    };
    spawned
        .map(|(actor_ref, _join)| actor_ref)
        .map_err(|e| RunError::Internal(format!("an actor failed to start: {e}")))
}
