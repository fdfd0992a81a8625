//! `keyswitch doctor`: checks the whole chain from binary to Claude Code, and says how to fix
//! each thing that is wrong. Exit 0 when everything is fine, 1 otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use serde_json::{Map, Value};

use super::{Context, open_keychain, out};
use crate::claude::hook_entry::has_hook;
use crate::claude::install_record::{InstallRecord, load_record};
use crate::claude::settings_file::SettingsFile;
use crate::claude::slot::Slot;
use crate::claude::wiring::{BASE_URL_VAR, HELPER_KEY, RETRIES_VAR, TTL_VAR, is_our_helper};
use crate::config::Config;
use crate::mode::{Mode, proxy_chosen};
use crate::on_path::{OnPath, keyswitch_on_path};
use crate::select::Availability;
use crate::store::Keychain;

/// StopFailure hooks exist since this Claude Code version (docs/facts/claude-code-facts.md).
mod proxy;

use proxy::{
    check_loopback_upstreams, check_project_network, check_proxy, report_last_good_config,
};

const MIN_CLAUDE: (u64, u64, u64) = (2, 1, 78);

struct Report {
    problems: usize,
}

impl Report {
    fn ok(&mut self, what: &str) -> Result<()> {
        out(&format!("ok    {what}"))
    }
    fn fix(&mut self, what: &str, how: &str) -> Result<()> {
        self.problems += 1;
        out(&format!("FIX   {what}: {how}"))
    }
    /// A problem whose message names its way out already (most of keyswitch's errors do).
    fn problem(&mut self, message: &str) -> Result<()> {
        self.problems += 1;
        out(&format!("FIX   {message}"))
    }
    fn info(&mut self, what: &str) -> Result<()> {
        out(&format!("info  {what}"))
    }
}

pub fn run(ctx: &Context) -> Result<()> {
    let mut r = Report { problems: 0 };
    check_binary(&mut r)?;
    let config = match Config::load(&ctx.dirs.config_file()) {
        Ok(c) => c,
        Err(e) => {
            r.problem(&crate::error::one_line(&e))?;
            report_last_good_config(&mut r, ctx)?;
            return finish(r);
        }
    };
    check_keys(&mut r, ctx, &config)?;
    check_gateways(&mut r, ctx, &config)?;
    let mode = Mode::load(&ctx.dirs);
    check_settings(&mut r, ctx, proxy_chosen(&mode))?;
    check_loopback_upstreams(&mut r, ctx, &config, mode.as_ref().ok())?;
    check_proxy(&mut r, ctx, &config, mode)?;
    check_project_overrides(&mut r, ctx)?;
    check_claude_version(&mut r)?;
    finish(r)
}

fn finish(r: Report) -> Result<()> {
    if r.problems == 0 {
        out("keyswitch is ready")
    } else {
        Err(anyhow::anyhow!(
            "{} problem{} found; fix {} above",
            r.problems,
            if r.problems == 1 { "" } else { "s" },
            if r.problems == 1 { "it" } else { "them" }
        ))
    }
}

fn check_binary(r: &mut Report) -> Result<()> {
    match keyswitch_on_path() {
        OnPath::Me(found) => r.ok(&format!("keyswitch is on PATH ({})", found.display())),
        OnPath::Other(found) => r.fix(
            &format!(
                "the keyswitch on PATH ({}) is not this one",
                found.display()
            ),
            "run ./install.sh again, or put the right folder first on PATH",
        ),
        OnPath::Missing => r.fix(
            "keyswitch is not on PATH",
            "add its folder (~/.local/bin by default) to PATH in your shell profile",
        ),
    }
}

/// The program a shell would run for `name`: on Windows with PATHEXT's extensions, since npm
/// installs Claude Code there as `claude.cmd`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    which::which(name).ok()
}

