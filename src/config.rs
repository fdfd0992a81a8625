//! The config file: the user's intent — key order, endpoints, cooldown lengths, which keychain.
//!
//! It is validated strictly on every load, and a damaged one is never overwritten or "repaired":
//! the error names the file and the place, and the user fixes it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use jiff::SignedDuration;
use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;
use crate::fileio::{Durability, read_optional, replace_file};
use crate::timespec::parse_duration;
use crate::validate::check_name;

/// The keychain service name every secret is stored under (the account is the key's name).
pub const DEFAULT_KEYCHAIN_SERVICE: &str = "keyswitch";
/// The cooldown when neither the mark, the key nor a per-reason default says otherwise.
pub const DEFAULT_COOLDOWN: SignedDuration = SignedDuration::from_hours(1);

/// The reasons a key can be marked for by the StopFailure hook: the `error` values Claude Code
/// sends (claude-code-facts.md). The one list `reason_cooldowns` is checked against.
pub const REASONS: &[&str] = &[
    "rate_limit",
    "overloaded",
    "authentication_failed",
    "billing_error",
    "invalid_request",
    "model_not_found",
    "server_error",
    "unknown",
];

/// Built-in cooldowns by the reason the StopFailure hook gives, used when neither the key nor
/// `reason_cooldowns` in the config says otherwise. A rate limit from a budget proxy usually lifts
/// within the hour; a billing error ("credit balance too low") needs someone to pay, so retrying
/// every hour would only cost failed turns.
pub fn builtin_reason_cooldown(reason: &str) -> Option<SignedDuration> {
    match reason {
        "rate_limit" => Some(SignedDuration::from_hours(1)),
        "billing_error" => Some(SignedDuration::from_hours(12)),
        _ => None,
    }
}

/// Which OS keychain holds the secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// The freedesktop Secret Service (GNOME Keyring, KWallet, KeePassXC) — Linux and BSD.
    SecretService,
    /// The Linux kernel's keyutils: no daemon needed; survives logout, not a reboot.
    Keyutils,
    /// The macOS login keychain.
    MacosKeychain,
    /// The Windows Credential Manager.
    WindowsCredentialManager,
}

impl StoreKind {
    pub fn platform_default() -> Self {
        if cfg!(target_os = "macos") {
            Self::MacosKeychain
        } else if cfg!(windows) {
            Self::WindowsCredentialManager
        } else {
            Self::SecretService
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::SecretService => "the Secret Service keychain",
            Self::Keyutils => "the kernel keyutils store",
            Self::MacosKeychain => "the macOS Keychain",
            Self::WindowsCredentialManager => "the Windows Credential Manager",
        }
    }
}

/// One key as the user configured it. The secret itself lives only in the keychain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub name: String,
    /// The API base URL this key belongs to; none means the user's own default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// This key's default cooldown, like "5h".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<String>,
}

impl KeyConfig {
    pub fn endpoint(&self) -> Option<Endpoint> {
        // Validated on load, so parsing again cannot fail; `ok()` keeps this panic-free.
        self.endpoint
            .as_deref()
            .and_then(|e| Endpoint::parse(e).ok())
    }

    pub fn cooldown(&self) -> Option<SignedDuration> {
        self.cooldown
            .as_deref()
            .and_then(|c| parse_duration(c).ok())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which keychain; the platform's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreKind>,
    /// The keychain service name; "keyswitch" when absent. A second name keeps a second,
    /// separate pool (the tests use one each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keychain_service: Option<String>,
    /// The cooldown used when nothing more specific applies; 1h when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_cooldown: Option<String>,
    /// Default cooldowns by the reason a key was marked (e.g. "rate_limit": "1h").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reason_cooldowns: BTreeMap<String, String>,
    /// The keys, primary first.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
}

impl Config {
    /// Loads and validates the config; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self> {
        let Some(bytes) = read_optional(path)? else {
            return Ok(Self::default());
        };
        let config: Self = serde_json::from_slice(&bytes).map_err(|e| {
            anyhow!(
                "the config file {} is damaged: {e}; fix it by hand (keyswitch never overwrites it)",
                path.display()
            )
        })?;
        config.validate().map_err(|e| {
            anyhow!(
                "the config file {} is invalid: {e}; fix it by hand (keyswitch never overwrites it)",
                path.display()
            )
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        for (index, key) in self.keys.iter().enumerate() {
            check_name(&key.name).with_context(|| format!("keys[{index}]"))?;
            if self.keys[..index]
                .iter()
                .any(|k| k.name.eq_ignore_ascii_case(&key.name))
            {
                return Err(anyhow!(
                    "keys[{index}]: the name {} appears twice",
                    key.name
                ));
            }
            if let Some(endpoint) = &key.endpoint {
                Endpoint::parse(endpoint)
                    .with_context(|| format!("keys[{index}] ({}): endpoint", key.name))?;
            }
            if let Some(cooldown) = &key.cooldown {
                parse_duration(cooldown)
                    .with_context(|| format!("keys[{index}] ({}): cooldown", key.name))?;
            }
        }
        if let Some(text) = &self.default_cooldown {
            parse_duration(text).context("default_cooldown")?;
        }
        for (reason, text) in &self.reason_cooldowns {
            if !REASONS.contains(&reason.as_str()) {
                return Err(anyhow!(
                    "reason_cooldowns: {reason:?} is not a reason keyswitch knows; use one of {}",
                    REASONS.join(", ")
                ));
            }
            parse_duration(text).with_context(|| format!("reason_cooldowns.{reason}"))?;
        }
        if let Some(service) = &self.keychain_service
            && service.trim().is_empty()
        {
            return Err(anyhow!("keychain_service is empty"));
        }
        Ok(())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).context("cannot encode the config")?;
        bytes.push(b'\n');
        replace_file(path, &bytes, Durability::Synced)
    }

