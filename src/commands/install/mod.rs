//! `keyswitch install`: wiring keyswitch into Claude Code's user settings (and turning proxy
//! mode on or off), recording what it replaced so `uninstall` can take out exactly that.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use serde_json::{Map, Value, json};

use super::Context;
use crate::claude::command_path::shell_quote;
use crate::claude::hook_entry::{ensure_hook, has_hook};
use crate::claude::install_record::{InstallRecord, load_record, note_created};
use crate::claude::live::apply_base_url;
use crate::claude::no_proxy_setting::{add_proxy_entries, remove_proxy_entries};
use crate::claude::settings_change::change_settings;
use crate::claude::settings_file::{SettingsFile, Snapshot};
use crate::claude::slot::Slot;
use crate::claude::wiring::{
    BASE_URL_VAR, HELPER_KEY, HELPER_TTL_MS, RETRIES_VAR, STATUS_LINE_KEY, TTL_VAR, is_our_helper,
    recovered_record, session_env, status_line,
};
use crate::config::Config;
use crate::error::refuse;
use crate::mode::Mode;
use crate::paths::Dirs;
use crate::pool::Pool;
use crate::proxy_settings::{self, DEFAULT_PORT, ProxySettings};
use crate::subscription::record::SubscriptionFirst;
use crate::subscription::wiring as subscription_wiring;

mod upstream;

mod guards;
mod proxy_switch;
mod wanted;
use guards::{guard_subscription, refuse_foreign_helper, refuse_foreign_status_line};
pub(in crate::commands) use proxy_switch::stop_proxy;
use proxy_switch::switch_proxy;
pub(crate) use upstream::{LoopbackProblem, loopback_upstream_problem, proxy_address_as_endpoint};
use upstream::{check_port_usable, prior_base_url};
use wanted::Before;
pub use wanted::Wanted;

/// What the user asked `install` for.
pub struct Asked<'a> {
    pub settings: Option<&'a Path>,
    /// Replace the user's own apiKeyHelper (and status line, with `statusline`).
    pub force: bool,
    pub max_retries: Option<u32>,
    pub statusline: bool,
    /// Wire the helper over a subscription login all the same.
    pub keys_only: bool,
    pub wanted: Wanted,
}

pub fn install(ctx: &Context, asked: Asked<'_>) -> Result<()> {
    let Asked {
        settings,
        force,
        max_retries,
        statusline,
        keys_only,
        wanted,
    } = asked;
    let settings = SettingsFile::locate(settings)?;
    let ours = our_commands()?;
    let now = ctx.now.timestamp();
    let pool = Pool::lock(ctx.dirs.clone(), now)?;
    let saved = saved_record_for(&ctx.dirs, &settings)?;
    // The proxy running now (if any) started with the settings in force until now; a damaged
    // proxy.json is what this install replaces.
    let mode_now = Mode::load(&ctx.dirs);
    let before = Before::of(&mode_now, saved.is_some(), &ctx.dirs);
    let login = crate::subscription_login::find();
    let wanted = wanted.resolve(&before, login.is_some(), keys_only);
    guard_subscription(login.as_deref(), before, wanted, keys_only)?;
    // Checked before anything is written: invalid JSON, entries of the wrong type and a
    // foreign helper stop here.
    let snapshot = settings.read()?;
    refuse_foreign_helper(&settings, &snapshot.map, force)?;
    if statusline {
        refuse_foreign_status_line(&settings, &snapshot.map, force)?;
    }
    let backup = back_up_original(&settings, &snapshot, saved.as_ref())?;
    let previous_proxy = mode_now.ok().and_then(Mode::proxy);
    let base = starting_record(
        &settings,
        &snapshot.map,
        saved.as_ref(),
        pool.config(),
        previous_proxy.as_ref().map(|p| p.listen),
    );
    let proxy = plan_proxy(
        &ctx.dirs,
        wanted,
        previous_proxy.as_ref(),
        &base,
        &snapshot.map,
    )?;
    // Written before the settings point at the proxy: a session must never send a real key to
    // a loopback port because proxy mode is half on.
    if let Some(proxy) = &proxy {
        proxy_settings::save(&ctx.dirs, proxy)?;
    }
    let subscription = (wanted == Wanted::SubscriptionFirst).then(|| SubscriptionFirst {
        helper: ours.helper.clone(),
    });
    // Written before the settings change: from now on the hook and `get` act for it.
    if let Some(record) = &subscription {
        crate::subscription::record::save(&ctx.dirs, record)?;
    }
    // A status line installed before stays (with this binary's path) until uninstall.
    let status_line = (statusline || base.entries.contains_key(&Slot::Top(STATUS_LINE_KEY).id()))
        .then_some(ours.status);
    let wiring = Wiring {
        helper: ours.helper,
        hook: ours.hook,
        status_line,
        max_retries,
        proxy: proxy.as_ref(),
        subscription_first: subscription.is_some(),
    };
    let written = wire(ctx, &settings, &pool, saved.as_ref(), &base, &wiring)?;
    if subscription.is_none() {
        crate::subscription::record::remove(&ctx.dirs)?;
    }
    drop(pool);
    switch_proxy(&ctx.dirs, previous_proxy, proxy.as_ref())?;
    report_wired(&settings, written, &wiring, backup.as_deref())?;
    print_next_steps(ctx)
}

