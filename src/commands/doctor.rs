//! `keyswitch doctor`: checks the whole chain from binary to Claude Code, and says how to fix
//! each thing that is wrong. Exit 0 when everything is fine, 1 otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;

use super::{Context, open_keychain, out};
use crate::claude::live::load_record;
use crate::claude::settings_file::SettingsFile;
use crate::claude::wiring::{BASE_URL_VAR, HELPER_KEY, Slot, TTL_VAR, has_hook, is_our_helper};
use crate::config::Config;
use crate::on_path::{OnPath, keyswitch_on_path};
use crate::select::Availability;

/// StopFailure hooks exist since this Claude Code version (claude-code-facts.md).
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
            r.fix("the config file", &crate::error::one_line(&e))?;
            return finish(r);
        }
    };
    check_keys(&mut r, ctx, &config)?;
    check_settings(&mut r, ctx)?;
    check_project_overrides(&mut r)?;
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

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn check_keys(r: &mut Report, ctx: &Context, config: &Config) -> Result<()> {
    if config.keys.is_empty() {
        return r.fix(
            "no keys",
            "add one: printf '%s' \"$KEY\" | keyswitch add primary",
        );
    }
    let keychain = match open_keychain(config) {
        Ok(k) => k,
        Err(e) => return r.fix("the keychain", &crate::error::one_line(&e)),
    };
    let mut readable = true;
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
                readable = false;
                r.fix(
                    &format!("cannot read {}", key.name),
                    &crate::error::one_line(&e),
                )?;
                break;
            }
        }
    }
    if readable {
        r.ok(&format!(
            "{} reachable and unlocked; {} key(s)",
            keychain.kind().describe(),
            config.keys.len()
        ))?;
    }
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

fn check_settings(r: &mut Report, ctx: &Context) -> Result<()> {
    let record = load_record(&ctx.dirs)?;
    let settings = match &record {
        Some(rec) => SettingsFile {
            path: rec.settings.clone(),
        },
        None => SettingsFile::locate(None)?,
    };
    let map = match settings.read() {
        Ok(s) => s.map,
        Err(e) => return r.fix("Claude Code's settings", &crate::error::one_line(&e)),
    };
    let path = settings.path.display();
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
    if has_hook(&map) {
        r.ok("the StopFailure hook marks exhausted keys")?;
    } else {
        r.fix(
            "no StopFailure hook: an exhausted key is not switched automatically",
            "run keyswitch install",
        )?;
    }
    match Slot::Env(TTL_VAR).get(&map).and_then(Value::as_str) {
        Some(ttl) => r.ok(&format!("helper refresh interval {TTL_VAR}={ttl} ms"))?,
        None => r.fix(
            "no helper refresh interval: sessions return to the primary only every 5 minutes",
            "run keyswitch install",
        )?,
    }
    for warning in super::install::overriding_credentials(&map) {
        r.fix("a credential overrides the helper", &warning)?;
    }
    Ok(())
}

fn check_project_overrides(r: &mut Report) -> Result<()> {
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
    Ok(())
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

fn claude_version(claude: &Path) -> Option<(u64, u64, u64)> {
    let mut child = Command::new(claude)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok()?.is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let word = text.split_whitespace().next()?;
    let mut parts = word.split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}
