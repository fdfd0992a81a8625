//! The proxy seen from outside: whether proxy mode is on (and where it listens), the local
//! access token, and finding, starting, replacing and stopping the background proxy.
//!
//! Plain std networking, no async runtime: `keyswitch get` runs this on every Claude Code start
//! and refresh, and a probe of a running proxy costs one loopback round trip.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::fileio::{WriteLock, private_options, read_optional};
use crate::paths::{Dirs, ensure_private_dir};
use crate::proxy_settings::ProxySettings;

/// What the proxy's health answer calls itself, to tell it from another program on the port.
pub const SERVICE: &str = "keyswitch-proxy";
pub const HEALTH_PATH: &str = "/_keyswitch/health";
pub const SHUTDOWN_PATH: &str = "/_keyswitch/shutdown";
/// Every access token starts with this: never mistaken for an API key, easy to grep for.
pub const TOKEN_PREFIX: &str = "ksp-";
/// Set in the environment of a proxy `get` starts in the background: only such a proxy is
/// replaced when a session's network settings differ from its own.
pub const BACKGROUND_MARK: &str = "KEYSWITCH_PROXY_BACKGROUND";
/// How long `get` waits for a proxy it started to listen.
const START_DEADLINE: Duration = Duration::from_secs(5);
/// A health probe of loopback gives up after this: a program that accepts and never answers
/// must not hang Claude Code's helper.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// The local access token, created on first use: 256 random bits, in a file only the user can
/// read. Two processes creating it at once agree on one (the first `create_new` wins).
pub fn ensure_token(dirs: &Dirs) -> Result<Zeroizing<String>> {
    let path = dirs.proxy_token_file();
    if let Some(token) = read_token(&path)? {
        return Ok(token);
    }
    ensure_private_dir(&dirs.state)?;
    let mut raw = Zeroizing::new([0u8; 32]);
    getrandom::fill(raw.as_mut()).map_err(|e| anyhow!("cannot get random bytes: {e}"))?;
    let mut token = Zeroizing::new(String::from(TOKEN_PREFIX));
    for byte in raw.iter() {
        token.push_str(&format!("{byte:02x}"));
    }
    // Written whole to a temp file, then linked into place without replacing: a concurrent
    // creator's token is never overwritten, and nobody reads a half-written one.
    // Not under the writer lock, so not named like the temp files that writers sweep.
    let temp = dirs
        .state
        .join(format!(".proxy-token-{}.new", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    let mut file = private_options()
        .write(true)
        .create_new(true)
        .open(&temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    drop(file);
    let linked = std::fs::hard_link(&temp, &path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(token),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_token(&path)?
            .ok_or_else(|| anyhow!("{} is empty: delete it and try again", path.display())),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

fn read_token(path: &Path) -> Result<Option<Zeroizing<String>>> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(None);
    };
    let bytes = Zeroizing::new(bytes);
    let text = std::str::from_utf8(&bytes).unwrap_or("").trim();
    if !text.starts_with(TOKEN_PREFIX) || text.len() != TOKEN_PREFIX.len() + 64 {
        return Err(anyhow!(
            "the proxy token file {} is damaged: delete it; keyswitch makes a new one",
            path.display()
        ));
    }
    Ok(Some(Zeroizing::new(text.to_string())))
}

/// What the proxy says about itself at [`HEALTH_PATH`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub service: String,
    pub version: String,
    pub pid: u32,
    pub listen: String,
    /// A keyed digest of the network settings the proxy took from its environment
    /// (`upstream::network_fingerprint`), from a proxy keyswitch started in the background.
    /// Empty from one the user runs (`proxy run` under a service manager): its settings are the
    /// user's choice, never overridden by a session's.
    #[serde(default)]
    pub network: String,
    /// Where it forwards keys without an endpoint: a proxy started with other proxy settings
    /// (a damaged proxy.json that a re-install replaced) is replaced too.
    #[serde(default)]
    pub upstream: String,
}

/// What answers on the proxy's address.
#[derive(Debug)]
pub enum Probe {
    Ours(Health),
    Nothing,
    /// Something else holds the port (or a keyswitch proxy that does not answer in time).
    Foreign(String),
}

pub fn probe(addr: SocketAddr) -> Probe {
    let mut stream = match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Probe::Nothing,
        Err(e) => return Probe::Foreign(format!("connecting failed: {e}")),
    };
    match exchange(&mut stream, "GET", HEALTH_PATH, None) {
        Ok((200, body)) => match serde_json::from_slice::<Health>(&body) {
            Ok(h) if h.service == SERVICE => Probe::Ours(h),
            _ => Probe::Foreign("it answers, but not as a keyswitch proxy".to_string()),
        },
        Ok((status, _)) => Probe::Foreign(format!("it answers HTTP {status}")),
        Err(e) => Probe::Foreign(format!(
            "it gives no HTTP answer in time ({e}): a stopped or hung proxy, or another program"
        )),
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns the status and the body.
fn exchange(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, Vec<u8>)> {
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    let auth = token
        .map(|t| format!("x-api-key: {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: keyswitch\r\n{auth}content-length: 0\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    // One deadline for the whole answer: a program that trickles bytes must not hold `get`.
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || response.len() > 64 * 1024 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no complete answer in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buffer)? {
            0 => break,
            n => response.extend_from_slice(&buffer[..n]),
        }
    }
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let status = response
        .strip_prefix(b"HTTP/1.")
        .and_then(|rest| rest.get(2..))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| std::str::from_utf8(code).ok())
        .and_then(|code| code.parse().ok())
        .ok_or_else(bad)?;
    let body_at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?
        + 4;
    Ok((status, response[body_at..].to_vec()))
}

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
    // The proxy works with the network settings (HTTPS_PROXY, CA files) of whoever started it:
    // one started from a terminal without the session's settings is replaced, or every request
    // fails on a network only the session's settings can cross.
    let token = ensure_token(dirs)?;
    let network = super::upstream::network_fingerprint(&token);
    // As the proxy reports it: normalised.
    let upstream = crate::endpoint::Endpoint::parse(&settings.upstream)
        .map(|e| e.as_str().to_string())
        .unwrap_or_else(|_| settings.upstream.clone());
    let current = |h: &Health| {
        h.version == env!("CARGO_PKG_VERSION")
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
                let which = if old.version != env!("CARGO_PKG_VERSION") {
                    format!("of version {}", old.version)
                } else if old.upstream != upstream {
                    format!("forwarding to {}", old.upstream)
                } else {
                    "started with other network settings".to_string()
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
        .current_dir(&dirs.state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file);
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
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    let (status, _) = exchange(&mut stream, "POST", SHUTDOWN_PATH, Some(token))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            config: dir.path().join("c"),
            state: dir.path().join("s"),
        };
        let first = ensure_token(&dirs).unwrap();
        let second = ensure_token(&dirs).unwrap();
        assert_eq!(*first, *second);
        assert!(first.starts_with(TOKEN_PREFIX) && first.len() == TOKEN_PREFIX.len() + 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dirs.proxy_token_file())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0);
        }
        let other = Dirs {
            config: dir.path().join("c2"),
            state: dir.path().join("s2"),
        };
        assert_ne!(*ensure_token(&other).unwrap(), *first);
    }

    #[test]
    fn nothing_listening_is_told_from_a_foreign_program() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi")
                .unwrap();
        });
        assert!(matches!(probe(addr), Probe::Foreign(_)));
        server.join().unwrap();
        assert!(matches!(probe(addr), Probe::Nothing));
    }
}
