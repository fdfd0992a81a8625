//! Each key's headroom: what its upstream last reported about it (spend and budget, the
//! remaining/limit of each rate window with its reset) and a tally of the tokens its answers
//! used, per day. The proxy reads both off the answers it passes on — headers
//! ([`headers`]) and the `usage` of JSON and streamed bodies ([`usage`], [`sse`]) — with no
//! request of its own, and keeps them in a small file of their own ([`store`]), written in the
//! background ([`recorder`]); `list`, `status`, `usage` and `doctor` show them ([`show`]).
//! Only numbers are kept: never a body, a prompt, or a header's text beyond these figures.

pub mod headers;
pub mod recorder;
pub mod show;
pub mod sse;
pub mod store;
pub mod usage;

use serde::{Deserialize, Serialize};

/// One rate window a gateway reported on (Anthropic's `tokens`, OpenAI-style `requests`,
/// Kong's `60`-second window …): how much of it is left, of how much, and when it refills.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<jiff::Timestamp>,
}

/// What one answer's headers said about its key.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Reported {
    /// Spent so far, in the gateway's currency (LiteLLM: US dollars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_budget: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
}

impl Reported {
    pub fn is_empty(&self) -> bool {
        self.spend.is_none() && self.max_budget.is_none() && self.windows.is_empty()
    }

    /// The share of the budget spent, when both are known and the budget is above zero.
    pub fn spent_share(&self) -> Option<f64> {
        match (self.spend, self.max_budget) {
            (Some(spend), Some(budget)) if budget > 0.0 => Some(spend / budget),
            _ => None,
        }
    }
}

/// One key's tally for one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tally {
    #[serde(default)]
    pub input: u64,
    #[serde(default)]
    pub output: u64,
    #[serde(default)]
    pub cache_write: u64,
    #[serde(default)]
    pub cache_read: u64,
    /// Answers the key got from its upstream (success or error).
    #[serde(default)]
    pub requests: u64,
    /// Answers that made the proxy move on to the next key.
    #[serde(default)]
    pub failovers: u64,
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        self.input = self.input.saturating_add(other.input);
        self.output = self.output.saturating_add(other.output);
        self.cache_write = self.cache_write.saturating_add(other.cache_write);
        self.cache_read = self.cache_read.saturating_add(other.cache_read);
        self.requests = self.requests.saturating_add(other.requests);
        self.failovers = self.failovers.saturating_add(other.failovers);
    }

    /// Every token: input, output and both cache kinds.
    pub fn tokens(&self) -> u64 {
        self.input
            .saturating_add(self.output)
            .saturating_add(self.cache_write)
            .saturating_add(self.cache_read)
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}
