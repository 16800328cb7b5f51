//! Validates `[[profile]]` tables: weighted sets of faults.

use toml::Spanned;

use super::Validator;
use crate::scenario::file::*;
use crate::scenario::glob::glob_match;
use crate::scenario::model::*;

impl Validator<'_> {
    pub(super) fn profiles(&mut self, raw: &[Spanned<RawProfile>], faults: &[Fault]) -> Vec<Profile> {
        let _ = self.names("profile", raw.iter().map(|p| &p.get_ref().name));
        raw.iter()
            .map(|p| {
                let p = p.get_ref();
                for pattern in &p.faults {
                    if !faults.iter().any(|f| glob_match(pattern.get_ref(), &f.name)) {
                        let names: Vec<&str> = faults.iter().map(|f| f.name.as_str()).collect();
                        self.error(
                            pattern.span(),
                            format!(
                                "profile fault \"{}\" matches no fault; expected a fault name such as {}",
                                pattern.get_ref(),
                                names.first().unwrap_or(&"KIND@TARGET")
                            ),
                        );
                    }
                }
                let scale = p.scale.as_ref().map_or(1.0, |s| {
                    let value = *s.get_ref();
                    if !(0.0..=1000.0).contains(&value) {
                        self.error(s.span(), format!("expected a scale between 0 and 1000, found {value}"));
                    }
                    value
                });
                Profile {
                    name: p.name.get_ref().clone(),
                    weight: p.weight.as_ref().map_or(1, |w| *w.get_ref()),
                    faults: p.faults.iter().map(|f| f.get_ref().clone()).collect(),
                    scale,
                }
            })
            .collect()
    }
}
