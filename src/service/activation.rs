//! Socket activation: the listening socket a service manager (systemd's `keyswitch-proxy.socket`,
//! or `systemd-socket-activate`) opened for the proxy and passed as fd 3 (`LISTEN_FDS`,
//! `LISTEN_PID`). The manager holds the port from login on, so it is never free for another
//! user to take between two proxies.
//!
//! The protocol is two variables and a fixed fd, but turning fd 3 into a listener takes
//! `from_raw_fd`, which is `unsafe` (denied here): `listenfd` does that part, checks the fd is
//! a TCP socket, marks it close-on-exec and unsets `LISTEN_FDS`/`LISTEN_PID` so children do not
//! inherit them. It also accepts a missing `LISTEN_PID` (systemfd's extension), so the pid is
//! checked here first, as sd_listen_fds(3) does.

use std::net::{SocketAddr, TcpListener};

use anyhow::{Result, anyhow};

// The unit whose socket the proxy normally inherits, named in the errors below.
use super::systemd::SOCKET_UNIT;

/// The listener passed to this process, if one was: `None` when no socket was passed to *this*
/// process (no `LISTEN_FDS`, or a `LISTEN_PID` that is another's). An error when what was
/// passed is not one TCP listener on `expected`, the address proxy mode is configured for.
pub fn inherited_listener(expected: SocketAddr) -> Result<Option<TcpListener>> {
    let Some(count) = std::env::var_os("LISTEN_FDS") else {
        return Ok(None);
    };
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if !ours {
        // Meant for another process (a parent that leaked them): not ours to take.
        return Ok(None);
    }
    if count.to_str().map(str::trim) != Some("1") {
        return Err(anyhow!(
            "the service manager passed {} sockets (LISTEN_FDS), and the proxy takes exactly one: give {SOCKET_UNIT} a single ListenStream (`keyswitch install --proxy` writes it so)",
            count.to_string_lossy()
        ));
    }
    let listener = listenfd::ListenFd::from_env()
        .take_tcp_listener(0)
        .map_err(|e| {
            anyhow!(
                "the socket the service manager passed (fd 3) is not a TCP socket ({e}): {SOCKET_UNIT} needs ListenStream=IP:PORT (`keyswitch install --proxy` writes it so)"
            )
        })?
        .ok_or_else(|| anyhow!("the service manager said it passed a socket, and fd 3 is none"))?;
    check_listener(&listener, expected)?;
    Ok(Some(listener))
}

/// A TCP socket on the configured address that is listening (not one the proxy would have to
/// `listen` on itself, nor one on another port the settings do not name).
fn check_listener(listener: &TcpListener, expected: SocketAddr) -> Result<()> {
    let listening = rustix::net::sockopt::socket_acceptconn(listener).unwrap_or(false);
    if !listening {
        return Err(anyhow!(
            "the socket the service manager passed (fd 3) is not listening: {SOCKET_UNIT} must not set Accept=yes, and the socket must be a ListenStream"
        ));
    }
    let actual = listener
        .local_addr()
        .map_err(|e| anyhow!("cannot read the address of the socket passed (fd 3): {e}"))?;
    if actual != expected {
        return Err(anyhow!(
            "the service manager listens on {actual} for the proxy, but proxy mode is set up for {expected}: run `keyswitch install --proxy` again, which rewrites {SOCKET_UNIT}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_on_another_address_is_refused_with_the_fix() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = SocketAddr::from(([127, 0, 0, 1], 1));
        let e = check_listener(&listener, other).unwrap_err().to_string();
        assert!(e.contains("keyswitch install --proxy"), "{e}");
        let actual = listener.local_addr().unwrap();
        check_listener(&listener, actual).unwrap();
    }
}