/// The record of an earlier install into these settings; refused when keyswitch is installed
/// in another settings file, or the record is damaged (`uninstall` is the way out of both).
fn saved_record_for(dirs: &Dirs, settings: &SettingsFile) -> Result<Option<InstallRecord>> {
    let saved = load_record(dirs).map_err(|e| refuse(format!("{e:#}")))?;
    match saved.map(|r| with_absolute_settings(r, settings)) {
        Some(r) if r.settings != settings.path => Err(refuse(format!(
            "keyswitch is already installed in {}: run `keyswitch uninstall --settings {}` first",
            r.settings.display(),
            r.settings.display()
        ))),
        saved => Ok(saved),
    }
}

/// A record older versions wrote with a relative settings path (a relative
/// `CLAUDE_CONFIG_DIR`), repaired: when, taken from this folder, it is the file being installed
/// into, the record names it by its absolute path from now on (saved with this install's
/// changes). Otherwise it is left relative, and refused as installed elsewhere.
fn with_absolute_settings(mut record: InstallRecord, settings: &SettingsFile) -> InstallRecord {
    if record.settings.is_relative()
        && std::path::absolute(&record.settings).is_ok_and(|p| p == settings.path)
    {
        record.settings = settings.path.clone();
    }
    record
}

/// A copy of the file as it was before keyswitch first changed it — never of a wired one.
fn back_up_original(
    settings: &SettingsFile,
    snapshot: &Snapshot,
    saved: Option<&InstallRecord>,
) -> Result<Option<PathBuf>> {
    match &snapshot.bytes {
        Some(bytes) if saved.is_none() && !is_wired(&snapshot.map) => {
            settings.backup_original(bytes)
        }
        _ => Ok(None),
    }
}

/// The record this install starts from: the saved one; else, for settings wired without a
/// record (the state folder wiped), one recovered from what is recognisably keyswitch's and
/// the backup — never taking keyswitch's own helper for the user's; else an empty one.
fn starting_record(
    settings: &SettingsFile,
    map: &Map<String, Value>,
    saved: Option<&InstallRecord>,
    config: &Config,
    proxy: Option<SocketAddr>,
) -> InstallRecord {
    match saved {
        Some(record) => record.clone(),
        None if is_wired(map) => recovered_record(
            settings.path.clone(),
            map,
            settings.read_backup().as_ref(),
            &key_endpoints(config),
            proxy,
        ),
        None => InstallRecord {
            settings: settings.path.clone(),
            ..InstallRecord::default()
        },
    }
}

