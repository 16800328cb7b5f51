//! Validates `[[traffic]]` tables: poisson and scripted conversations.

use std::collections::BTreeMap;

use toml::Spanned;

use super::{Names, Validator};
use crate::scenario::file::*;
use crate::scenario::model::*;
use crate::scenario::units::parse_rate_milli_per_hour;

impl Validator<'_> {
    pub(super) fn traffic(
        &mut self,
        raw: &Spanned<RawTraffic>,
        agents: &Names,
        users: &Names,
        pools: &BTreeMap<String, Vec<String>>,
    ) -> Option<Traffic> {
        let t = raw.get_ref();
        let Some(to_name) = &t.to else {
            self.error(
                raw.span(),
                "expected `to = \"AGENT\"`: the agent that receives the conversations",
            );
            return None;
        };
        let to = match pools.get(to_name.get_ref()) {
            Some(replicas) => replicas.iter().filter_map(|name| agents.get(name)).collect(),
            None => vec![self.resolve(agents, to_name, "traffic")?],
        };
        let user = match &t.user {
            Some(name) => Some(self.resolve(users, name, "traffic")?),
            None => None,
        };
        match t.kind.get_ref().as_str() {
            "poisson" => self.poisson(raw, to, user),
            "script" => self.script(raw, to, user),
            other => {
                self.error(
                    t.kind.span(),
                    format!("expected traffic kind \"poisson\" or \"script\", found \"{other}\""),
                );
                None
            }
        }
    }

    fn poisson(&mut self, raw: &Spanned<RawTraffic>, to: Vec<AgentIdx>, user: Option<usize>) -> Option<Traffic> {
        let t = raw.get_ref();
        let rate = match &t.rate {
            Some(rate) => match parse_rate_milli_per_hour(rate.get_ref()) {
                Ok(r) => r,
                Err(message) => {
                    self.error(rate.span(), message);
                    return None;
                }
            },
            None => {
                self.error(raw.span(), "expected `rate = \"2/s\"` for poisson traffic");
                return None;
            }
        };
        let conversations = match &t.conversations {
            Some(c) => *c.get_ref(),
            None => {
                self.error(raw.span(), "expected `conversations = N` for poisson traffic");
                return None;
            }
        };
        if t.messages.is_empty() {
            self.error(
                raw.span(),
                "expected `messages = [\"...\"]`: at least one opening message",
            );
            return None;
        }
        if !t.script.is_empty() {
            self.error(raw.span(), "`script` goes with kind = \"script\", not \"poisson\"");
        }
        Some(Traffic::Poisson {
            to,
            rate_milli_per_hour: rate,
            conversations,
            messages: t.messages.iter().map(|m| m.get_ref().clone()).collect(),
            start_us: t.start.as_ref().map_or(0, |s| self.duration(s)),
            user,
            task: t.task.as_ref().map(|t| t.get_ref().clone()),
        })
    }

    fn script(&mut self, raw: &Spanned<RawTraffic>, to: Vec<AgentIdx>, user: Option<usize>) -> Option<Traffic> {
        let t = raw.get_ref();
        if t.script.is_empty() {
            self.error(
                raw.span(),
                "expected `script = [{ at = \"0s\", message = \"...\" }, ...]` for script traffic",
            );
            return None;
        }
        for key in [
            t.rate.as_ref().map(|r| r.span()),
            t.conversations.as_ref().map(|c| c.span()),
        ]
        .into_iter()
        .flatten()
        {
            self.error(
                key,
                "`rate` and `conversations` go with kind = \"poisson\", not \"script\"",
            );
        }
        let items = t
            .script
            .iter()
            .map(|item| {
                let item = item.get_ref();
                (
                    item.at.as_ref().map_or(0, |a| self.duration(a)),
                    item.message.get_ref().clone(),
                )
            })
            .collect();
        let tasks = t
            .script
            .iter()
            .map(|item| {
                let own = item.get_ref().task.as_ref().map(|t| t.get_ref().clone());
                own.or_else(|| t.task.as_ref().map(|t| t.get_ref().clone()))
            })
            .collect();
        Some(Traffic::Script { to, items, user, tasks })
    }
}
