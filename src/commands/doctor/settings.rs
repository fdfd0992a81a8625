//! doctor's checks of Claude Code's settings: the user settings keyswitch installed into (the
//! helper, the hook, the refresh interval, the retries, credentials that win over the helper),
//! and a project's own `.claude/` files in the current folder, which win over them.

use std::path::Path;

use anyhow::Result;
use serde_json::{Map, Value};

use super::Report;
use super::overrides::{Layer, Wiring, check_credentials, check_hooks};
use super::proxy::check_project_network;
use crate::claude::hook_entry::has_hook;
use crate::claude::install_record::{InstallRecord, load_record};
use crate::claude::settings_file::SettingsFile;
use crate::claude::slot::Slot;
use crate::claude::wiring::{BASE_URL_VAR, HELPER_KEY, RETRIES_VAR, TTL_VAR, is_our_helper};
use crate::commands::Context;

pub(super) fn check_settings(r: &mut Report, ctx: &Context, proxy_mode: bool) -> Result<()> {
    let record = load_record(&ctx.dirs)?;
    let settings = match record.as_ref().map(InstallRecord::settings_file) {
        Some(Ok(settings)) => settings,
        Some(Err(e)) => return r.fix("Claude Code's settings", &crate::error::one_line(&e)),
        None => SettingsFile::locate(None)?,
    };
    let map = match settings.read() {
        Ok(s) => s.map,
        Err(e) => return r.fix("Claude Code's settings", &crate::error::one_line(&e)),
    };
    // Subscription-first mode: whether the helper should be there (during a hold).
    let held = crate::mode::Mode::load(&ctx.dirs)
        .is_ok_and(|m| m.is_subscription_first())
        .then(|| crate::subscription::hold::load(&ctx.dirs).is_some());
    if let Some(false) = held {
        check_no_helper(r, &settings.path, &map)?;
        check_hook(r, &map, proxy_mode)?;
    } else {
        check_helper_and_hook(r, &settings.path, &map, proxy_mode)?;
    }
    check_refresh_and_retries(r, &map, proxy_mode)?;
    for warning in crate::commands::install::overriding_credentials(&map) {
        r.fix("a credential overrides the helper", &warning)?;
    }
    Ok(())
}

fn check_helper_and_hook(
    r: &mut Report,
    path: &Path,
    map: &Map<String, Value>,
    proxy_mode: bool,
) -> Result<()> {
    let path = path.display();
    match map.get(HELPER_KEY).and_then(Value::as_str) {
        Some(helper) if is_our_helper(helper) => {
            r.ok(&format!("apiKeyHelper runs keyswitch ({path})"))?
        }
        Some(_) => r.fix(
            &format!("{path} sets another apiKeyHelper"),
            "run keyswitch install --force",
        )?,
        None => r.fix(
            &format!("{path} has no apiKeyHelper"),
            "run keyswitch install",
        )?,
    }
    check_hook(r, map, proxy_mode)
}

/// Subscription-first mode with no hold on: keyswitch's helper would bill every request to the
/// keys.
fn check_no_helper(r: &mut Report, path: &Path, map: &Map<String, Value>) -> Result<()> {
    let path = path.display();
    match map.get(HELPER_KEY).and_then(Value::as_str) {
        None => r.ok(&format!(
            "no apiKeyHelper in {path}: sessions use your subscription (subscription first)"
        )),
        Some(helper) if is_our_helper(helper) => r.fix(
            &format!("{path} wires keyswitch's apiKeyHelper while the subscription is not held: every request is billed to your keys"),
            "run keyswitch install, which takes it out",
        ),
        Some(_) => r.fix(
            &format!("{path} sets an apiKeyHelper of its own: it wins over your subscription login, so every request is billed to that helper's key"),
            "remove it from the settings to use the subscription",
        ),
    }
}

