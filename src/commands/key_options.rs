//! A key's own options — its endpoint and its cooldown — as `add` and `set` take them: parsed
//! and checked in one place, applied to a key, and said in words ("endpoint https://a →
//! https://b; cooldown 5h → default (1h)").

use anyhow::Result;
use jiff::SignedDuration;

use crate::config::{Config, KeyConfig};
use crate::endpoint::{Endpoint, redact_url};
use crate::error::refuse;
use crate::paths::Dirs;
use crate::reason::Reason;
use crate::timespec::{format_duration, parse_duration};

/// What to do with one option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<T> {
    /// Leave it as it is.
    Keep,
    /// Give it this value.
    To(T),
    /// Back to the default.
    Clear,
}

impl<T> Change<T> {
    fn given(&self) -> bool {
        !matches!(self, Self::Keep)
    }

    /// `--x VALUE` (parsed by `parse`) or `--no-x`; clap keeps the two apart.
    fn from_flags(
        (value, clear): (Option<&str>, bool),
        parse: impl Fn(&str) -> Result<T>,
    ) -> Result<Self> {
        Ok(match (value, clear) {
            (Some(text), _) => Self::To(parse(text)?),
            (None, true) => Self::Clear,
            (None, false) => Self::Keep,
        })
    }
}

/// The options asked for, every value parsed.
#[derive(Debug, Clone)]
pub struct KeyOptions {
    pub endpoint: Change<Endpoint>,
    pub cooldown: Change<SignedDuration>,
}

impl KeyOptions {
    /// Parses the command line's values: an endpoint must be an http(s) base URL without
    /// credentials, a cooldown a positive duration.
    /// Each option as `(--x VALUE, --no-x)`.
    pub fn parse(endpoint: (Option<&str>, bool), cooldown: (Option<&str>, bool)) -> Result<Self> {
        Ok(Self {
            endpoint: Change::from_flags(endpoint, Endpoint::parse)?,
            cooldown: Change::from_flags(cooldown, parse_duration)?,
        })
    }

    /// Whether any option was given.
    pub fn any(&self) -> bool {
        self.endpoint.given() || self.cooldown.given()
    }

    /// The checks that need more than the text: an endpoint is a gateway, never a keyswitch
    /// proxy — the proxy would loop into itself (or answer a misleading 429), and in helper
    /// mode a session would send the key there.
    pub fn check(&self, dirs: &Dirs) -> Result<()> {
        let Change::To(endpoint) = &self.endpoint else {
            return Ok(());
        };
        match super::install::proxy_address_as_endpoint(dirs, endpoint.as_str()) {
            Some(why) => Err(refuse(format!(
                "the endpoint {} is {why}, not a gateway: give the gateway's own URL (`keyswitch proxy status` shows the one the proxy forwards to)",
                redact_url(endpoint.as_str())
            ))),
            None => Ok(()),
        }
    }

    /// Applies the options to a key's configuration. A value equal to the one there (`60m`
    /// for `1h`) leaves the key as it is, spelling included.
    pub fn apply(&self, key: &mut KeyConfig) {
        match &self.endpoint {
            Change::To(endpoint) if key.endpoint() != Some(endpoint) => {
                key.set_endpoint(endpoint.clone());
            }
            Change::Clear => key.clear_endpoint(),
            _ => {}
        }
        match self.cooldown {
            Change::To(cooldown) if key.cooldown() != Some(cooldown) => key.set_cooldown(cooldown),
            Change::Clear => key.clear_cooldown(),
            _ => {}
        }
    }
}