/// Proxy mode's settings, if wanted: the port must be free (or ours) before anything changes,
/// and the upstream is where the user's requests went until now.
fn plan_proxy(
    dirs: &Dirs,
    wanted: Wanted,
    previous: Option<&ProxySettings>,
    base: &InstallRecord,
    map: &Map<String, Value>,
) -> Result<Option<ProxySettings>> {
    let Wanted::Proxy(listen) = wanted else {
        return Ok(None);
    };
    let listen = listen
        .or(previous.map(|p| p.listen))
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)));
    check_port_usable(dirs, listen)?;
    let upstream = prior_base_url(base, map, previous, listen)?;
    if let Some(old) = previous
        && old.upstream != upstream
    {
        say!(
            "keyswitch: the proxy now forwards to {upstream} (it forwarded to {})",
            old.upstream
        );
    }
    let network = recorded_network(map, base, listen)?;
    Ok(Some(ProxySettings {
        listen,
        upstream,
        network,
    }))
}

/// The network settings every background proxy gets: a session's once this install has
/// written the settings — their `env` (the proxy in NO_PROXY) over this environment.
fn recorded_network(
    map: &Map<String, Value>,
    base: &InstallRecord,
    listen: SocketAddr,
) -> Result<BTreeMap<String, String>> {
    let (mut map, mut record) = (map.clone(), base.clone());
    add_proxy_entries(&mut map, &mut record, listen, |var| std::env::var(var).ok());
    crate::proxy::network::to_record(|var| session_env(&map, var))
}

/// What `install` puts into the settings.
struct Wiring<'a> {
    helper: String,
    hook: String,
    /// The `keyswitch status` command for Claude Code's status line, when wanted.
    status_line: Option<String>,
    max_retries: Option<u32>,
    /// Proxy mode's settings; `None` in helper mode.
    proxy: Option<&'a ProxySettings>,
    /// Subscription-first mode: the helper only while a hold is on.
    subscription_first: bool,
}

/// Writes the wiring into the settings (record intent → write settings → finalize, see
/// `change_settings`); returns whether the file changed.
fn wire(
    ctx: &Context,
    settings: &SettingsFile,
    pool: &Pool,
    saved: Option<&InstallRecord>,
    base: &InstallRecord,
    wiring: &Wiring<'_>,
) -> Result<bool> {
    let target = settings.target()?;
    let active = pool.active_key(ctx.now.timestamp()).cloned();
    let (written, _) = change_settings(&ctx.dirs, settings, saved, base, |map, rec| {
        if !target.exists() {
            note_created(&mut rec.created, "file");
        }
        ensure_hook(map, rec, &wiring.hook);
        if let Some(status) = &wiring.status_line {
            rec.set(map, Slot::Top(STATUS_LINE_KEY), status_line(status));
        }
        rec.set(map, Slot::Env(TTL_VAR), json!(HELPER_TTL_MS));
        if let Some(n) = wiring.max_retries {
            rec.set(map, Slot::Env(RETRIES_VAR), json!(n.to_string()));
        }
        match wiring.proxy {
            None if wiring.subscription_first => {
                let held = crate::subscription::hold::load(&ctx.dirs).is_some();
                let (config, active) = (pool.config(), active.as_ref());
                subscription_wiring::apply(map, rec, config, active, &wiring.helper, held);
                remove_proxy_entries(map, rec);
            }
            Some(proxy) => {
                rec.set(map, Slot::Top(HELPER_KEY), json!(wiring.helper));
                rec.adopt_user_value(map, Slot::Env(BASE_URL_VAR));
                rec.set(map, Slot::Env(BASE_URL_VAR), json!(proxy.base_url()));
                add_proxy_entries(map, rec, proxy.listen, |var| std::env::var(var).ok());
            }
            None => {
                rec.set(map, Slot::Top(HELPER_KEY), json!(wiring.helper));
                apply_base_url(map, rec, pool.config(), active.as_ref());
                remove_proxy_entries(map, rec);
            }
        }
        Ok(())
    })?;
    Ok(written)
}

