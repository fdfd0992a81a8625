//! Which gateway answered at each endpoint, as the gateway names itself in its answers (LiteLLM
//! sends `x-litellm-version` on every one): noted by the proxy, shown by `doctor`, so a user
//! knows whether the budget answers of what they talk to are recognised. A small file in the
//! state folder, written only when something new is seen; losing it loses nothing but the note.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::fileio::{Durability, read_optional, replace_file};

/// More endpoints than this means the config kept changing: the oldest notes give way.
const MAX_ENDPOINTS: usize = 32;

/// A gateway, as its answers name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gateway {
    /// "LiteLLM".
    pub name: String,
    pub version: Option<String>,
    /// When the proxy last saw it answer.
    pub seen: Timestamp,
}

impl Gateway {
    /// The gateway an answer's headers name, if any.
    pub fn named_in(header: &dyn Fn(&str) -> Option<String>, now: Timestamp) -> Option<Self> {
        let version = header("x-litellm-version")?;
        let version: String = version
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
            .take(32)
            .collect();
        Some(Self {
            name: "LiteLLM".to_string(),
            version: (!version.is_empty()).then_some(version),
            seen: now,
        })
    }

    /// Whether keyswitch's built-in table knows this gateway's budget answers.
    pub fn budget_answers_known(&self) -> bool {
        self.name == "LiteLLM"
    }

    /// "LiteLLM 1.108.7".
    pub fn describe(&self) -> String {
        match &self.version {
            Some(v) => format!("{} {v}", self.name),
            None => self.name.clone(),
        }
    }
}

/// The gateways seen, by endpoint.
pub type Seen = BTreeMap<String, Gateway>;

/// Reads the notes; a missing or damaged file is no notes.
pub fn load(path: &Path) -> Seen {
    read_optional(path)
        .ok()
        .flatten()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Notes `gateway` at `endpoint`, keeping the others.
pub fn note(path: &Path, endpoint: &str, gateway: Gateway) -> Result<()> {
    let mut seen = load(path);
    seen.insert(endpoint.to_string(), gateway);
    while seen.len() > MAX_ENDPOINTS {
        let oldest = seen
            .iter()
            .min_by_key(|(_, g)| g.seen)
            .map(|(e, _)| e.clone());
        match oldest {
            Some(endpoint) => seen.remove(&endpoint),
            None => break,
        };
    }
    let mut bytes = serde_json::to_vec_pretty(&seen).context("cannot encode the gateways seen")?;
    bytes.push(b'\n');
    if let Some(dir) = path.parent() {
        crate::paths::ensure_private_dir(dir)?;
    }
    replace_file(path, &bytes, Durability::AtomicOnly)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn litellm_names_itself_and_the_note_reads_back() {
        let now: Timestamp = "2026-12-01T19:00:00Z".parse().unwrap();
        let header =
            |name: &str| (name == "x-litellm-version").then(|| "1.108.7\u{1b}[x".to_string());
        let gateway = Gateway::named_in(&header, now).unwrap();
        assert_eq!(gateway.describe(), "LiteLLM 1.108.7x");
        assert!(gateway.budget_answers_known());
        assert_eq!(Gateway::named_in(&|_| None, now), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("gateways.json");
        note(&path, "http://127.0.0.1:4000", gateway.clone()).unwrap();
        assert_eq!(load(&path)["http://127.0.0.1:4000"], gateway);
        std::fs::write(&path, "{damaged").unwrap();
        assert!(load(&path).is_empty());
    }
}
