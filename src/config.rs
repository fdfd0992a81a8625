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
use crate::gateway::{Rule, RuleFile};
use crate::reason::Reason;
use crate::timespec::{format_duration, parse_duration};
use crate::validate::check_name;

/// The keychain service name every secret is stored under (the account is the key's name).
pub const DEFAULT_KEYCHAIN_SERVICE: &str = "keyswitch";
/// The cooldown when neither the mark, the key nor a per-reason default says otherwise.
pub const DEFAULT_COOLDOWN: SignedDuration = SignedDuration::from_hours(1);
/// How long the proxy waits for the head of a streaming answer before it tries a key on
/// another upstream: Anthropic sends it within seconds, before the first token.
pub const DEFAULT_RESPONSE_HEAD_TIMEOUT: SignedDuration = SignedDuration::from_secs(60);
/// The range `response_head_timeout` may take: below a second is no time to answer, and past
/// ten minutes Claude Code has given up itself (it sends `X-Stainless-Timeout: 600`).
const RESPONSE_HEAD_TIMEOUT_RANGE: (SignedDuration, SignedDuration) =
    (SignedDuration::from_secs(1), SignedDuration::from_mins(10));
/// How much memory the proxy gives request bodies it holds, all requests together, in MiB.
pub const DEFAULT_REQUEST_BODY_BUDGET_MIB: u64 = 128;
/// At least the API's largest request (32 MB), so every request the API would take fits.
const MIN_REQUEST_BODY_BUDGET_MIB: u64 = 32;
const MAX_REQUEST_BODY_BUDGET_MIB: u64 = 64 * 1024;

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

/// A config value as the user spelled it, and what it means: parsed once, when the file is
/// loaded, and written back as it was spelled (`90m` stays `90m`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spelled<T> {
    text: String,
    value: T,
}

impl<T> Spelled<T> {
    pub fn value(&self) -> &T {
        &self.value
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

impl Spelled<SignedDuration> {
    fn duration(text: &str) -> Result<Self> {
        Ok(Self {
            value: parse_duration(text)?,
            text: text.to_string(),
        })
    }

    fn of_duration(value: SignedDuration) -> Self {
        Self {
            text: format_duration(value),
            value,
        }
    }
}

impl Spelled<Endpoint> {
    fn endpoint(text: &str) -> Result<Self> {
        Ok(Self {
            value: Endpoint::parse(text)?,
            text: text.to_string(),
        })
    }
}

/// One key as the user configured it. The secret itself lives only in the keychain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConfig {
    pub name: String,
    /// The API base URL this key belongs to; none means the user's own default.
    endpoint: Option<Spelled<Endpoint>>,
    /// This key's default cooldown, like "5h".
    cooldown: Option<Spelled<SignedDuration>>,
}

impl KeyConfig {
    /// A key with neither an endpoint nor a cooldown of its own.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            endpoint: None,
            cooldown: None,
        }
    }

    pub fn endpoint(&self) -> Option<&Endpoint> {
        self.endpoint.as_ref().map(Spelled::value)
    }

    pub fn cooldown(&self) -> Option<SignedDuration> {
        self.cooldown.as_ref().map(|c| *c.value())
    }

    /// The endpoint as the config file spells it.
    pub fn endpoint_text(&self) -> Option<&str> {
        self.endpoint.as_ref().map(Spelled::text)
    }

    /// The cooldown as the config file spells it.
    pub fn cooldown_text(&self) -> Option<&str> {
        self.cooldown.as_ref().map(Spelled::text)
    }

    pub fn set_endpoint(&mut self, endpoint: Endpoint) {
        self.endpoint = Some(Spelled {
            text: endpoint.to_string(),
            value: endpoint,
        });
    }

    pub fn set_cooldown(&mut self, cooldown: SignedDuration) {
        self.cooldown = Some(Spelled::of_duration(cooldown));
    }

    /// Back to the user's own default endpoint.
    pub fn clear_endpoint(&mut self) {
        self.endpoint = None;
    }

    /// Back to the configured default cooldown.
    pub fn clear_cooldown(&mut self) {
        self.cooldown = None;
    }
}

