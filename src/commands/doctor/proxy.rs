//! doctor's checks of proxy mode: the proxy answers and proves it holds the token, the settings
//! point at it, its network settings and a project's reach it directly, and the loopback
//! upstreams it forwards to are the user's.

use anyhow::Result;
use serde_json::Value;

use super::Report;
use crate::claude::install_record::{InstallRecord, load_record};
use crate::claude::settings_file::SettingsFile;
use crate::claude::slot::Slot;
use crate::claude::wiring::{BASE_URL_VAR, HELPER_KEY, is_our_helper, session_env};
use crate::commands::Context;
use crate::config::Config;
use crate::mode::Mode;
use crate::proxy_client::{Probe, probe};
use crate::proxy_protocol::{Health, VERSION};

/// With the config file broken: whether the running proxy still serves from the last config
/// that parsed (it does, and says since when, in its proved health answer).
pub(super) fn report_last_good_config(r: &mut Report, ctx: &Context) -> Result<()> {
    let Ok(Mode::Proxy(proxy)) = Mode::load(&ctx.dirs) else {
        return Ok(());
    };
    let Ok(token) = crate::proxy_token::ensure_token(&ctx.dirs) else {
        return Ok(());
    };
    if let Probe::Ours(Health {
        config_problem: Some(since),
        pid,
        ..
    }) = probe(proxy.listen, &token)
    {
        r.info(&format!(
            "the proxy (pid {pid}) serves from the last config that parsed ({since}); it takes up the file once it parses"
        ))?;
    }
    Ok(())
}

/// Proxy mode: the settings point at the proxy, and the port is the proxy's (or free, for `get`
/// to start it on).
pub(super) fn check_proxy(
    r: &mut Report,
    ctx: &Context,
    config: &Config,
    default: &str,
    mode: Result<Mode>,
) -> Result<()> {
    let proxy = match mode {
        Ok(Mode::Proxy(proxy)) => proxy,
        Ok(Mode::Helper) => {
            check_proxy_remnant(r, ctx, config)?;
            if !crate::commands::proxy::installed(ctx) {
                return r.info("no mode yet: keyswitch is not installed (keyswitch install turns on proxy mode)");
            }
            return r.info("helper mode (keyswitch install --proxy turns on proxy mode)");
        }
        Ok(Mode::SubscriptionFirst(_)) => {
            check_proxy_remnant(r, ctx, config)?;
            return r.info("subscription-first mode: sessions use your Claude subscription, and API keys only while its limit holds (keyswitch install --proxy --keys-only turns on proxy mode, billing every request to the keys)");
        }
        Err(e) => {
            return r.fix("the proxy settings", &crate::error::one_line(&e));
        }
    };
    let (settings, map) = user_settings(ctx)?;
    let base_url = Slot::Env(BASE_URL_VAR).get(&map).cloned();
    // What a session started from this shell would have: the settings' env over the shell's.
    let session = |var: &str| session_env(&map, var);
    if let Some(var) = crate::no_proxy::proxied_by(proxy.listen, session) {
        r.fix(
            &crate::no_proxy::proxied_problem(var, proxy.listen),
            "run keyswitch install --proxy, which adds it to the settings' NO_PROXY",
        )?;
    }
    let differing = crate::proxy::network::differing(&proxy.network, session);
    if !differing.is_empty() {
        r.info(&format!(
            "a session started from here has other network settings ({}) than the proxy, which keeps those recorded at install; `keyswitch install --proxy` from here records these",
            differing.join(", ")
        ))?;
    }
    if base_url.as_ref().and_then(Value::as_str) == Some(proxy.base_url().as_str()) {
        r.ok(&format!(
            "proxy mode: Claude Code talks to {}, which forwards {}",
            proxy.base_url(),
            crate::key_upstreams::describe(config, default)
        ))?;
    } else {
        r.fix(
            &format!(
                "proxy mode is on, but {} does not point ANTHROPIC_BASE_URL at the proxy ({})",
                settings.path.display(),
                proxy.base_url()
            ),
            "run keyswitch install --proxy",
        )?;
    }
    if let Some(manager) = crate::service::installed() {
        r.info(&format!("the proxy is {}", manager.describe()))?;
    }
    let token = match crate::proxy_token::ensure_token(&ctx.dirs) {
        Ok(token) => token,
        // Each of its errors says what to do with the file.
        Err(e) => return r.problem(&crate::error::one_line(&e)),
    };
    report_probe(r, proxy.listen, &token)
}

/// The running proxy's own view, from its proved health answer.
fn report_probe(r: &mut Report, listen: std::net::SocketAddr, token: &str) -> Result<()> {
    match probe(listen, token) {
        // Its own view, from its proved health answer: every request it forwards would fail.
        Probe::Ours(health) if !health.keychain => r.fix(
            &format!(
                "the proxy on {} (pid {}) cannot read the keychain, so every request through it fails: it was started where the keychain was unreachable (no DBUS_SESSION_BUS_ADDRESS, or another session's?)",
                health.listen, health.pid
            ),
            "run keyswitch proxy restart from a shell that has the keychain (your desktop session's terminal; keyswitch list there shows the keys)",
        ),
        Probe::Ours(health) if health.version == VERSION => r.ok(&format!(
            "the proxy runs on {} (pid {}) and proved it holds your token",
            health.listen, health.pid
        )),
        Probe::Ours(health) => r.info(&format!(
            "a proxy of keyswitch {} runs on {}; the next keyswitch get replaces it",
            health.version, health.listen
        )),
        Probe::Nothing => r.info(&format!(
            "the proxy is not running; keyswitch get starts it on {}",
            listen
        )),
        // It names what holds the port and what to do, as `get` says it.
        Probe::Unproven(unproven) => r.problem(&crate::error::one_line(
            &crate::proxy::control::not_ours(listen, &unproven),
        )),
    }
}

