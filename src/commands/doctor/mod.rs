//! `keyswitch doctor`: runs the whole chain from the binary to Claude Code — the keychain, the
//! keys and their cooldowns, the settings (the user's, the managed ones, a project's), the
//! proxy's own view, each upstream's reachability — and says how to fix each thing that would
//! fail a turn. Exit 0 when nothing would, 1 otherwise; `--json` for scripts.

mod headroom;
mod keys;
mod managed;
mod overrides;
mod proxy;
mod report;
mod settings;
mod subscription;
mod upstreams;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use super::Context;
use crate::claude::install_record::load_record;
use crate::claude::live::user_default_base_url;
use crate::config::Config;
use crate::mode::{Mode, proxy_chosen};
use crate::on_path::{OnPath, keyswitch_on_path};
use overrides::Wiring;
use proxy::{check_loopback_upstreams, check_proxy, report_last_good_config};
use report::Report;

/// StopFailure hooks exist since this Claude Code version (docs/facts/claude-code-facts.md).
const MIN_CLAUDE: (u64, u64, u64) = (2, 1, 78);

pub fn run(ctx: &Context, json: bool) -> Result<()> {
    let mut r = Report::new(json);
    r.at("binary");
    check_binary(&mut r)?;
    r.at("config");
    let config = match Config::load(&ctx.dirs.config_file()) {
        Ok(c) => c,
        Err(e) => {
            r.problem(&crate::error::one_line(&e))?;
            report_last_good_config(&mut r, ctx)?;
            return r.finish();
        }
    };
    let mode = Mode::load(&ctx.dirs);
    // The slow part, under way while the rest is checked.
    let default = upstreams::default_upstream(ctx, &config, mode.as_ref().ok());
    let reaching = upstreams::start(&config, mode.as_ref().ok(), &default);
    r.at("keychain");
    keys::check_keys(&mut r, ctx, &config)?;
    r.at("keys");
    keys::check_availability(&mut r, ctx, &config)?;
    r.at("gateways");
    upstreams::check_gateways(&mut r, ctx, &config)?;
    if proxy_chosen(&mode) {
        r.at("headroom");
        headroom::check(&mut r, ctx, &config)?;
    }
    r.at("settings");
    settings::check_settings(&mut r, ctx, proxy_chosen(&mode))?;
    let record = load_record(&ctx.dirs).ok().flatten();
    let user_default = user_default_base_url(record.as_ref());
    let proxy_settings = match &mode {
        Ok(Mode::Proxy(proxy)) => Some(proxy),
        _ => None,
    };
    let wiring = Wiring {
        config: &config,
        proxy: proxy_settings,
        user_default: user_default.as_deref(),
    };
    r.at("managed-settings");
    managed::check(&mut r, &wiring)?;
    r.at("project-settings");
    settings::check_project_overrides(&mut r, ctx, &wiring)?;
    r.at("proxy");
    check_loopback_upstreams(&mut r, ctx, &config, mode.as_ref().ok())?;
    check_proxy(&mut r, ctx, &config, &default, mode)?;
    r.at("upstreams");
    upstreams::report(&mut r, reaching)?;
    r.at("subscription");
    subscription::check(&mut r, ctx)?;
    r.at("claude");
    check_claude_version(&mut r)?;
    r.finish()
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
    let mut command = Command::new(claude);
    command.arg("--version");
    parse_version(&crate::bounded_command::first_line(
        command,
        VERSION_DEADLINE,
    )?)
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
    fn versions_are_read_from_the_first_word() {
        assert_eq!(parse_version("2.1.328 (Claude Code)\n"), Some((2, 1, 328)));
        assert_eq!(parse_version("claude 2"), None);
        assert_eq!(parse_version(""), None);
    }
}
