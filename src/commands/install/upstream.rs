//! Where proxy mode forwards to, and on which port it listens: never a keyswitch proxy's own
//! address, never a dead or another user's loopback port, and the user's own base URL kept.

use std::net::SocketAddr;

use anyhow::Result;
use serde_json::{Map, Value};

use crate::claude::install_record::InstallRecord;
use crate::claude::slot::Slot;
use crate::claude::wiring::BASE_URL_VAR;
use crate::endpoint::{Endpoint, PUBLIC_API};
use crate::error::refuse;
use crate::mode::Mode;
use crate::paths::Dirs;
use crate::proxy_client::{Probe, Unproven, probe};
use crate::proxy_settings::ProxySettings;

/// Refuses a port the proxy could not listen on: another program's, or one the OS holds.
pub(super) fn check_port_usable(dirs: &Dirs, listen: SocketAddr) -> Result<()> {
    let taken = |what: &str| {
        refuse(format!(
            "port {listen} is taken ({what}): choose another with `--listen 127.0.0.1:PORT` (`keyswitch install --listen …` or `./install.sh --listen …`, with the other flags you gave)"
        ))
    };
    let token = crate::proxy_token::ensure_token(dirs)?;
    match probe(listen, &token) {
        Probe::Ours(_) => Ok(()),
        // Never ours, whatever it says: named, and the token never sent to it.
        Probe::Unproven(unproven) => Err(taken(&unproven.describe())),
        // Nothing answers, but a socket in the way (an outgoing connection's, one closing)
        // would still stop the proxy from listening: try it.
        Probe::Nothing => std::net::TcpListener::bind(listen)
            .map(drop)
            .map_err(|e| taken(&e.to_string())),
    }
}

/// Whether what answers at `addr` calls itself a keyswitch proxy, whether or not it proves it
/// holds this user's token (an older version, another user's): none of them is an upstream.
fn answers_like_keyswitch(addr: SocketAddr) -> bool {
    // A throwaway key: only the claim matters here, and the real token is never offered.
    match probe(addr, "not-a-token") {
        Probe::Ours(_) => true,
        Probe::Unproven(Unproven::Legacy { .. } | Unproven::WrongProof) => true,
        Probe::Unproven(_) | Probe::Nothing => false,
    }
}

/// Why `url` is a keyswitch proxy's address, if it is one: the address this install gives the
/// proxy, the one proxy mode had until now, or one where a keyswitch proxy answers (whichever
/// version). Forwarding there would send every key in plain text to a port that frees up the
/// moment the old proxy stops — for any program, of any user, to take.
fn keyswitch_address(
    url: &str,
    listen: SocketAddr,
    previous: Option<&ProxySettings>,
) -> Option<&'static str> {
    let addr = crate::loopback::plain_http_loopback(url)?;
    let same = |other: SocketAddr| same_listener(addr, other);
    if same(listen) {
        Some("the proxy's own address")
    } else if previous.is_some_and(|p| same(p.listen)) {
        Some("the address proxy mode's proxy had until now")
    } else if answers_like_keyswitch(addr) {
        Some("where a keyswitch proxy answers")
    } else {
        None
    }
}

/// Whether `addr` (from a URL) reaches the socket listening on `listen`.
fn same_listener(addr: SocketAddr, listen: SocketAddr) -> bool {
    addr.port() == listen.port() && (addr.ip() == listen.ip() || addr.ip().is_unspecified())
}

/// Why a key's endpoint `url` is a keyswitch proxy's address, if it is one: proxy mode's
/// listen address (from proxy.json), or one where a keyswitch proxy answers. The proxy would
/// send the key's requests to itself (or to another user's proxy).
pub(crate) fn proxy_address_as_endpoint(dirs: &Dirs, url: &str) -> Option<&'static str> {
    let addr = crate::loopback::plain_http_loopback(url)?;
    let listen = Mode::load(dirs)
        .ok()
        .and_then(Mode::proxy)
        .map(|p| p.listen);
    if listen.is_some_and(|listen| same_listener(addr, listen)) {
        Some("the keyswitch proxy's own address")
    } else if answers_like_keyswitch(addr) {
        Some("where a keyswitch proxy answers")
    } else {
        None
    }
}