/// The user's intent, every value parsed: what `load` returns cannot hold a value that does not
/// mean anything, so no later use can fall back on a default for one that failed to parse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Which keychain; the platform's own when absent.
    pub store: Option<StoreKind>,
    /// The keychain service name; "keyswitch" when absent. A second name keeps a second,
    /// separate pool (the tests use one each).
    pub keychain_service: Option<String>,
    /// The cooldown used when nothing more specific applies; 1h when absent.
    default_cooldown: Option<Spelled<SignedDuration>>,
    /// Default cooldowns by the reason a key was marked (e.g. "rate_limit": "1h").
    reason_cooldowns: BTreeMap<Reason, Spelled<SignedDuration>>,
    /// The keys, primary first.
    pub keys: Vec<KeyConfig>,
    /// The user's rules for gateway answers the built-in table does not know.
    gateway_rules: Vec<Rule>,
    /// Proxy mode: how long a streaming answer's head may take; 60s when absent.
    response_head_timeout: Option<Spelled<SignedDuration>>,
    /// Proxy mode: the memory for request bodies held at once, in MiB; 128 when absent.
    request_body_budget_mib: Option<u64>,
}

/// The file's form: what serde reads and writes. Only [`Config::load`] and [`Config::save`] see
/// it; the conversion to [`Config`] is where every value is parsed.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    store: Option<StoreKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keychain_service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default_cooldown: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    reason_cooldowns: BTreeMap<String, String>,
    #[serde(default)]
    keys: Vec<KeyFile>,
    /// Each read on its own, so that a rule of the wrong shape is named by its place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    gateway_rules: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response_head_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_body_budget_mib: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cooldown: Option<String>,
}

impl TryFrom<ConfigFile> for Config {
    type Error = anyhow::Error;

    fn try_from(file: ConfigFile) -> Result<Self> {
        let mut keys: Vec<KeyConfig> = Vec::with_capacity(file.keys.len());
        for (index, key) in file.keys.into_iter().enumerate() {
            check_name(&key.name).with_context(|| format!("keys[{index}]"))?;
            if keys.iter().any(|k| k.name.eq_ignore_ascii_case(&key.name)) {
                return Err(anyhow!(
                    "keys[{index}]: the name {} appears twice",
                    key.name
                ));
            }
            let endpoint = key
                .endpoint
                .as_deref()
                .map(Spelled::endpoint)
                .transpose()
                .with_context(|| format!("keys[{index}] ({}): endpoint", key.name))?;
            let cooldown = key
                .cooldown
                .as_deref()
                .map(Spelled::duration)
                .transpose()
                .with_context(|| format!("keys[{index}] ({}): cooldown", key.name))?;
            keys.push(KeyConfig {
                name: key.name,
                endpoint,
                cooldown,
            });
        }
        let default_cooldown = file
            .default_cooldown
            .as_deref()
            .map(Spelled::duration)
            .transpose()
            .context("default_cooldown")?;
        let mut reason_cooldowns = BTreeMap::new();
        for (word, text) in &file.reason_cooldowns {
            let reason = Reason::parse(word).ok_or_else(|| {
                anyhow!(
                    "reason_cooldowns: {word:?} is not a reason keyswitch knows; use one of {}",
                    Reason::words()
                )
            })?;
            let cooldown =
                Spelled::duration(text).with_context(|| format!("reason_cooldowns.{word}"))?;
            reason_cooldowns.insert(reason, cooldown);
        }
        if let Some(service) = &file.keychain_service
            && service.trim().is_empty()
        {
            return Err(anyhow!("keychain_service is empty"));
        }
        let gateway_rules = file
            .gateway_rules
            .into_iter()
            .enumerate()
            .map(|(index, rule)| {
                serde_json::from_value::<RuleFile>(rule)
                    .map_err(anyhow::Error::from)
                    .and_then(Rule::try_from)
                    .with_context(|| format!("gateway_rules[{index}]"))
            })
            .collect::<Result<_>>()?;
        let response_head_timeout = checked_head_timeout(file.response_head_timeout.as_deref())?;
        let request_body_budget_mib = checked_body_budget(file.request_body_budget_mib)?;
        Ok(Self {
            store: file.store,
            keychain_service: file.keychain_service,
            default_cooldown,
            reason_cooldowns,
            keys,
            gateway_rules,
            response_head_timeout,
            request_body_budget_mib,
        })
    }
}

/// `response_head_timeout`, within 1s to 10m.
fn checked_head_timeout(text: Option<&str>) -> Result<Option<Spelled<SignedDuration>>> {
    let timeout = text
        .map(Spelled::duration)
        .transpose()
        .context("response_head_timeout")?;
    if let Some(timeout) = &timeout {
        let (least, most) = RESPONSE_HEAD_TIMEOUT_RANGE;
        if !(least..=most).contains(timeout.value()) {
            return Err(anyhow!(
                "response_head_timeout: {} is outside 1s to 10m; 60s is the default",
                timeout.text()
            ));
        }
    }
    Ok(timeout)
}

