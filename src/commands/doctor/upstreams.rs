//! doctor's checks of where the keys' requests go: every distinct upstream (a key's endpoint,
//! else the default one) answers a TCP connection and, for https, a TLS handshake — no request
//! is sent — through the network's proxy where the proxy settings say so; and the gateways the
//! proxy has seen answer. The connections are opened together, at the start of doctor, each
//! within [`LIMIT`], so doctor stays fast.

use std::time::Duration;

use anyhow::Result;

use super::Report;
use super::keys::is_placeholder_endpoint;
use crate::claude::install_record::{InstallRecord, load_record};
use crate::claude::live::users_own_base_url;
use crate::claude::settings_file::SettingsFile;
use crate::claude::slot::Slot;
use crate::claude::wiring::BASE_URL_VAR;
use crate::commands::Context;
use crate::config::Config;
use crate::endpoint::{PUBLIC_API, redact_url};
use crate::mode::Mode;
use crate::proxy::reach::{Reach, reach};

/// How long each upstream may take to answer.
const LIMIT: Duration = Duration::from_secs(3);

/// One upstream to try, and the keys whose requests go there.
struct Target {
    url: String,
    keys: Vec<String>,
    /// Whether it is the default upstream rather than some key's own endpoint.
    default: bool,
}

/// The connections under way.
pub(super) struct Pending {
    proxy_mode: bool,
    /// The network settings differ from the proxy's (proxy mode): which.
    differing: Vec<&'static str>,
    work: Option<std::thread::JoinHandle<Vec<(Target, Reach)>>>,
    tls_problem: Option<String>,
}

/// Where keys without an endpoint send their requests: proxy mode's upstream; in helper mode
/// the base URL sessions had before keyswitch, else the one they have now, else the public API.
pub(super) fn default_upstream(ctx: &Context, config: &Config, mode: Option<&Mode>) -> String {
    if let Some(Mode::Proxy(proxy)) = mode {
        return proxy.upstream.clone();
    }
    let record = load_record(&ctx.dirs).ok().flatten();
    // The one keyswitch replaced, or the settings' own while keyswitch holds no value there
    // (a key without an endpoint is active): what `get` and `list` take for the user's.
    if let Some(url) = record.as_ref().and_then(users_own_base_url) {
        return url;
    }
    // Without endpoints keyswitch leaves ANTHROPIC_BASE_URL alone: the settings' is the user's.
    let settings = (!config.uses_endpoints())
        .then(|| user_base_url(record.as_ref()))
        .flatten();
    settings
        .or_else(|| {
            std::env::var(BASE_URL_VAR)
                .ok()
                .filter(|u| !u.trim().is_empty())
        })
        .unwrap_or_else(|| PUBLIC_API.to_string())
}

fn user_base_url(record: Option<&InstallRecord>) -> Option<String> {
    let settings = match record.map(InstallRecord::settings_file) {
        Some(Ok(settings)) => settings,
        _ => SettingsFile::locate(None).ok()?,
    };
    let map = settings.read().ok()?.map;
    Slot::Env(BASE_URL_VAR)
        .get(&map)
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// Starts connecting to every upstream the keys use, on a thread of its own.
pub(super) fn start(config: &Config, mode: Option<&Mode>, default: &str) -> Pending {
    let proxy_mode = matches!(mode, Some(Mode::Proxy(_)));
    let differing = match mode {
        Some(Mode::Proxy(proxy)) => {
            crate::proxy::network::differing(&proxy.network, |var| std::env::var(var).ok())
        }
        _ => Vec::new(),
    };
    let targets = targets(config, proxy_mode, default);
    let mut pending = Pending {
        proxy_mode,
        differing,
        work: None,
        tls_problem: None,
    };
    if targets.is_empty() {
        return pending;
    }
    let tls = match crate::proxy::reach::tls() {
        Ok(tls) => tls,
        Err(e) => {
            pending.tls_problem = Some(crate::error::one_line(&e));
            return pending;
        }
    };
    pending.work = Some(std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return Vec::new();
        };
        runtime.block_on(async move {
            let mut set = tokio::task::JoinSet::new();
            for (index, target) in targets.into_iter().enumerate() {
                let tls = tls.clone();
                set.spawn(async move {
                    let reached = reach(tls, &target.url, LIMIT).await;
                    (index, target, reached)
                });
            }
            let mut done: Vec<(usize, Target, Reach)> = set.join_all().await;
            done.sort_by_key(|(index, _, _)| *index);
            done.into_iter()
                .map(|(_, t, reached)| (t, reached))
                .collect()
        })
    }));
    pending
}

/// The distinct upstreams worth a connection: not a documentation example (named already),
/// and not a plain-http loopback address the loopback check looks at (a key's endpoint, or
/// proxy mode's upstream).
fn targets(config: &Config, proxy_mode: bool, default: &str) -> Vec<Target> {
    crate::key_upstreams::grouped(config, default)
        .into_iter()
        .filter_map(|(url, keys)| {
            let default = config
                .keys
                .iter()
                .filter(|k| keys.contains(&k.name))
                .all(|k| k.endpoint_text().is_none());
            let looked_at = proxy_mode || !default;
            let skip = is_placeholder_endpoint(&url)
                || (looked_at && crate::loopback::plain_http_loopback(&url).is_some());
            (!skip).then_some(Target { url, keys, default })
        })
        .collect()
}

/// Waits for the connections and reports each upstream.
pub(super) fn report(r: &mut Report, pending: Pending) -> Result<()> {
    if let Some(problem) = pending.tls_problem {
        return r.info(&format!(
            "could not check the upstreams: TLS does not start ({problem})"
        ));
    }
    let Some(work) = pending.work else {
        return Ok(());
    };
    if !pending.differing.is_empty() {
        r.info(&format!(
            "upstreams checked with this shell's network settings; the proxy has others ({})",
            pending.differing.join(", ")
        ))?;
    }
    let Ok(results) = work.join() else {
        return r.info("could not check the upstreams");
    };
    for (target, reached) in results {
        let shown = redact_url(&target.url);
        let keys = target.keys.join(", ");
        match reached {
            Reach::Reached { via } => r.ok(&format!(
                "{shown} answers{} ({keys})",
                via.map_or_else(String::new, |p| format!(" through the proxy {p}"))
            ))?,
            Reach::Failed(why) => r.fix(
                &format!("{shown}, the upstream of {keys}, cannot be reached: {why}"),
                &how(&target, pending.proxy_mode),
            )?,
        }
    }
    Ok(())
}

fn how(target: &Target, proxy_mode: bool) -> String {
    let network = "check the network (firewall, HTTPS_PROXY/NO_PROXY, SSL_CERT_FILE for a TLS-inspecting proxy)";
    if !target.default {
        return format!(
            "start it or {network}, or point the key elsewhere: keyswitch set {} --endpoint URL",
            target.keys[0]
        );
    }
    let shown = redact_url(&target.url);
    if proxy_mode {
        format!(
            "{network}: the proxy sends keys without an endpoint to {shown}; for another upstream run keyswitch install --proxy from a shell with ANTHROPIC_BASE_URL set to it"
        )
    } else {
        format!(
            "{network}: sessions send keys without an endpoint to {shown}; for a gateway, tie the keys to it: keyswitch set NAME --endpoint URL"
        )
    }
}

/// The gateways the proxy has seen answer, and the user's rules for the ones keyswitch does
/// not know.
pub(super) fn check_gateways(r: &mut Report, ctx: &Context, config: &Config) -> Result<()> {
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