/// The API base URL the proxy forwards to: where the user's requests went before proxy mode.
/// First what keyswitch replaced in the settings (or the settings' own value); on a re-install,
/// the upstream proxy mode recorded, before the environment — inside a session the environment
/// holds the proxy's own address; then the environment's; else the public API. A keyswitch
/// proxy's address is never the answer (see [`keyswitch_address`]).
pub(super) fn prior_base_url(
    record: &InstallRecord,
    settings: &Map<String, Value>,
    previous: Option<&ProxySettings>,
    listen: SocketAddr,
) -> Result<String> {
    let slot = Slot::Env(BASE_URL_VAR);
    let current = slot.get(settings).and_then(Value::as_str);
    let recorded = record.entries.get(&slot.id());
    let from_settings = match recorded {
        // keyswitch set the value: what it replaced is the user's (unless they changed it since).
        Some(entry) if current == entry.ours.as_str() => entry
            .prior
            .as_ref()
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => current.map(str::to_string),
    };
    let from_env = std::env::var("ANTHROPIC_BASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty());
    let candidates = [
        ("the settings' ANTHROPIC_BASE_URL", from_settings),
        (
            "the upstream proxy mode recorded",
            previous.map(|p| p.upstream.clone()),
        ),
        ("ANTHROPIC_BASE_URL in your environment", from_env),
    ];
    let mut refused = None;
    let mut chosen = None;
    for (source, url) in candidates {
        let Some(url) = url else { continue };
        match keyswitch_address(&url, listen, previous) {
            None => {
                chosen = Some(url);
                break;
            }
            // Passed over for the next source: left in the settings or the record by an
            // earlier install, it is keyswitch's own writing, not the user's upstream.
            Some(why) => refused = Some((source, url, why)),
        }
    }
    let candidate = match (chosen, refused) {
        (Some(url), _) => url,
        (None, Some((source, url, why))) => {
            return Err(refuse(format!(
                "{source}, {}, is {why}, not an API to forward to (run from inside a Claude Code session?): run `keyswitch install --proxy` from a terminal with ANTHROPIC_BASE_URL set to the real API or your company's gateway (or unset for the public API)",
                crate::endpoint::redact_url(&url)
            )));
        }
        (None, None) => PUBLIC_API.to_string(),
    };
    refuse_unusable_loopback_upstream(&candidate)?;
    let endpoint = Endpoint::parse(&candidate).map_err(|e| {
        refuse(format!(
            "your current API base URL cannot be the proxy's upstream: {}",
            crate::error::one_line(&e)
        ))
    })?;
    Ok(endpoint.as_str().to_string())
}

/// Refuses a plain-http loopback upstream where nothing listens now, or another user does.
/// The environment of a session still holds the address of a proxy stopped since (an
/// `uninstall` or helper-mode `install` from inside it): recorded as the upstream, that port
/// would be free for any user to take and read every key and prompt. A real local gateway is
/// running when it is installed in front of; the proxy also checks the port's user on each
/// new connection (see `crate::proxy::connect`).
fn refuse_unusable_loopback_upstream(url: &str) -> Result<()> {
    let shown = crate::endpoint::redact_url(url);
    match loopback_upstream_problem(url) {
        Some(LoopbackProblem::OtherUser(uid)) => Err(refuse(format!(
            "another user (uid {uid}) listens on {shown}, which would be the proxy's upstream: keyswitch sends no key there; start your gateway as your own user, or set ANTHROPIC_BASE_URL to the real API (unset for the public API) and run `keyswitch install --proxy` again"
        ))),
        Some(LoopbackProblem::NothingAnswers) => Err(refuse(format!(
            "nothing answers at {shown}, which would be the proxy's upstream — perhaps an old keyswitch proxy's address (a session's ANTHROPIC_BASE_URL outlives the proxy): start your gateway first, or set ANTHROPIC_BASE_URL to the real API (unset for the public API) and run `keyswitch install --proxy` again"
        ))),
        None => Ok(()),
    }
}

/// How long a loopback upstream may take to accept a connection when checked.
const LOOPBACK_ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// What is wrong with a plain-http loopback upstream, checked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoopbackProblem {
    /// Another user (neither ours nor root) listens there: the proxy sends it no key.
    OtherUser(u32),
    /// Nothing accepts a connection there.
    NothingAnswers,
}

/// The problem of `url` as an upstream, if it is a plain-http loopback URL that has one.
pub(crate) fn loopback_upstream_problem(url: &str) -> Option<LoopbackProblem> {
    let addr = crate::loopback::plain_http_loopback(url)?;
    if let Some(uid) = crate::port_owner::foreign_listener_uid(addr) {
        return Some(LoopbackProblem::OtherUser(uid));
    }
    let target = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    std::net::TcpStream::connect_timeout(&target, LOOPBACK_ANSWER_TIMEOUT)
        .is_err()
        .then_some(LoopbackProblem::NothingAnswers)
}