/// What a key without a cooldown of its own cools for: the default, and the reasons that have
/// another length ("default (1h; 12h for a spent budget)"), as `Config::cooldown_for` decides.
fn default_cooldown_words(config: &Config) -> String {
    let other = config.default_cooldown();
    let of = |reason: Reason| {
        config
            .reason_cooldown(reason)
            .or_else(|| reason.builtin_cooldown())
            .unwrap_or(other)
    };
    let exceptions: Vec<String> = [
        (Reason::RateLimit, "a rate limit"),
        (Reason::BillingError, "a spent budget"),
    ]
    .into_iter()
    .filter(|(reason, _)| of(*reason) != other)
    .map(|(reason, what)| format!("{} for {what}", format_duration(of(reason))))
    .collect();
    match exceptions.as_slice() {
        [] => format!("default ({})", format_duration(other)),
        _ => format!(
            "default ({}; {})",
            format_duration(other),
            exceptions.join(", ")
        ),
    }
}

/// How a key's options read in messages, defaults spelled out: what a key without an endpoint
/// of its own, or without a cooldown of its own, gets.
pub struct Words {
    default_endpoint: String,
    default_cooldown: String,
}

impl Words {
    pub fn new(dirs: &Dirs, config: &Config) -> Self {
        Self {
            default_endpoint: default_endpoint(dirs),
            default_cooldown: default_cooldown_words(config),
        }
    }

    fn endpoint(&self, key: &KeyConfig) -> String {
        key.endpoint_text()
            .map_or_else(|| self.default_endpoint.clone(), redact_url)
    }

    fn cooldown(&self, key: &KeyConfig) -> String {
        key.cooldown_text()
            .map_or_else(|| self.default_cooldown.clone(), str::to_string)
    }

    /// What changed from `before` to `after`, one phrase an option ("endpoint https://a →
    /// https://b"); empty when nothing did.
    pub fn changes(&self, before: &KeyConfig, after: &KeyConfig) -> Vec<String> {
        let mut changes = Vec::new();
        if before.endpoint() != after.endpoint() {
            changes.push(self.endpoint_change(before, after));
        }
        if before.cooldown() != after.cooldown() {
            changes.push(self.cooldown_change(before, after));
        }
        changes
    }

    /// Each option `asked` names: how it changed, or that it stayed ("cooldown 5h
    /// (unchanged)").
    pub fn asked(&self, before: &KeyConfig, after: &KeyConfig, asked: &KeyOptions) -> Vec<String> {
        let mut said = Vec::new();
        if asked.endpoint.given() {
            said.push(if before.endpoint() == after.endpoint() {
                format!("endpoint {} (unchanged)", self.endpoint(after))
            } else {
                self.endpoint_change(before, after)
            });
        }
        if asked.cooldown.given() {
            said.push(if before.cooldown() == after.cooldown() {
                format!("cooldown {} (unchanged)", self.cooldown(after))
            } else {
                self.cooldown_change(before, after)
            });
        }
        said
    }

    /// The options `asked` names, as `key` has them: "endpoint https://a", "cooldown 5h".
    pub fn current(&self, key: &KeyConfig, asked: &KeyOptions) -> Vec<String> {
        let mut current = Vec::new();
        if asked.endpoint.given() {
            current.push(format!("endpoint {}", self.endpoint(key)));
        }
        if asked.cooldown.given() {
            current.push(format!("cooldown {}", self.cooldown(key)));
        }
        current
    }

    fn endpoint_change(&self, before: &KeyConfig, after: &KeyConfig) -> String {
        format!(
            "endpoint {} → {}",
            self.endpoint(before),
            self.endpoint(after)
        )
    }

    fn cooldown_change(&self, before: &KeyConfig, after: &KeyConfig) -> String {
        format!(
            "cooldown {} → {}",
            self.cooldown(before),
            self.cooldown(after)
        )
    }
}

/// Where a key without an endpoint of its own goes: "default" alone says nothing.
pub fn default_endpoint(dirs: &Dirs) -> String {
    match crate::mode::Mode::load(dirs) {
        Ok(crate::mode::Mode::Proxy(proxy)) => format!(
            "default ({}, the proxy's upstream)",
            redact_url(&proxy.upstream)
        ),
        _ => "default (Claude Code's own base URL)".to_string(),
    }
}