/// Helper mode, with the settings still pointing at a plain-HTTP loopback address no key
/// belongs to (proxy mode's record lost): `get` hands such sessions no key.
fn check_proxy_remnant(r: &mut Report, ctx: &Context, config: &Config) -> Result<()> {
    let record = load_record(&ctx.dirs).ok().flatten();
    let settings = match record.as_ref().map(InstallRecord::settings_file) {
        Some(Ok(settings)) => settings,
        Some(Err(_)) | None => SettingsFile::locate(None)?,
    };
    let Ok(snapshot) = settings.read() else {
        return Ok(());
    };
    // Only while keyswitch is wired in: after `uninstall` the base URL is the user's again.
    let wired = snapshot
        .map
        .get(HELPER_KEY)
        .and_then(Value::as_str)
        .is_some_and(is_our_helper);
    if !wired {
        return Ok(());
    }
    let base_url = Slot::Env(BASE_URL_VAR)
        .get(&snapshot.map)
        .and_then(Value::as_str);
    match crate::commands::get::refuse_proxy_remnant(base_url, record.as_ref(), config) {
        Ok(()) => Ok(()),
        Err(e) => r.problem(&crate::error::one_line(&e)),
    }
}

/// The user settings keyswitch installed into, as they are now (empty when unreadable).
fn user_settings(ctx: &Context) -> Result<(SettingsFile, serde_json::Map<String, Value>)> {
    let record = load_record(&ctx.dirs).ok().flatten();
    let settings = match record.as_ref().map(InstallRecord::settings_file) {
        Some(Ok(settings)) => settings,
        // A relative record (check_settings names it and its fix): only read, so the file
        // Claude Code would use from here is as good a guess as any.
        Some(Err(_)) | None => SettingsFile::locate(None)?,
    };
    let map = settings.read().ok().map(|s| s.map).unwrap_or_default();
    Ok((settings, map))
}

/// In proxy mode, a project's settings whose `env` makes Claude Code send this project's
/// requests for the proxy through an `HTTPS_PROXY` (a `NO_PROXY` of its own without the
/// proxy's address, or a proxy variable): the token and the whole conversation would go to
/// that proxy, so `get` refuses the token there and every turn in the project fails.
pub(super) fn check_project_network(
    r: &mut Report,
    ctx: &Context,
    cwd: &std::path::Path,
) -> Result<()> {
    let Ok(Mode::Proxy(proxy)) = Mode::load(&ctx.dirs) else {
        return Ok(());
    };
    let project = crate::claude::project_env::ProjectEnv::in_dir(cwd);
    let vars = crate::proxy::network::NETWORK_VARS;
    let Some(path) = project.setter_of(&vars) else {
        return Ok(());
    };
    let (_, user) = user_settings(ctx)?;
    let session = |var: &str| project.over(var, |var| session_env(&user, var));
    let Some(var) = crate::no_proxy::proxied_by(proxy.listen, session) else {
        return Ok(());
    };
    r.fix(
        &format!(
            "{} makes this project's requests for the proxy go through {var} (its NO_PROXY/no_proxy do not cover {}): the token and the conversation would travel in plain text to that proxy, so keyswitch get refuses the token here and every turn fails",
            path.display(),
            proxy.listen
        ),
        &format!(
            "add {} to NO_PROXY and no_proxy in that file's env, or remove its proxy settings",
            proxy.listen
        ),
    )
}

/// Plain-http loopback upstreams (proxy mode's own, each key's endpoint) that cannot be
/// right: a keyswitch proxy's address (the proxy would loop into itself), one another user
/// listens on (the proxy sends it no key), or one where nothing answers (perhaps an old proxy's
/// address: any user could take the port).
pub(super) fn check_loopback_upstreams(
    r: &mut Report,
    ctx: &Context,
    config: &Config,
    mode: Option<&Mode>,
) -> Result<()> {
    use crate::commands::install::{
        LoopbackProblem, loopback_upstream_problem, proxy_address_as_endpoint,
    };
    let mut upstreams = Vec::new();
    if let Some(Mode::Proxy(proxy)) = mode {
        upstreams.push((
            "the proxy's upstream".to_string(),
            proxy.upstream.clone(),
            "start your gateway there; keys without an endpoint go to it".to_string(),
        ));
    }
    for key in &config.keys {
        if let Some(endpoint) = key.endpoint_text() {
            upstreams.push((
                format!("{}'s endpoint", key.name),
                endpoint.to_string(),
                format!(
                    "start its gateway, or run keyswitch set {} --endpoint URL with the gateway's own URL",
                    key.name
                ),
            ));
        }
    }
    for (what, url, how) in upstreams {
        let shown = crate::endpoint::redact_url(&url);
        let problem = match (
            proxy_address_as_endpoint(&ctx.dirs, &url),
            loopback_upstream_problem(&url),
        ) {
            (Some(why), _) => format!("{what} {shown} is {why}, not a gateway"),
            (None, Some(LoopbackProblem::OtherUser(uid))) => format!(
                "another user (uid {uid}) listens on {what} {shown}: the proxy sends no key there"
            ),
            (None, Some(LoopbackProblem::NothingAnswers)) => format!(
                "nothing answers at {what} {shown}: a gateway there is not running (while it is down, any user of this machine could listen on that port)"
            ),
            (None, None) => {
                // Checked here, not by the TCP/TLS check: say it answered.
                if crate::loopback::plain_http_loopback(&url).is_some() {
                    r.ok(&format!("{what} {shown} answers"))?;
                }
                continue;
            }
        };
        r.fix(&problem, &how)?;
    }
    Ok(())
}
