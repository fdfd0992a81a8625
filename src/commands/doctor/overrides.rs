//! What a settings layer above the user's (managed settings, a project's `.claude/` files)
//! overrides of keyswitch's wiring — `apiKeyHelper`, `ANTHROPIC_BASE_URL`, the credentials that
//! win over the helper, the hook — and what can be done about each. The managed layer is IT's,
//! so its fixes say what to ask for; a project's the user can edit.

use anyhow::Result;
use serde_json::{Map, Value};

use super::Report;
use crate::claude::hook_entry::has_hook;
use crate::claude::slot::Slot;
use crate::claude::wiring::{BASE_URL_VAR, HELPER_KEY, is_our_helper};
use crate::config::Config;
use crate::endpoint::{key_belongs, redact_url, session_endpoint};
use crate::proxy_settings::ProxySettings;

/// A settings layer that wins over the user settings keyswitch writes.
pub(super) struct Layer<'a> {
    /// "the managed settings (/etc/claude-code/managed-settings.json)", or a project file.
    pub name: String,
    pub map: &'a Map<String, Value>,
    /// IT's (managed), not the user's to edit.
    pub managed: bool,
}

/// What keyswitch set up, to judge an override against.
pub(super) struct Wiring<'a> {
    pub config: &'a Config,
    /// Proxy mode's settings; `None` in helper mode.
    pub proxy: Option<&'a ProxySettings>,
    /// The base URL sessions had before keyswitch (helper mode's keys without an endpoint).
    pub user_default: Option<&'a str>,
}

impl Layer<'_> {
    /// How to get rid of something this layer sets.
    fn remove(&self, what: &str) -> String {
        if self.managed {
            format!("ask IT to take {what} out of the managed settings")
        } else {
            format!("remove {what} there")
        }
    }
}

/// An `apiKeyHelper` of another program, and credentials that win over any helper.
pub(super) fn check_credentials(r: &mut Report, layer: &Layer) -> Result<()> {
    if let Some(helper) = layer.map.get(HELPER_KEY).and_then(Value::as_str)
        && !is_our_helper(helper)
    {
        r.fix(
            &format!(
                "{} sets its own apiKeyHelper, which wins over keyswitch's: Claude Code never runs keyswitch get{}",
                layer.name,
                if layer.managed { "" } else { " in this project" }
            ),
            &layer.remove("apiKeyHelper"),
        )?;
    }
    for var in ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"] {
        if Slot::Env(var).get(layer.map).is_some() {
            r.fix(
                &format!(
                    "{} sets {var}, which wins over apiKeyHelper: Claude Code sends it instead of keyswitch's keys",
                    layer.name
                ),
                &layer.remove(var),
            )?;
        }
    }
    Ok(())
}

/// Hooks turned off (`disableAllHooks`), or only the managed ones allowed
/// (`allowManagedHooksOnly`, without keyswitch's among them): in helper mode the StopFailure
/// hook is what switches a spent key.
pub(super) fn check_hooks(r: &mut Report, layer: &Layer, wiring: &Wiring) -> Result<()> {
    let on = |key: &str| layer.map.get(key).and_then(Value::as_bool) == Some(true);
    let setting = if on("disableAllHooks") {
        "disableAllHooks"
    } else if layer.managed && on("allowManagedHooksOnly") && !has_hook(layer.map) {
        "allowManagedHooksOnly"
    } else {
        return Ok(());
    };
    if wiring.proxy.is_some() {
        return r.info(&format!(
            "{} sets {setting}, so keyswitch's StopFailure hook does not run; in proxy mode it only logs, and the proxy switches keys itself",
            layer.name
        ));
    }
    r.fix(
        &format!(
            "{} sets {setting}, so keyswitch's StopFailure hook never runs: a spent key is not switched, and turns fail on it until it is marked by hand (keyswitch mark-exhausted)",
            layer.name
        ),
        &format!(
            "{}, or use proxy mode, which needs no hook: keyswitch install --proxy",
            layer.remove(setting)
        ),
    )
}

/// A managed `ANTHROPIC_BASE_URL`: it wins over the one keyswitch writes into the user
/// settings (measured), so proxy mode's sessions never reach the proxy, and helper mode cannot
/// move sessions to a key's endpoint.
pub(super) fn check_managed_base_url(r: &mut Report, layer: &Layer, wiring: &Wiring) -> Result<()> {
    let Some(url) = Slot::Env(BASE_URL_VAR)
        .get(layer.map)
        .and_then(Value::as_str)
    else {
        return Ok(());
    };
    let shown = redact_url(url);
    if let Some(proxy) = wiring.proxy {
        if session_endpoint(Some(url)) == session_endpoint(Some(&proxy.base_url())) {
            return r.ok(&format!(
                "{} points ANTHROPIC_BASE_URL at the proxy",
                layer.name
            ));
        }
        return r.fix(
            &format!(
                "{} set ANTHROPIC_BASE_URL to {shown}, which wins over keyswitch's {}: sessions never reach the proxy, and keyswitch get refuses them the proxy's token, so every turn fails (\"apiKeyHelper script is failing\")",
                layer.name,
                proxy.base_url()
            ),
            &format!(
                "proxy mode cannot work under it; use helper mode with the keys tied to that URL (keyswitch install --helper, then keyswitch set NAME --endpoint {shown} for each key), or ask IT to leave ANTHROPIC_BASE_URL out of the managed settings or set it to {}",
                proxy.base_url()
            ),
        );
    }
    let session = session_endpoint(Some(url));
    let managed: Vec<_> = wiring
        .config
        .keys
        .iter()
        .filter_map(|k| k.endpoint().cloned())
        .collect();
    let (belong, others): (Vec<_>, Vec<_>) = wiring
        .config
        .keys
        .iter()
        .partition(|k| key_belongs(k.endpoint(), &session, &managed, wiring.user_default));
    let names = |keys: &[&crate::config::KeyConfig]| {
        keys.iter()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if belong.is_empty() && !others.is_empty() {
        return r.fix(
            &format!(
                "{} set ANTHROPIC_BASE_URL to {shown}, which wins over keyswitch's, and no key belongs to it: keyswitch get hands out none there, so every turn fails",
                layer.name
            ),
            &format!(
                "tie a key to it (keyswitch set NAME --endpoint {shown}), or ask IT to leave ANTHROPIC_BASE_URL out of the managed settings"
            ),
        );
    }
    if others.is_empty() {
        return r.ok(&format!(
            "{} set ANTHROPIC_BASE_URL to {shown}, where every key belongs",
            layer.name
        ));
    }
    r.info(&format!(
        "{} set ANTHROPIC_BASE_URL to {shown}, which wins over keyswitch's: {} (for other upstreams) are never used, since keyswitch cannot move sessions to their endpoints; sessions use {}",
        layer.name,
        names(&others),
        names(&belong)
    ))
}
