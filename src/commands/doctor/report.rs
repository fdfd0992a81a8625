//! What doctor found, as it finds it: one line per finding (`ok`, `FIX`, `info`) on stdout, or,
//! with `--json`, one JSON object at the end for scripts. Every `FIX` is something that would
//! fail a turn, and makes doctor exit 1.

use anyhow::Result;
use serde_json::{Value, json};

use crate::commands::out;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Fix,
    Info,
}

impl Level {
    fn word(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Fix => "fix",
            Self::Info => "info",
        }
    }
}

struct Finding {
    level: Level,
    check: &'static str,
    message: String,
    fix: Option<String>,
}

pub(super) struct Report {
    json: bool,
    /// What the findings made from now on are about (the `check` of `--json`).
    check: &'static str,
    findings: Vec<Finding>,
    problems: usize,
}

impl Report {
    pub(super) fn new(json: bool) -> Self {
        Self {
            json,
            check: "doctor",
            findings: Vec::new(),
            problems: 0,
        }
    }

    /// Names what the findings that follow are about.
    pub(super) fn at(&mut self, check: &'static str) {
        self.check = check;
    }

    pub(super) fn ok(&mut self, what: &str) -> Result<()> {
        self.add(Level::Ok, what, None)
    }

    /// Something that would fail a turn, and its fix.
    pub(super) fn fix(&mut self, what: &str, how: &str) -> Result<()> {
        self.add(Level::Fix, what, Some(how))
    }

    /// A problem whose message names its way out already (most of keyswitch's errors do).
    pub(super) fn problem(&mut self, message: &str) -> Result<()> {
        self.add(Level::Fix, message, None)
    }

    pub(super) fn info(&mut self, what: &str) -> Result<()> {
        self.add(Level::Info, what, None)
    }

    fn add(&mut self, level: Level, message: &str, fix: Option<&str>) -> Result<()> {
        if level == Level::Fix {
            self.problems += 1;
        }
        if !self.json {
            let line = match (level, fix) {
                (Level::Ok, _) => format!("ok    {message}"),
                (Level::Fix, Some(how)) => format!("FIX   {message}: {how}"),
                (Level::Fix, None) => format!("FIX   {message}"),
                (Level::Info, _) => format!("info  {message}"),
            };
            out(&line)?;
        }
        self.findings.push(Finding {
            level,
            check: self.check,
            message: message.to_string(),
            fix: fix.map(str::to_string),
        });
        Ok(())
    }

    /// The closing line (or the JSON), and exit 1 when a finding needs fixing.
    pub(super) fn finish(self) -> Result<()> {
        if self.json {
            out(&self.to_json().to_string())?;
        } else if self.problems == 0 {
            out("keyswitch is ready")?;
        }
        if self.problems == 0 {
            return Ok(());
        }
        let n = self.problems;
        let (s, them) = if n == 1 { ("", "it") } else { ("s", "them") };
        let whence = if self.json {
            "as the JSON's findings say"
        } else {
            "above"
        };
        Err(anyhow::anyhow!("{n} problem{s} found; fix {them} {whence}"))
    }

    fn to_json(&self) -> Value {
        let findings: Vec<Value> = self
            .findings
            .iter()
            .map(|f| {
                let mut one = json!({
                    "level": f.level.word(),
                    "check": f.check,
                    "message": f.message,
                });
                if let Some(fix) = &f.fix {
                    one["fix"] = json!(fix);
                }
                one
            })
            .collect();
        json!({"ok": self.problems == 0, "findings": findings})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_has_one_entry_per_finding_and_ok_only_without_a_fix() {
        let mut r = Report::new(true);
        r.at("keys");
        r.ok("fine").unwrap();
        r.at("upstream");
        r.fix("down", "start it").unwrap();
        let value = r.to_json();
        assert_eq!(value["ok"], false);
        assert_eq!(value["findings"][0]["level"], "ok");
        assert_eq!(value["findings"][0]["check"], "keys");
        assert!(value["findings"][0].get("fix").is_none());
        assert_eq!(value["findings"][1]["level"], "fix");
        assert_eq!(value["findings"][1]["fix"], "start it");
        assert!(r.finish().is_err());
    }
}
