//! What taint label ids stand for: `0` is the user, `1 + t` is tool `t`'s output, `1 + tools + f`
//! is fault `f`. The scheduler stamps labels where they arise; reports name them.

use crate::scenario::Scenario;

/// Names labels for reports: `user`, `tool:NAME`, `fault:NAME`.
#[derive(Debug, Clone, Copy)]
pub struct LabelSpace {
    tools: u32,
    faults: u32,
}

/// What a label stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelSource {
    User,
    Tool(usize),
    Fault(usize),
}

impl LabelSpace {
    pub fn new(scenario: &Scenario) -> LabelSpace {
        LabelSpace {
            tools: scenario.tools.len() as u32,
            faults: scenario.faults.len() as u32,
        }
    }

    /// How many labels the scenario can produce.
    pub fn len(&self) -> u32 {
        1 + self.tools + self.faults
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub const USER: u32 = 0;

    pub fn tool(&self, tool: usize) -> u32 {
        1 + tool as u32
    }

    pub fn fault(&self, fault: usize) -> u32 {
        1 + self.tools + fault as u32
    }

    pub fn source(&self, id: u32) -> LabelSource {
        if id == Self::USER {
            LabelSource::User
        } else if id <= self.tools {
            LabelSource::Tool((id - 1) as usize)
        } else {
            LabelSource::Fault((id - 1 - self.tools) as usize)
        }
    }

    /// The label's name in reports.
    pub fn name(&self, scenario: &Scenario, id: u32) -> String {
        match self.source(id) {
            LabelSource::User => "user".to_owned(),
            LabelSource::Tool(t) => format!("tool:{}", scenario.tools[t].name),
            LabelSource::Fault(f) => format!("fault:{}", scenario.faults[f].name),
        }
    }

    /// The id of a label name (`user`, `tool:NAME`, `fault:NAME`), if the scenario has it.
    pub fn lookup(&self, scenario: &Scenario, name: &str) -> Option<u32> {
        if name == "user" {
            return Some(Self::USER);
        }
        if let Some(tool) = name.strip_prefix("tool:") {
            return scenario.tools.iter().position(|t| t.name == tool).map(|t| self.tool(t));
        }
        let fault = name.strip_prefix("fault:")?;
        scenario
            .faults
            .iter()
            .position(|f| f.name == fault)
            .map(|f| self.fault(f))
    }
}
