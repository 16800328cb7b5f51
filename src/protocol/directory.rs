//! Where each scenario entity lives in the actor table: contiguous ranges of [`ActorIdx`].

use crate::kernel::ActorIdx;
use crate::scenario::{ActorKind, Scenario};

/// Maps scenario indices (agent 3, tool 1) to logical actor addresses, and back.
///
/// Layout: the user first, then supervisors, LLMs, tools, agents, guardrails and humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Directory {
    pub supervisors: u32,
    pub llms: u32,
    pub tools: u32,
    pub agents: u32,
    pub guardrails: u32,
    pub humans: u32,
    pub total: u32,
}

impl Directory {
    /// The user (traffic source) is always actor 0.
    pub const USER: ActorIdx = ActorIdx(0);

    pub fn new(scenario: &Scenario) -> Directory {
        let supervisors = 1;
        let llms = supervisors + scenario.supervisors.len() as u32;
        let tools = llms + scenario.llms.len() as u32;
        let agents = tools + scenario.tools.len() as u32;
        let guardrails = agents + scenario.agents.len() as u32;
        let humans = guardrails + scenario.guardrails.len() as u32;
        let total = humans + scenario.humans.len() as u32;
        Directory {
            supervisors,
            llms,
            tools,
            agents,
            guardrails,
            humans,
            total,
        }
    }

    pub fn supervisor(&self, index: usize) -> ActorIdx {
        ActorIdx(self.supervisors + index as u32)
    }

    pub fn llm(&self, index: usize) -> ActorIdx {
        ActorIdx(self.llms + index as u32)
    }

    pub fn tool(&self, index: usize) -> ActorIdx {
        ActorIdx(self.tools + index as u32)
    }

    pub fn agent(&self, index: usize) -> ActorIdx {
        ActorIdx(self.agents + index as u32)
    }

    pub fn guardrail(&self, index: usize) -> ActorIdx {
        ActorIdx(self.guardrails + index as u32)
    }

    pub fn human(&self, index: usize) -> ActorIdx {
        ActorIdx(self.humans + index as u32)
    }

    /// The address of a scenario entity.
    pub fn actor(&self, kind: ActorKind, index: usize) -> ActorIdx {
        match kind {
            ActorKind::Agent => self.agent(index),
            ActorKind::Guardrail => self.guardrail(index),
            ActorKind::Tool => self.tool(index),
            ActorKind::Llm => self.llm(index),
            ActorKind::Supervisor => self.supervisor(index),
            ActorKind::User => Self::USER,
            ActorKind::Human => self.human(index),
        }
    }

    /// The kind and scenario index of an address.
    pub fn locate(&self, actor: ActorIdx) -> (ActorKind, usize) {
        let i = actor.0;
        if i >= self.humans {
            (ActorKind::Human, (i - self.humans) as usize)
        } else if i >= self.guardrails {
            (ActorKind::Guardrail, (i - self.guardrails) as usize)
        } else if i >= self.agents {
            (ActorKind::Agent, (i - self.agents) as usize)
        } else if i >= self.tools {
            (ActorKind::Tool, (i - self.tools) as usize)
        } else if i >= self.llms {
            (ActorKind::Llm, (i - self.llms) as usize)
        } else if i >= self.supervisors {
            (ActorKind::Supervisor, (i - self.supervisors) as usize)
        } else {
            (ActorKind::User, 0)
        }
    }

    /// The logical id printed in traces: `agent:triage`, `llm:gpt`, `user`.
    pub fn logical_id(&self, scenario: &Scenario, actor: ActorIdx) -> String {
        let (kind, index) = self.locate(actor);
        let name = match kind {
            ActorKind::Agent => &scenario.agents[index].name,
            ActorKind::Guardrail => &scenario.guardrails[index].name,
            ActorKind::Tool => &scenario.tools[index].name,
            ActorKind::Llm => &scenario.llms[index].name,
            ActorKind::Supervisor => &scenario.supervisors[index].name,
            ActorKind::Human => &scenario.humans[index].name,
            ActorKind::User => return "user".to_owned(),
        };
        format!("{}:{name}", kind.prefix())
    }
}