fn check_keys(r: &mut Report, ctx: &Context, config: &Config) -> Result<()> {
    r.info(&format!(
        "the config file is {}",
        ctx.dirs.config_file().display()
    ))?;
    check_endpoints(r, config)?;
    // The keychain even with no keys yet: a missing keychain is what `add` would run into.
    let keychain = match open_keychain(config) {
        Ok(k) => k,
        Err(e) => {
            r.fix("the keychain", &crate::error::one_line(&e))?;
            if config.keys.is_empty() {
                r.fix("no keys", "once the keychain works, add one: printf '%s' \"$KEY\" | keyswitch add primary")?;
            }
            return Ok(());
        }
    };
    if config.keys.is_empty() {
        // Looking up a name that is never stored proves the keychain answers.
        return match keychain.read(".keyswitch-doctor-probe") {
            Ok(_) => {
                r.ok(&format!("{} reachable", keychain.kind().describe()))?;
                r.fix(
                    "no keys",
                    "add one: printf '%s' \"$KEY\" | keyswitch add primary",
                )
            }
            Err(e) => r.fix("the keychain", &crate::error::one_line(&e)),
        };
    }
    check_secrets(r, &keychain, config)?;
    check_set_aside(r, ctx, config)
}

/// Every key has a secret in the keychain, and the keychain lets it be read.
fn check_secrets(r: &mut Report, keychain: &Keychain, config: &Config) -> Result<()> {
    for key in &config.keys {
        match keychain.read(&key.name) {
            Ok(Some(_)) => {}
            Ok(None) => {
                r.fix(
                    &format!(
                        "{} has no secret in {}",
                        key.name,
                        keychain.kind().describe()
                    ),
                    &format!("store it: keyswitch add {} --replace", key.name),
                )?;
            }
            Err(e) => {
                return r.fix(
                    &format!("cannot read {}", key.name),
                    &crate::error::one_line(&e),
                );
            }
        }
    }
    r.ok(&format!(
        "{} reachable and unlocked; {} key(s)",
        keychain.kind().describe(),
        config.keys.len()
    ))
}

/// Keys the API rejected stay aside until given a valid secret.
fn check_set_aside(r: &mut Report, ctx: &Context, config: &Config) -> Result<()> {
    let now = ctx.now.timestamp();
    let (state, _) = crate::state::State::load(&ctx.dirs.state_file(), now, false)?;
    for key in &config.keys {
        if Availability::of(state.cooldowns.get(&key.name), now) == Availability::SetAside {
            r.fix(
                &format!(
                    "{} was rejected by the API (authentication failed) and is set aside",
                    key.name
                ),
                &format!(
                    "give it a valid secret: keyswitch add {} --replace (or keyswitch reset {})",
                    key.name, key.name
                ),
            )?;
        }
    }
    Ok(())
}

/// Endpoints copied from documentation (`https://your-proxy.example.com`) point nowhere: the
/// RFC 2606 names are reserved for examples.
fn check_endpoints(r: &mut Report, config: &Config) -> Result<()> {
    for key in &config.keys {
        let Some(endpoint) = key.endpoint_text() else {
            continue;
        };
        if is_placeholder_endpoint(endpoint) {
            r.fix(
                &format!(
                    "{}'s endpoint {endpoint} is a documentation example, not a real server",
                    key.name
                ),
                &format!(
                    "put the real URL in keys[].endpoint of the config, or run keyswitch add {} --replace --endpoint URL",
                    key.name
                ),
            )?;
        }
    }
    Ok(())
}

fn is_placeholder_endpoint(endpoint: &str) -> bool {
    let Some(host) = url::Url::parse(endpoint).ok().and_then(|u| {
        u.host_str()
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
    }) else {
        return false;
    };
    ["example.com", "example.net", "example.org", "example"]
        .iter()
        .any(|reserved| host == *reserved || host.ends_with(&format!(".{reserved}")))
        || host.ends_with(".invalid")
}