/// What changed, the retry setting the confirmation includes, where the backup is, and any
/// credential that would make Claude Code ignore keyswitch.
fn report_wired(
    settings: &SettingsFile,
    written: bool,
    wiring: &Wiring<'_>,
    backup: Option<&Path>,
) -> Result<()> {
    let path = settings.path.display();
    if written {
        say!(
            "keyswitch: wired into {path}: {}StopFailure hook, helper refresh every {}s{}",
            if wiring.subscription_first {
                ""
            } else {
                "apiKeyHelper, "
            },
            HELPER_TTL_MS.parse::<u64>().unwrap_or(0) / 1000,
            if wiring.status_line.is_some() {
                ", status line"
            } else {
                ""
            }
        );
    } else {
        say!("keyswitch: {path} is already wired; nothing changed");
    }
    if wiring.subscription_first {
        say!(
            "keyswitch: subscription first: sessions use your Claude subscription, with no apiKeyHelper; when its usage limit is reached, that turn fails once and sessions go on your API keys (send the message again) until the limit resets, then back to the subscription. The first turn on a key rebuilds the prompt cache and keeps the session's model, billed to the key"
        );
    }
    match (wiring.max_retries, wiring.proxy) {
        (Some(n), _) => say!(
            "keyswitch: Claude Code retries a failed request at most {n} time(s) ({RETRIES_VAR}={n})"
        ),
        (None, None) => say!(
            "keyswitch: retries left to Claude Code (up to about 3 minutes on a 429 without a retry-after before the key switches, at once with a long one; --max-retries 2 shortens the retries)"
        ),
        // In proxy mode a 429 never reaches Claude Code while another key is ready.
        (None, Some(_)) => {}
    }
    if let Some(backup) = backup {
        say!(
            "keyswitch: a copy of {path} as it was before keyswitch first changed it is at {}",
            backup.display()
        );
    }
    for warning in overriding_credentials(&settings.read()?.map) {
        crate::messages::warn(format_args!("{warning}"));
    }
    Ok(())
}

/// The one set of next steps (install.sh prints none of its own), with a command that works
/// as printed: the full path when `keyswitch` on PATH is not this binary.
fn print_next_steps(ctx: &Context) -> Result<()> {
    let config = Config::load(&ctx.dirs.config_file())?;
    let ks = crate::on_path::command_name();
    if config.keys.is_empty() {
        say!(
            "keyswitch: next: add your keys, primary first, each secret from a hidden prompt: `{ks} add primary`, `{ks} add fallback`; then check the setup: `{ks} doctor`"
        );
    } else {
        say!("keyswitch: next: check the setup: `{ks} doctor`");
    }
    Ok(())
}

/// The commands install writes, all running this binary by its full path.
struct OurCommands {
    helper: String,
    hook: String,
    status: String,
}

fn our_commands() -> Result<OurCommands> {
    let exe = crate::on_path::this_binary().context("cannot tell where the keyswitch binary is")?;
    let exe = exe.to_str().ok_or_else(|| {
        anyhow!(
            "the path of the keyswitch binary, {}, is not valid text: install it elsewhere",
            exe.display()
        )
    })?;
    let exe = shell_quote(exe);
    Ok(OurCommands {
        helper: format!("{exe} get"),
        hook: format!("{exe} hook stop-failure"),
        status: format!("{exe} status"),
    })
}

pub(super) fn key_endpoints(config: &Config) -> Vec<String> {
    config
        .keys
        .iter()
        .filter_map(|k| k.endpoint_text().map(str::to_string))
        .collect()
}

/// Whether the settings hold something of keyswitch's.
fn is_wired(map: &Map<String, Value>) -> bool {
    map.get(HELPER_KEY)
        .and_then(Value::as_str)
        .is_some_and(is_our_helper)
        || has_hook(map)
}

/// Credentials that make Claude Code ignore the helper, from the environment or the settings.
pub fn overriding_credentials(settings: &Map<String, Value>) -> Vec<String> {
    let mut found = Vec::new();
    for var in ["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"] {
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            found.push(format!(
                "{var} is set in your environment: Claude Code then ignores keyswitch; unset it (check your shell profile)"
            ));
        }
        if Slot::Env(var).get(settings).is_some() {
            found.push(format!(
                "{var} is set in the env block of Claude Code's settings: Claude Code then ignores keyswitch; remove it there"
            ));
        }
    }
    found
}