fn check_hook(r: &mut Report, map: &Map<String, Value>, proxy_mode: bool) -> Result<()> {
    if has_hook(map) && proxy_mode {
        r.ok("the StopFailure hook is in place (in proxy mode it only logs: the proxy switches keys within the request)")?;
    } else if has_hook(map) && !hook_matches_current(map) {
        r.fix(
            "the StopFailure hook is an older keyswitch's: it does not fire on a gateway's budget answer that Claude Code calls unknown or invalid_request (LiteLLM's 422)",
            "run keyswitch install",
        )?;
    } else if has_hook(map) {
        r.ok("the StopFailure hook marks exhausted keys")?;
    } else {
        r.fix(
            "no StopFailure hook: an exhausted key is not switched automatically",
            "run keyswitch install",
        )?;
    }
    Ok(())
}

/// Whether keyswitch's hook fires on every error word this keyswitch judges.
fn hook_matches_current(map: &Map<String, Value>) -> bool {
    map.get("hooks")
        .and_then(|h| h.get(crate::claude::hook_entry::HOOK_EVENT))
        .and_then(Value::as_array)
        .is_some_and(|groups| {
            groups.iter().any(|g| {
                g.get("matcher").and_then(Value::as_str)
                    == Some(crate::claude::hook_entry::HOOK_MATCHER)
            })
        })
}

/// The helper's refresh interval, and Claude Code's retries before a failed request reaches
/// the hook.
fn check_refresh_and_retries(
    r: &mut Report,
    map: &Map<String, Value>,
    proxy_mode: bool,
) -> Result<()> {
    match Slot::Env(TTL_VAR).get(map).and_then(Value::as_str) {
        Some(ttl) => r.ok(&format!("helper refresh interval {TTL_VAR}={ttl} ms"))?,
        None => r.fix(
            "no helper refresh interval: sessions return to the primary only every 5 minutes",
            "run keyswitch install",
        )?,
    }
    let retries = Slot::Env(RETRIES_VAR)
        .get(map)
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
        .or_else(|| std::env::var(RETRIES_VAR).ok());
    match retries {
        Some(n) => r.ok(&format!(
            "Claude Code retries a failed request {n} time(s) ({RETRIES_VAR}={n}), so an exhausted key fails over sooner"
        )),
        // In proxy mode a 429 reaches Claude Code only when no key is left.
        None if proxy_mode => Ok(()),
        None => r.info(&format!(
            "{RETRIES_VAR} not set: on a 429 without a retry-after Claude Code retries for up to about 3 minutes before the hook switches keys (a long retry-after fails the turn at once; keyswitch install --max-retries 2 shortens the retries; see README)"
        )),
    }
}

/// A project's `.claude/settings.json` and `settings.local.json` in the current folder: they
/// win over the user settings in this project.
pub(super) fn check_project_overrides(
    r: &mut Report,
    ctx: &Context,
    wiring: &Wiring,
) -> Result<()> {
    let Ok(cwd) = std::env::current_dir() else {
        return Ok(());
    };
    for name in ["settings.json", "settings.local.json"] {
        let path = cwd.join(".claude").join(name);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if crate::claude::project_env::is_the_user_settings(&path) {
            continue;
        }
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&bytes) else {
            r.fix(
                &format!("{} is not valid JSON", path.display()),
                "fix it; Claude Code reads it in this folder",
            )?;
            continue;
        };
        let layer = Layer {
            name: path.display().to_string(),
            map: &map,
            managed: false,
        };
        check_credentials(r, &layer)?;
        check_hooks(r, &layer, wiring)?;
        if Slot::Env(BASE_URL_VAR).get(&map).is_some() {
            let how = match wiring.proxy {
                Some(proxy) => format!(
                    "remove it there: in proxy mode sessions must talk to the proxy ({}), and keyswitch get refuses the token to any other",
                    proxy.base_url()
                ),
                None => "remove it there, or give the keys endpoints that match (keyswitch set NAME --endpoint URL)".to_string(),
            };
            r.fix(
                &format!(
                    "{} sets ANTHROPIC_BASE_URL, which wins over the endpoint keyswitch sets",
                    path.display()
                ),
                &how,
            )?;
        }
    }
    check_project_network(r, ctx, &cwd)
}
