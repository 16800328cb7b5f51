//! Validates `[[user]]` tables: scripted, rules and model-driven users.

use toml::Spanned;

use super::{Names, Validator};
use crate::catalogue::faults::FaultKind;
use crate::scenario::expr::Expr;
use crate::scenario::file::*;
use crate::scenario::model::*;
use crate::scenario::user::*;

impl Validator<'_> {
    pub(super) fn user(&mut self, raw: &Spanned<RawUser>, llms: &Names, max_user_turns: u32) -> Option<User> {
        let u = raw.get_ref();
        let name = u.name.get_ref().clone();
        let max_turns = match &u.max_turns {
            Some(t) if *t.get_ref() == 0 => {
                self.error(
                    t.span(),
                    "expected max_turns of at least 1 (the opening message), found 0",
                );
                max_user_turns
            }
            Some(t) => *t.get_ref(),
            None => max_user_turns,
        };
        let think = self.latency(
            u.think.as_ref(),
            Latency::Fixed {
                latency_us: THINK_US_DEFAULT,
            },
        );
        let misplaced = |present: bool, key: &str| present.then(|| key.to_owned());
        let kind = match u.kind.get_ref().as_str() {
            "scripted" => {
                self.only_keys(
                    raw,
                    "scripted",
                    [
                        misplaced(!u.rules.is_empty(), "rules"),
                        misplaced(u.llm.is_some(), "llm"),
                        misplaced(!u.behavior.is_empty(), "behavior"),
                    ],
                );
                if u.script.is_empty() {
                    self.error(
                        raw.span(),
                        "expected `script = [\"...\", ...]`: the follow-up messages of a scripted user",
                    );
                }
                UserKind::Scripted(u.script.iter().filter_map(|s| self.user_step(s)).collect())
            }
            "rules" => {
                self.only_keys(
                    raw,
                    "rules",
                    [
                        misplaced(!u.script.is_empty(), "script"),
                        misplaced(u.llm.is_some(), "llm"),
                        misplaced(!u.behavior.is_empty(), "behavior"),
                    ],
                );
                if u.rules.is_empty() {
                    self.error(
                        raw.span(),
                        "expected `rules = [{ when = \"...\", say = \"...\" }, ...]` for a rules user",
                    );
                }
                UserKind::Rules(u.rules.iter().filter_map(|s| self.user_step(s)).collect())
            }
            "model" => self.model_user(raw, llms)?,
            other => {
                self.error(
                    u.kind.span(),
                    format!("expected user kind \"scripted\", \"rules\" or \"model\", found \"{other}\""),
                );
                return None;
            }
        };
        Some(User {
            name,
            max_turns,
            think,
            kind,
        })
    }

    /// Keys that belong to another kind of user are errors.
    fn only_keys<const N: usize>(&mut self, raw: &Spanned<RawUser>, kind: &str, keys: [Option<String>; N]) {
        for key in keys.into_iter().flatten() {
            self.error(raw.span(), format!("`{key}` does not go with kind = \"{kind}\""));
        }
    }

    fn model_user(&mut self, raw: &Spanned<RawUser>, llms: &Names) -> Option<UserKind> {
        let u = raw.get_ref();
        for (present, key) in [(!u.script.is_empty(), "script"), (!u.rules.is_empty(), "rules")] {
            if present {
                self.error(raw.span(), format!("`{key}` does not go with kind = \"model\""));
            }
        }
        let Some(llm_name) = &u.llm else {
            self.error(
                raw.span(),
                "expected `llm = \"NAME\"`: the [[llm]] the user simulator runs on",
            );
            return None;
        };
        let llm = self.resolve(llms, llm_name, "user")?;
        let name = u.name.get_ref();
        let mut behavior = Vec::new();
        for rule in &u.behavior {
            let r = rule.get_ref();
            let text_only = [&r.then, &r.otherwise].into_iter().flatten().all(|a| {
                let a = a.get_ref();
                a.tool_call.is_none()
                    && a.tool_calls.is_none()
                    && a.handoff.is_none()
                    && a.delegate.is_none()
                    && a.task.is_none()
                    && a.args.is_none()
            });
            if !text_only {
                self.error(
                    rule.span(),
                    "expected `answer = \"...\"`: a user simulator answers with text only",
                );
                continue;
            }
            if let Some(parsed) = self.rule(
                rule,
                &[],
                &Names::empty("tool"),
                (&[], &[]),
                &Names::empty("agent"),
                name,
            ) {
                behavior.push(parsed);
            }
        }
        let marker = |value: &Option<Spanned<String>>, v: &mut Self| -> Option<String> {
            let value = value.as_ref()?;
            if value.get_ref().trim().is_empty() {
                v.error(value.span(), "expected a marker of at least one visible character");
            }
            Some(value.get_ref().clone())
        };
        let stop = marker(&u.stop, self).unwrap_or_else(|| STOP_MARKER_DEFAULT.to_owned());
        let give_up = marker(&u.give_up, self);
        Some(UserKind::Model {
            llm,
            instructions: u.instructions.clone().unwrap_or_default(),
            behavior,
            stop,
            give_up,
        })
    }

    fn user_step(&mut self, step: &Spanned<RawUserStep>) -> Option<UserStep> {
        let table = match step.get_ref() {
            RawUserStep::Say(text) => {
                let text = self.template(&Spanned::new(step.span(), text.clone()), false);
                return Some(UserStep {
                    when: None,
                    probability: None,
                    act: UserAct::Say(text),
                });
            }
            RawUserStep::Table(table) => table,
        };
        let chosen = [
            table.say.is_some(),
            table.insist.is_some(),
            table.contradict.is_some(),
            table.give_up.is_some(),
            table.done.is_some(),
        ]
        .iter()
        .filter(|c| **c)
        .count();
        if chosen != 1 {
            self.error(
                step.span(),
                format!(
                    "expected exactly one of `say`, `insist`, `contradict`, `give_up` or `done` in a user step, found {chosen}"
                ),
            );
            return None;
        }
        let when = table.when.as_ref().and_then(|w| match Expr::parse(w.get_ref()) {
            Ok(expr) => Some(expr),
            Err(e) => {
                self.expr_error(&w.span(), e);
                None
            }
        });
        let probability = table.p.as_ref().map(|p| self.probability(p));
        let flag = |value: &Option<Spanned<bool>>, key: &str, v: &mut Self| -> bool {
            match value {
                Some(b) if !*b.get_ref() => {
                    v.error(
                        b.span(),
                        format!("expected `{key} = true` (leave the step out otherwise)"),
                    );
                    false
                }
                Some(_) => true,
                None => false,
            }
        };
        let act = if let Some(say) = &table.say {
            UserAct::Say(self.template(say, false))
        } else if flag(&table.insist, "insist", self) {
            UserAct::Insist
        } else if flag(&table.give_up, "give_up", self) {
            UserAct::GiveUp
        } else if flag(&table.done, "done", self) {
            UserAct::Done
        } else if let Some(contradict) = &table.contradict {
            match contradict.get_ref() {
                toml::Value::Boolean(true) => UserAct::Contradict(FaultKind::UserContradiction.text(None).to_owned()),
                toml::Value::String(text) if !text.trim().is_empty() => UserAct::Contradict(text.clone()),
                _ => {
                    self.error(
                        contradict.span(),
                        "expected `contradict = true` (the default contradiction) or the text the user says",
                    );
                    return None;
                }
            }
        } else {
            return None;
        };
        Some(UserStep { when, probability, act })
    }
}
