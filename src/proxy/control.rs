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
use crate::proxy_protocol::{Health, VERSION};
use crate::proxy_settings::ProxySettings;
// The proxy's own start-up and the `get` of helper and proxy mode reach these through here.
pub use crate::proxy_client::{Probe, probe};
pub use crate::proxy_protocol::BACKGROUND_MARK;
pub use crate::proxy_token::ensure_token;

/// How long `get` waits for a proxy it started to listen, and `stop_at` for one to stop.
const START_DEADLINE: Duration = Duration::from_secs(5);

/// The error for a port that something other than this keyswitch's proxy holds.
fn port_taken(addr: SocketAddr, what: &str) -> anyhow::Error {
    anyhow!(
        "the keyswitch proxy's port {addr} is taken by another program ({what}): stop that program, or choose another port with `keyswitch install --proxy --listen 127.0.0.1:PORT`"
    )
}

/// Makes sure this keyswitch's proxy answers at `settings.listen`: starts it in the background
/// when nothing listens there, replaces one left by another keyswitch version, and fails within
/// seconds when another program holds the port. Many callers at once end with one proxy.
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
    let current = |h: &Health| {
        h.version == VERSION
            && (h.network.is_empty() || h.network == network.as_str())
            && h.upstream == upstream
            && h.listen == settings.listen.to_string()
    };
    if let Probe::Ours(health) = probe(settings.listen)
        && current(&health)
    {
        return Ok(health);
    }
    // One starter at a time; the others find its proxy running when they get the lock.
    let _starting = WriteLock::acquire(&dirs.proxy_start_lock())?;
    match probe(settings.listen) {
        Probe::Ours(health) if current(&health) => return Ok(health),
        Probe::Ours(old) => {
            stop_at(settings.listen, &token).with_context(|| {
                let which = if old.version != VERSION {
                    format!("of version {}", old.version)
                } else if old.upstream != upstream {
                    format!("forwarding to {}", old.upstream)
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
        Probe::Foreign(what) => return Err(port_taken(settings.listen, &what)),
    }
    start(dirs, settings)
}

fn start(dirs: &Dirs, settings: &ProxySettings) -> Result<Health> {
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
        match probe(settings.listen) {
            Probe::Ours(health) => return Ok(health),
            Probe::Foreign(what) => return Err(port_taken(settings.listen, &what)),
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

/// Asks the proxy at `addr` to stop, and waits until the port is free. `Ok(false)`: none ran.
pub fn stop_at(addr: SocketAddr, token: &str) -> Result<bool> {
    let Probe::Ours(_) = probe(addr) else {
        return Ok(false);
    };
    let status = crate::proxy_client::request_shutdown(addr, token)?;
    if status != 200 {
        return Err(anyhow!("it refused to stop (HTTP {status})"));
    }
    let deadline = Instant::now() + START_DEADLINE;
    while Instant::now() < deadline {
        if matches!(probe(addr), Probe::Nothing) {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(anyhow!(
        "it still listens after {}s",
        START_DEADLINE.as_secs()
    ))
}