/// `request_body_budget_mib`, within the API's largest request and a sane ceiling.
fn checked_body_budget(mib: Option<u64>) -> Result<Option<u64>> {
    if let Some(mib) = mib
        && !(MIN_REQUEST_BODY_BUDGET_MIB..=MAX_REQUEST_BODY_BUDGET_MIB).contains(&mib)
    {
        return Err(anyhow!(
            "request_body_budget_mib: {mib} is outside {MIN_REQUEST_BODY_BUDGET_MIB} (the API's largest request) to {MAX_REQUEST_BODY_BUDGET_MIB}; {DEFAULT_REQUEST_BODY_BUDGET_MIB} is the default"
        ));
    }
    Ok(mib)
}

impl From<&Config> for ConfigFile {
    fn from(config: &Config) -> Self {
        let text = |s: &Spelled<SignedDuration>| s.text().to_string();
        Self {
            store: config.store,
            keychain_service: config.keychain_service.clone(),
            default_cooldown: config.default_cooldown.as_ref().map(text),
            reason_cooldowns: config
                .reason_cooldowns
                .iter()
                .map(|(reason, c)| (reason.as_str().to_string(), text(c)))
                .collect(),
            keys: config
                .keys
                .iter()
                .map(|k| KeyFile {
                    name: k.name.clone(),
                    endpoint: k.endpoint_text().map(str::to_string),
                    cooldown: k.cooldown_text().map(str::to_string),
                })
                .collect(),
            gateway_rules: config
                .gateway_rules
                .iter()
                .filter_map(|rule| serde_json::to_value(RuleFile::from(rule)).ok())
                .collect(),
            response_head_timeout: config.response_head_timeout.as_ref().map(text),
            request_body_budget_mib: config.request_body_budget_mib,
        }
    }
}

