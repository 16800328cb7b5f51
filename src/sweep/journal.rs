//! The journal of a sweep run with `--out`: a header line, then one JSON line per finished seed,
//! written as each seed finishes. An interrupted sweep keeps the seeds it finished, and
//! `sweep --resume` reads them back and runs only the rest.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SeedResult;

/// The `format` of a journal's header line.
pub const JOURNAL_FORMAT: &str = "agentsim-sweep-journal/1";

/// Which sweep a journal belongs to; `--resume` refuses a journal of another sweep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalHeader {
    pub format: String,
    pub agentsim_version: String,
    pub scenario_hash: String,
    pub seeds: String,
    pub shard: Option<String>,
    /// Whether each seed's result carries its `--impact` reruns (absent in older journals).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub impact: bool,
}

/// An open journal, appended to as seeds finish.
pub struct Journal {
    file: File,
    path: PathBuf,
}

/// The journal's file name in the `--out` directory.
pub fn file_name(shard: Option<(u64, u64)>) -> String {
    match shard {
        Some((index, count)) => format!("shard-{index}-of-{count}.results.jsonl"),
        None => "results.jsonl".to_owned(),
    }
}

impl Journal {
    /// Starts a new journal at `path`, replacing any earlier one.
    pub fn create(path: &Path, header: &JournalHeader) -> Result<Journal, String> {
        let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
        let mut file = File::create(path).map_err(fail)?;
        let line = serde_json::to_string(header).map_err(|e| e.to_string())?;
        file.write_all(format!("{line}\n").as_bytes()).map_err(fail)?;
        Ok(Journal {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Opens the journal at `path` to resume: checks that it belongs to this sweep and returns the
    /// results it holds. A last line cut short (the process was killed mid-write) is dropped.
    pub fn resume(path: &Path, header: &JournalHeader) -> Result<(Journal, Vec<SeedResult>), String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("{}: cannot read the sweep journal: {e}", path.display()))?;
        let mut results = Vec::new();
        let mut whole_bytes = 0;
        for (i, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
            let place = format!("{}:{}:1", path.display(), i + 1);
            if !line.ends_with(b"\n") {
                break; // cut short: that seed reruns
            }
            if i == 0 {
                let found: JournalHeader = serde_json::from_slice(line)
                    .map_err(|e| format!("{place}: expected a sweep journal header: {e}"))?;
                if found != *header {
                    return Err(format!(
                        "{place}: this journal belongs to another sweep (scenario hash {}, seeds {}, shard {}, agentsim {}, {}); \
                         run with the same scenario, --seeds, --shard and --impact, or start over with --force",
                        found.scenario_hash,
                        found.seeds,
                        found.shard.as_deref().unwrap_or("none"),
                        found.agentsim_version,
                        if found.impact { "with --impact" } else { "without --impact" }
                    ));
                }
            } else {
                let result: SeedResult =
                    serde_json::from_slice(line).map_err(|e| format!("{place}: expected one seed's result: {e}"))?;
                results.push(result);
            }
            whole_bytes += line.len();
        }
        if whole_bytes == 0 {
            return Err(format!("{}:1:1: expected a sweep journal header", path.display()));
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        file.set_len(whole_bytes as u64)
            .and_then(|_| file.seek(SeekFrom::End(0)).map(|_| ()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        results.sort_by_key(|r| r.seed);
        results.dedup_by_key(|r| r.seed);
        Ok((
            Journal {
                file,
                path: path.to_path_buf(),
            },
            results,
        ))
    }

    /// Appends one finished seed. Each line reaches the operating system before the next seed
    /// is counted, so a killed sweep loses at most the seeds still running.
    pub fn append(&mut self, result: &SeedResult) -> Result<(), String> {
        let mut line = serde_json::to_vec(result).map_err(|e| e.to_string())?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|_| self.file.flush())
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }

    /// Flushes the journal to disk.
    pub fn sync(&mut self) -> Result<(), String> {
        self.file
            .sync_all()
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Outcome;

    fn result(seed: u64) -> SeedResult {
        SeedResult {
            seed,
            outcome: Outcome::Completed,
            passed: true,
            invariants: vec![true],
            virtual_time_us: 5,
            llm_calls: 1,
            tokens: 2,
            cost_pusd: 3,
            faults: vec![],
            digest: "d".to_owned(),
            answered: vec![true],
            fates: [("answered".to_owned(), 1)].into_iter().collect(),
            violations: vec![0],
            conversations_broken: vec![0],
            user_turns_total: 1,
            user_turns_max: 1,
            impact: vec![],
            goal_checked: vec![],
        }
    }

    fn header() -> JournalHeader {
        JournalHeader {
            format: JOURNAL_FORMAT.to_owned(),
            agentsim_version: "test".to_owned(),
            scenario_hash: "h".to_owned(),
            seeds: "0..3".to_owned(),
            shard: None,
            impact: false,
        }
    }

    #[test]
    fn a_resumed_journal_returns_whole_lines_and_drops_a_cut_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        let mut journal = Journal::create(&path, &header()).unwrap();
        journal.append(&result(2)).unwrap();
        journal.append(&result(0)).unwrap();
        drop(journal);
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"seed\":1,\"outc").unwrap();
        drop(file);
        let (mut journal, results) = Journal::resume(&path, &header()).unwrap();
        assert_eq!(results.iter().map(|r| r.seed).collect::<Vec<_>>(), vec![0, 2]);
        journal.append(&result(1)).unwrap();
        let (_, results) = Journal::resume(&path, &header()).unwrap();
        assert_eq!(results.iter().map(|r| r.seed).collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    #[test]
    fn a_journal_of_another_sweep_is_refused_with_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        Journal::create(&path, &header()).unwrap();
        let other = JournalHeader {
            seeds: "0..9".to_owned(),
            ..header()
        };
        let error = Journal::resume(&path, &other).err().unwrap();
        assert!(
            error.contains("results.jsonl:1:1") && error.contains("another sweep"),
            "{error}"
        );
        let with_impact = JournalHeader {
            impact: true,
            ..header()
        };
        let error = Journal::resume(&path, &with_impact).err().unwrap();
        assert!(
            error.contains("without --impact"),
            "a sweep without --impact is not finished with it: {error}"
        );
    }

    #[test]
    fn a_result_line_from_before_fates_still_reads() {
        let line = r#"{"seed":3,"outcome":"completed","passed":true,"invariants":[true],"virtual_time_us":5,"llm_calls":1,"tokens":2,"cost_pusd":3,"faults":[],"digest":"d","answered":[true]}"#;
        let result: SeedResult = serde_json::from_str(line).unwrap();
        assert_eq!(result.seed, 3);
        assert!(result.fates.is_empty() && result.violations.is_empty());
    }
}
