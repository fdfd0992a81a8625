//! The background proxy's lifecycle, as `get`, `install` and `keyswitch proxy` drive it:
//! making sure this keyswitch's proxy answers (starting it detached, replacing one of another
//! version or with other settings), and stopping it.
//!
//! It lives inside `proxy` because a proxy is replaced when its network settings differ from
//! the recorded ones, and only the proxy's upstream code can compute their fingerprint. The files
//! and the protocol both sides share are outside: [`crate::proxy_settings`],
//! [`crate::proxy_token`], [`crate::proxy_protocol`] and [`crate::proxy_client`].

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use crate::fileio::{WriteLock, private_options, read_optional};
use crate::paths::Dirs;
use crate::port_owner;
use crate::proxy_protocol::{Health, VERSION};
use crate::proxy_settings::ProxySettings;
// The proxy's own start-up and the `get` of helper and proxy mode reach these through here.
pub use crate::proxy_client::{Probe, Unproven, probe};
pub use crate::proxy_protocol::BACKGROUND_MARK;
pub use crate::proxy_token::ensure_token;

/// How long `get` waits for a proxy it started to listen, and `stop_at` for one to stop.
const START_DEADLINE: Duration = Duration::from_secs(5);

/// The error for a listener that did not prove it holds the token: named (port, whose it is
/// when that can be found, what it did) with what to do. It is never sent the token, and never
/// asked to stop.
pub fn not_ours(addr: SocketAddr, unproven: &Unproven) -> anyhow::Error {
    let holder = port_owner::holder(addr);
    if let Some(holder) = holder.filter(|h| !h.is_ours()) {
        return anyhow!(
            "another user (uid {}) holds the keyswitch proxy's port {addr}: keyswitch sends it nothing; ask them to free it, or choose another port with `keyswitch install --proxy --listen 127.0.0.1:PORT`",
            holder.uid
        );
    }
    if let (Unproven::Silent(_), Some(pid)) = (unproven, holder.and_then(|h| h.pid))
        && port_owner::is_stopped(pid)
    {
        return anyhow!(
            "the program holding {addr} is stopped (pid {pid}, e.g. by Ctrl-Z or SIGSTOP): `kill -CONT {pid}`"
        );
    }
    let who = holder
        .and_then(|h| h.pid)
        .map(|pid| format!(" (pid {pid})"))
        .unwrap_or_default();
    anyhow!(
        "the keyswitch proxy's port {addr} is held by another program or another user{who}, and it did not prove it is your proxy ({}): keyswitch sends it nothing; stop that program, or choose another port with `keyswitch install --proxy --listen 127.0.0.1:PORT`",
        unproven.describe()
    )
}

/// Makes sure this keyswitch's proxy answers at `settings.listen`: starts it in the background
/// when nothing listens there, replaces one left by another keyswitch version, one with other
/// settings and one that cannot read the keychain `get` can read, and fails within seconds
/// when a listener that does not prove it holds the token has the port. Many callers at once
/// end with one proxy.
pub fn ensure_running(dirs: &Dirs, settings: &ProxySettings) -> Result<Health> {
    // The proxy works with the network settings (HTTPS_PROXY, CA files) recorded at install,
    // whichever session's `get` starts it: a background proxy with others (started before a
    // re-install) is replaced; one with the recorded ones is kept, whatever this session's
    // environment says, so sessions with different environments do not replace it in turn.
    let token = ensure_token(dirs)?;
    let network = super::network::recorded_fingerprint(&token, &settings.network);
    // As the proxy reports it: normalised.
    let upstream = crate::endpoint::Endpoint::parse(&settings.upstream)
        .map(|e| e.as_str().to_string())
        .unwrap_or_else(|_| settings.upstream.clone());
    let settled = |h: &Health| {
        h.version == VERSION
            && (h.network.is_empty() || h.network == network.as_str())
            && h.upstream == upstream
            && h.listen == settings.listen.to_string()
    };
    // A proxy that cannot read the keychain is replaced only when this process can: started
    // from here it would be no better. Asked only then, so `get` pays no keychain read.
    let current = |h: &Health| settled(h) && (h.keychain || !keychain_readable_here(dirs));
    if let Probe::Ours(health) = probe(settings.listen, &token)
        && current(&health)
    {
        return Ok(health);
    }
    // One starter at a time; the others find its proxy running when they get the lock.
    let _starting = WriteLock::acquire(&dirs.proxy_start_lock())?;
    match probe(settings.listen, &token) {
        Probe::Ours(health) if current(&health) => return Ok(health),
        Probe::Ours(old) => {
            stop_proved(settings.listen, &token, &old).with_context(|| {
                let which = if old.version != VERSION {
                    format!("of version {}", old.version)
                } else if old.upstream != upstream {
                    format!("forwarding to {}", old.upstream)
                } else if !old.keychain {
                    "that cannot read the keychain".to_string()
                } else {
                    "started with other network settings than proxy mode recorded".to_string()
                };
                format!(
                    "a keyswitch proxy {which} (pid {}) holds {}, and it would not stop",
                    old.pid, settings.listen
                )
            })?;
        }
        Probe::Nothing => {}
        Probe::Unproven(unproven) => replace_legacy(settings.listen, &unproven)?,
    }
    start(dirs, settings, &token)
}