    /// The index of the key called `name`, compared without regard to case.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.keys
            .iter()
            .position(|k| k.name.eq_ignore_ascii_case(name))
    }

    pub fn store_kind(&self) -> StoreKind {
        self.store.unwrap_or_else(StoreKind::platform_default)
    }

    pub fn keychain_service(&self) -> &str {
        self.keychain_service
            .as_deref()
            .unwrap_or(DEFAULT_KEYCHAIN_SERVICE)
    }

    pub fn default_cooldown(&self) -> SignedDuration {
        self.default_cooldown
            .as_deref()
            .and_then(|c| parse_duration(c).ok())
            .unwrap_or(DEFAULT_COOLDOWN)
    }

    pub fn reason_cooldown(&self, reason: &str) -> Option<SignedDuration> {
        self.reason_cooldowns
            .get(reason)
            .and_then(|c| parse_duration(c).ok())
    }

    /// The default length of a cooldown for `reason` (a StopFailure `error` value): the key's
    /// own, else `reason_cooldowns`, else the built-in one for the reason, else the default.
    pub fn cooldown_for(&self, key: &KeyConfig, reason: &str) -> SignedDuration {
        key.cooldown()
            .or_else(|| self.reason_cooldown(reason))
            .or_else(|| builtin_reason_cooldown(reason))
            .unwrap_or_else(|| self.default_cooldown())
    }

    /// True when any key is tied to an endpoint: only then does keyswitch manage
    /// `ANTHROPIC_BASE_URL` at all.
    pub fn uses_endpoints(&self) -> bool {
        self.keys.iter().any(|k| k.endpoint.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Config::load(&dir.path().join("nope.json")).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn damage_is_reported_with_file_and_place() {
        let err = load_text("{\"keys\": [\n  {\"name\": \"a\",}\n]}").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("config.json"), "{text}");
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn invalid_values_are_reported() {
        for bad in [
            r#"{"keys":[{"name":"-x"}]}"#,
            r#"{"keys":[{"name":"a"},{"name":"A"}]}"#,
            r#"{"keys":[{"name":"a","cooldown":"0s"}]}"#,
            r#"{"keys":[{"name":"a","endpoint":"nope"}]}"#,
            r#"{"stor":"keyutils"}"#,
            r#"{"default_cooldown":"-1h"}"#,
            r#"{"reason_cooldowns":{"rate_limit":"0s"}}"#,
        ] {
            assert!(load_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_reasons_are_refused_and_named() {
        let err = load_text(r#"{"reason_cooldowns":{"ratelimit":"2h"}}"#).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("\"ratelimit\""), "{text}");
        assert!(text.contains("rate_limit"), "{text}");
        let ok =
            load_text(r#"{"reason_cooldowns":{"rate_limit":"2h","billing_error":"1d"}}"#).unwrap();
        assert_eq!(
            ok.reason_cooldown("rate_limit"),
            Some(SignedDuration::from_hours(2))
        );
    }

    #[test]
    fn round_trips() {
        let config = Config {
            store: Some(StoreKind::Keyutils),
            keys: vec![KeyConfig {
                name: "primary".into(),
                endpoint: Some("https://proxy.example.com".into()),
                cooldown: Some("30m".into()),
            }],
            ..Config::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        config.save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), config);
    }
}