fn check_settings(r: &mut Report, ctx: &Context, proxy_mode: bool) -> Result<()> {
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
    check_helper_and_hook(r, &settings.path, &map, proxy_mode)?;
    check_refresh_and_retries(r, &map, proxy_mode)?;
    for warning in super::install::overriding_credentials(&map) {
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

/// The gateways the proxy has seen answer, and the user's rules for the ones keyswitch does
/// not know.
fn check_gateways(r: &mut Report, ctx: &Context, config: &Config) -> Result<()> {
    for (endpoint, gateway) in crate::gateway::seen::load(&ctx.dirs.gateways_seen()) {
        let endpoint = crate::endpoint::redact_url(&endpoint);
        if gateway.budget_answers_known() {
            r.ok(&format!(
                "{endpoint} is {}: its budget and rate-limit answers are recognised",
                gateway.describe()
            ))?;
        } else {
            r.info(&format!(
                "{endpoint} is {}: if its budget answers are not recognised, add gateway_rules to the config (see docs/gateways.md)",
                gateway.describe()
            ))?;
        }
    }
    for (index, rule) in config.gateway_rules().iter().enumerate() {
        r.info(&format!("gateway_rules[{index}]: {}", rule.describe()))?;
    }
    Ok(())
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

fn check_project_overrides(r: &mut Report, ctx: &Context) -> Result<()> {
    let Ok(cwd) = std::env::current_dir() else {
        return Ok(());
    };
    for name in ["settings.json", "settings.local.json"] {
        let path = cwd.join(".claude").join(name);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&bytes) else {
            r.fix(
                &format!("{} is not valid JSON", path.display()),
                "fix it; Claude Code reads it in this folder",
            )?;
            continue;
        };
        if map.contains_key(HELPER_KEY) {
            r.fix(
                &format!(
                    "{} sets its own apiKeyHelper, which wins over keyswitch in this project",
                    path.display()
                ),
                "remove apiKeyHelper there",
            )?;
        }
        if Slot::Env(BASE_URL_VAR).get(&map).is_some() {
            r.fix(
                &format!(
                    "{} sets ANTHROPIC_BASE_URL, which wins over the endpoint keyswitch sets",
                    path.display()
                ),
                "remove it there, or give the keys endpoints that match",
            )?;
        }
    }
    check_project_network(r, ctx, &cwd)
}

fn check_claude_version(r: &mut Report) -> Result<()> {
    let Some(claude) = find_on_path("claude") else {
        return r.info("claude is not on PATH; skipped the version check");
    };
    match claude_version(&claude) {
        Some(v) if v >= MIN_CLAUDE => r.ok(&format!(
            "Claude Code {}.{}.{} supports the StopFailure hook",
            v.0, v.1, v.2
        )),
        Some(v) => r.fix(
            &format!(
                "Claude Code {}.{}.{} is older than 2.1.78, which added the StopFailure hook",
                v.0, v.1, v.2
            ),
            "update Claude Code (claude update)",
        ),
        None => r.info("could not read `claude --version`"),
    }
}

/// How long doctor waits for `claude --version`.
const VERSION_DEADLINE: Duration = Duration::from_secs(10);

/// Runs `claude --version` and reads its first line, giving up at [`VERSION_DEADLINE`]. The line
/// is read on a thread: a wrapper script can exit while a child of it still holds the pipe open,
/// and waiting for the pipe to close would not be bounded by anything.
fn claude_version(claude: &Path) -> Option<(u64, u64, u64)> {
    let mut child = Command::new(claude)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = send.send(line);
    });
    let line = receive.recv_timeout(VERSION_DEADLINE).ok();
    // Whatever happened, leave no child behind; the reader thread ends with the process.
    if child.try_wait().ok().flatten().is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    parse_version(&line?)
}

fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let word = text.split_whitespace().next()?;
    let mut parts = word.split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documentation_endpoints_are_recognised() {
        for placeholder in [
            "https://your-proxy.example.com",
            "https://example.com/v1",
            "http://proxy.EXAMPLE.org.",
            "https://api.example",
            "https://x.invalid",
        ] {
            assert!(is_placeholder_endpoint(placeholder), "{placeholder}");
        }
        for real in [
            "https://api.anthropic.com",
            "https://example.company.com",
            "https://notexample.com",
            "http://127.0.0.1:8080",
        ] {
            assert!(!is_placeholder_endpoint(real), "{real}");
        }
    }

    #[test]
    fn versions_are_read_from_the_first_word() {
        assert_eq!(parse_version("2.1.328 (Claude Code)\n"), Some((2, 1, 328)));
        assert_eq!(parse_version("claude 2"), None);
        assert_eq!(parse_version(""), None);
    }
}