/// Whether this process can read the keychain: the first key's secret, or word that it has
/// none.
fn keychain_readable_here(dirs: &Dirs) -> bool {
    let Ok(config) = crate::config::Config::load(&dirs.config_file()) else {
        return false;
    };
    let Some(first) = config.keys.first() else {
        return false;
    };
    crate::store::Keychain::open(config.store_kind(), config.keychain_service())
        .and_then(|k| k.read(&first.name))
        .map_or_else(|e| crate::store::NotText::is(&e), |_| true)
}

/// An older keyswitch proxy cannot prove it holds the token, and must not be sent it. On Linux,
/// one of this user's own processes that runs `keyswitch proxy run` is stopped by signal;
/// anything else that holds the port is named, never talked to.
fn replace_legacy(addr: SocketAddr, unproven: &Unproven) -> Result<()> {
    let Unproven::Legacy { version } = unproven else {
        return Err(not_ours(addr, unproven));
    };
    let Some(pid) = port_owner::holder(addr)
        .filter(port_owner::Holder::is_ours)
        .and_then(|h| h.pid)
        .filter(|pid| port_owner::is_keyswitch_proxy(*pid))
    else {
        return Err(not_ours(addr, unproven));
    };
    #[cfg(unix)]
    port_owner::terminate(pid).with_context(|| {
        format!("the keyswitch proxy {version} (pid {pid}) on {addr} could not be stopped")
    })?;
    wait_until_free(addr).with_context(|| {
        format!("the keyswitch proxy {version} (pid {pid}) on {addr} would not stop")
    })
}

fn start(dirs: &Dirs, settings: &ProxySettings, token: &str) -> Result<Health> {
    let exe = std::env::current_exe().context("cannot tell where the keyswitch binary is")?;
    let log = dirs.proxy_log();
    let log_file = private_options()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("cannot open the proxy log {}", log.display()))?;
    let log_start = log_file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut command = Command::new(exe);
    command
        .args(["proxy", "run"])
        .env(BACKGROUND_MARK, "1")
        // The recorded network settings, not this session's.
        .envs(&settings.network)
        .current_dir(&dirs.state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file);
    for var in super::network::NETWORK_VARS {
        if !settings.network.contains_key(var) {
            command.env_remove(var);
        }
    }
    detach(&mut command);
    let mut child = command
        .spawn()
        .context("cannot start the keyswitch proxy")?;
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        match probe(settings.listen, token) {
            Probe::Ours(health) => return Ok(health),
            Probe::Unproven(unproven) => return Err(not_ours(settings.listen, &unproven)),
            Probe::Nothing => {}
        }
        if let Ok(Some(status)) = child.try_wait() {
            let why = last_log_line(&log, log_start)
                .unwrap_or_else(|| format!("it exited with {status}"));
            return Err(anyhow!("it exited at start: {why}"));
        }
        if Instant::now() > deadline {
            return Err(anyhow!(
                "the keyswitch proxy did not listen on {} within {}s: see {}",
                settings.listen,
                START_DEADLINE.as_secs(),
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(3));
    }
}

/// A background proxy outlives the `get` that started it and ignores the terminal's signals.
fn detach(command: &mut Command) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        const DETACHED_PROCESS: u32 = 0x0000_0008;
        const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
        const CREATE_NO_WINDOW: u32 = 0x0800_0000;
        command.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW);
        super::windows_stdio::keep_from_children();
    }
}

fn last_log_line(path: &Path, from: u64) -> Option<String> {
    let bytes = read_optional(path).ok()??;
    let fresh = bytes.get(from as usize..)?;
    String::from_utf8_lossy(fresh)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().trim_start_matches("keyswitch: ").to_string())
}

/// Asks this user's proxy at `addr` to stop, and waits until the port is free. `Ok(false)`:
/// none ran. A listener that does not prove it holds the token is named, never talked to.
pub fn stop_at(addr: SocketAddr, token: &str) -> Result<bool> {
    match probe(addr, token) {
        Probe::Nothing => Ok(false),
        Probe::Ours(health) => stop_proved(addr, token, &health).map(|()| true),
        Probe::Unproven(unproven) => Err(not_ours(addr, &unproven)),
    }
}

/// Stops the proxy whose proved health answer is `health`, with a proof of the token.
fn stop_proved(addr: SocketAddr, token: &str, health: &Health) -> Result<()> {
    let (status, why) = crate::proxy_client::request_shutdown(addr, token)?;
    if status != 200 {
        return Err(anyhow!("it refused to stop (HTTP {status}: {why})"));
    }
    wait_until_gone(addr, token, health.pid)
}

/// Waits until the proxy of `pid` no longer answers. The port itself may stay held: a service
/// manager's socket keeps it (answering nothing, or with a proxy it started anew), and that
/// proxy is gone all the same.
fn wait_until_gone(addr: SocketAddr, token: &str, pid: u32) -> Result<()> {
    let deadline = Instant::now() + START_DEADLINE;
    while Instant::now() < deadline {
        match probe(addr, token) {
            Probe::Ours(now) if now.pid == pid => {}
            _ => return Ok(()),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(anyhow!(
        "it still answers after {}s",
        START_DEADLINE.as_secs()
    ))
}

fn wait_until_free(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + START_DEADLINE;
    while Instant::now() < deadline {
        // Nothing is sent: a connection refused is all this asks.
        if let Err(e) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
            && e.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(anyhow!(
        "it still listens after {}s",
        START_DEADLINE.as_secs()
    ))
}