impl Config {
    /// Loads and parses the config; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self> {
        let Some(bytes) = read_optional(path)? else {
            return Ok(Self::default());
        };
        let file: ConfigFile = serde_json::from_slice(&bytes).map_err(|e| {
            anyhow!(
                "the config file {} is damaged: {e}; fix it by hand (keyswitch never overwrites it)",
                path.display()
            )
        })?;
        Self::try_from(file).map_err(|e| {
            anyhow!(
                "the config file {} is invalid: {e:#}; fix it by hand (keyswitch never overwrites it)",
                path.display()
            )
        })
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(&ConfigFile::from(self))
            .context("cannot encode the config")?;
        bytes.push(b'\n');
        replace_file(path, &bytes, Durability::Synced)
    }

    /// A config of these keys and nothing else.
    #[cfg(test)]
    pub fn with_keys(keys: Vec<KeyConfig>) -> Self {
        Self {
            keys,
            ..Self::default()
        }
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
            .as_ref()
            .map_or(DEFAULT_COOLDOWN, |c| *c.value())
    }

    pub fn reason_cooldown(&self, reason: Reason) -> Option<SignedDuration> {
        self.reason_cooldowns.get(&reason).map(|c| *c.value())
    }

    /// The default length of a cooldown for `reason`: the key's own, else `reason_cooldowns`,
    /// else the built-in one for the reason, else the default. A manual mark (no reason) takes
    /// the key's own, else the default.
    pub fn cooldown_for(&self, key: &KeyConfig, reason: Option<Reason>) -> SignedDuration {
        key.cooldown()
            .or_else(|| reason.and_then(|r| self.reason_cooldown(r)))
            .or_else(|| reason.and_then(Reason::builtin_cooldown))
            .unwrap_or_else(|| self.default_cooldown())
    }

    /// The user's rules for gateway answers, checked before the built-in ones.
    pub fn gateway_rules(&self) -> &[Rule] {
        &self.gateway_rules
    }

    /// How long the proxy waits for a streaming answer's head before it tries a key on another
    /// upstream (`response_head_timeout`).
    pub fn response_head_timeout(&self) -> std::time::Duration {
        let timeout = self
            .response_head_timeout
            .as_ref()
            .map_or(DEFAULT_RESPONSE_HEAD_TIMEOUT, |t| *t.value());
        timeout.unsigned_abs()
    }

    /// The bytes of request bodies the proxy holds at once, all requests together
    /// (`request_body_budget_mib`).
    pub fn request_body_budget(&self) -> usize {
        let mib = self
            .request_body_budget_mib
            .unwrap_or(DEFAULT_REQUEST_BODY_BUDGET_MIB);
        usize::try_from(mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
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
    fn the_proxys_limits_default_and_are_read_within_their_ranges() {
        let none = load_text("{}").unwrap();
        assert_eq!(none.response_head_timeout().as_secs(), 60);
        assert_eq!(none.request_body_budget(), 128 * 1024 * 1024);
        let set = load_text(r#"{"response_head_timeout": "90s", "request_body_budget_mib": 64}"#)
            .unwrap();
        assert_eq!(set.response_head_timeout().as_secs(), 90);
        assert_eq!(set.request_body_budget(), 64 * 1024 * 1024);
        for (bad, named) in [
            (
                r#"{"response_head_timeout": "0s"}"#,
                "response_head_timeout",
            ),
            (
                r#"{"response_head_timeout": "1h"}"#,
                "response_head_timeout",
            ),
            (
                r#"{"response_head_timeout": "soon"}"#,
                "response_head_timeout",
            ),
            (
                r#"{"request_body_budget_mib": 8}"#,
                "request_body_budget_mib",
            ),
        ] {
            let text = format!("{:#}", load_text(bad).unwrap_err());
            assert!(text.contains(named), "{bad}: {text}");
        }
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
            r#"{"gateway_rules":[{"status":412,"meaning":"gone"}]}"#,
            r#"{"gateway_rules":[{"meaning":"spent"}]}"#,
        ] {
            assert!(load_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_gateway_rule_is_one_line_naming_the_rule() {
        for bad in [
            r#"{"gateway_rules":[{"status":70000,"meaning":"spent"}]}"#,
            r#"{"gateway_rules":[{"status":-1,"meaning":"spent"}]}"#,
            r#"{"gateway_rules":[{"status":600,"meaning":"spent"}]}"#,
            r#"{"gateway_rules":[{"status":399,"meaning":"spent"}]}"#,
            r#"{"gateway_rules":[{"status":429,"meaning":"spent"},{"body_contains":"  ","meaning":"spent"}]}"#,
            r#"{"gateway_rules":[{"status":429,"meaning":"spent","cooldown":"forever"}]}"#,
            r#"{"gateway_rules":[{"status":429,"meaning":"revoked","cooldown":"1h"}]}"#,
            r#"{"gateway_rules":[{"status":429,"meaning":"spent","colldown":"1h"}]}"#,
            r#"{"gateway_rules":[{"status":"429","meaning":"spent"}]}"#,
        ] {
            let err = load_text(bad).unwrap_err();
            let text = format!("{err:#}");
            assert!(!text.contains('\n'), "{bad}: {text}");
            assert!(text.contains("gateway_rules"), "{bad}: {text}");
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
            ok.reason_cooldown(Reason::RateLimit),
            Some(SignedDuration::from_hours(2))
        );
    }

    #[test]
    fn round_trips() {
        let mut key = KeyConfig::new("primary");
        key.set_endpoint(Endpoint::parse("https://proxy.example.com").unwrap());
        key.set_cooldown(SignedDuration::from_mins(30));
        let config = Config {
            store: Some(StoreKind::Keyutils),
            keys: vec![key],
            ..Config::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        config.save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), config);
    }

    #[test]
    fn a_bad_gateway_rule_is_named_by_its_place() {
        let err = load_text(r#"{"gateway_rules":[{"status":412,"meaning":"spent"},{"status":412,"meaning":"gone"}]}"#)
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("gateway_rules[1]"), "{text}");
        assert!(text.contains("\"gone\" is not one of spent"), "{text}");
    }

    #[test]
    fn values_are_written_back_as_they_were_spelled() {
        let text = r#"{
  "default_cooldown": "90m",
  "reason_cooldowns": {
    "rate_limit": "120m"
  },
  "keys": [
    {
      "name": "primary",
      "endpoint": "HTTPS://Proxy.Example.com:443/",
      "cooldown": "1h30m"
    }
  ],
  "gateway_rules": [
    {
      "status": 412,
      "body_contains": "Budget",
      "meaning": "spent",
      "cooldown": "90m"
    }
  ]
}
"#;
        let config = load_text(text).unwrap();
        let key = &config.keys[0];
        assert_eq!(
            key.endpoint().map(Endpoint::as_str),
            Some("https://proxy.example.com")
        );
        assert_eq!(key.cooldown(), Some(SignedDuration::from_mins(90)));
        assert_eq!(config.default_cooldown(), SignedDuration::from_mins(90));
        assert_eq!(
            config.cooldown_for(&KeyConfig::new("x"), Some(Reason::RateLimit)),
            SignedDuration::from_hours(2)
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        config.save(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}
