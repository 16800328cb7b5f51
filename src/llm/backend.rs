//! Where each model of a run gets its answers: the mock (nothing here), a live client whose
//! calls are recorded, or a replayer over a cassette. One `Backends` per run, shared by every
//! incarnation of every model actor.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::cassette::{Cassette, Entry, Position, ReplaySummary, Replayer};
use super::live::{Exchange, LiveClient};
use crate::scenario::{CassetteMatch, LlmIdx, LlmMode, Scenario};

/// How the caller wants live models answered.
#[derive(Debug, Clone, Default)]
pub struct CassetteOptions {
    /// Answer live and replay models from this cassette instead of the network or the
    /// cassette the scenario names.
    pub replay: Option<Arc<Cassette>>,
    /// Overrides every model's `cassette_match`.
    pub matching: Option<CassetteMatch>,
}

/// The answer source of each live or replayed model.
pub struct Backends {
    live: BTreeMap<LlmIdx, LiveClient>,
    replayer: Option<Replayer>,
    recorded: Mutex<Vec<Entry>>,
    /// Set (to the signal's number) when the run is interrupted: live calls stop waiting.
    interrupt: Option<Arc<AtomicUsize>>,
}

/// What the model I/O of a run left behind.
#[derive(Debug, Clone, Default)]
pub struct CassetteOutcome {
    /// Live calls, in call order, to be written as the run's cassette.
    pub recorded: Vec<Entry>,
    /// The cassette that answered, and what the replay found.
    pub replay: Option<(String, ReplaySummary)>,
}

impl Backends {
    /// Sets up the models of `scenario`: live clients (reading their keys), or a replayer over
    /// the given cassette or the ones the scenario names.
    pub fn new(scenario: &Scenario, options: &CassetteOptions) -> Result<Backends, String> {
        let mut live = BTreeMap::new();
        let mut policies = BTreeMap::new();
        let mut named: Vec<std::path::PathBuf> = Vec::new();
        for (index, llm) in scenario.llms.iter().enumerate() {
            let replayed = match llm.mode {
                LlmMode::Mock => continue,
                LlmMode::Live => options.replay.is_some(),
                LlmMode::Replay => true,
            };
            if replayed {
                policies.insert(llm.name.clone(), options.matching.unwrap_or(llm.cassette_match));
                if let Some(path) = &llm.cassette {
                    if !named.contains(path) {
                        named.push(path.clone());
                    }
                }
            } else {
                live.insert(index, LiveClient::new(&llm.name, &llm.endpoint)?);
            }
        }
        let replayer = if policies.is_empty() {
            None
        } else if let Some(cassette) = &options.replay {
            Some(Replayer::new(cassette, policies))
        } else {
            let mut merged = Cassette::default();
            for path in &named {
                let cassette = Cassette::load(path).map_err(|e| e.to_string())?;
                merged.entries.extend(cassette.entries);
                merged.file = cassette.file;
            }
            Some(Replayer::new(&merged, policies))
        };
        Ok(Backends {
            live,
            replayer,
            recorded: Mutex::new(Vec::new()),
            interrupt: None,
        })
    }

    /// Live calls stop waiting once `signal` is set.
    pub fn interrupted_by(mut self, signal: Option<Arc<AtomicUsize>>) -> Backends {
        self.interrupt = signal;
        self
    }

    /// Backends of a scenario whose models are all mocks.
    pub fn mock_only() -> Backends {
        Backends {
            live: BTreeMap::new(),
            replayer: None,
            recorded: Mutex::new(Vec::new()),
            interrupt: None,
        }
    }

    /// The exchange for one call: over the network (and recorded) or from the cassette.
    /// One call at `position` (`agent_call_index`: its index among all of the agent's calls).
    pub fn exchange(
        &self,
        llm: LlmIdx,
        position: Position,
        agent_call_index: u32,
        request: Value,
    ) -> Result<Exchange, String> {
        if let Some(client) = self.live.get(&llm) {
            let exchange = client.call(&request, self.interrupt.as_deref());
            self.recorded.lock().unwrap_or_else(|e| e.into_inner()).push(Entry {
                position,
                request,
                exchange: exchange.clone(),
            });
            return Ok(exchange);
        }
        match &self.replayer {
            Some(replayer) => replayer.answer(&position, agent_call_index, &request),
            None => Err(format!("no live client and no cassette for {position}")),
        }
    }

    /// The recorded calls and the replay summary, once the run is over.
    pub fn outcome(&self) -> CassetteOutcome {
        CassetteOutcome {
            recorded: self.recorded.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            replay: self.replayer.as_ref().map(|r| (r.file().to_owned(), r.summary())),
        }
    }
}
