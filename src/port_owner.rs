//! Who holds a local TCP port: the user and, where it can be found, the process of the socket
//! listening there. What answers on the proxy's port is never taken at its word (see
//! [`crate::proxy_proof`]); this says whose it is, so `get` can refuse another user's listener
//! by name, tell a stopped proxy from a dead one, and stop an older keyswitch proxy of the
//! user's own by signal instead of by handing it the token.
//!
//! Linux reads `/proc/net/tcp{,6}` and `/proc/PID/{fd,stat,status,cmdline}`, and this
//! profile's proxy record ([`crate::proxy_pid_record`]) where a proxy's fds are unreadable; macOS asks `lsof`, best
//! effort; elsewhere (Windows) nothing is known and only the proof protects.

use std::net::SocketAddr;

/// The socket listening on an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pub uid: u32,
    /// Found only for the user's own processes (or any, as root).
    pub pid: Option<u32>,
}

impl Holder {
    pub fn is_ours(&self) -> bool {
        our_uid().is_none_or(|ours| ours == self.uid)
    }
}

/// This process's user; `None` where there are no Unix users.
pub fn our_uid() -> Option<u32> {
    #[cfg(unix)]
    {
        Some(rustix::process::getuid().as_raw())
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The socket listening on `addr` (one bound to the wildcard address with its port counts),
/// if it can be found. Where several do, one of another user is named first.
pub fn holder(addr: SocketAddr) -> Option<Holder> {
    #[cfg(target_os = "linux")]
    {
        linux::holder(addr)
    }
    #[cfg(target_os = "macos")]
    {
        macos::holder(addr)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        // Windows: the owner of a socket needs the IP Helper API (unsafe FFI, denied here);
        // the proof of the token is what protects there.
        let _ = addr;
        None
    }
}

/// Whether process `pid` is stopped (Ctrl-Z, SIGSTOP) rather than running.
pub fn is_stopped(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        linux::state(pid).is_some_and(|s| s == 'T' || s == 't')
    }
    #[cfg(target_os = "macos")]
    {
        std::process::Command::new("ps")
            .args(["-o", "stat=", "-p", &pid.to_string()])
            .output()
            .ok()
            .is_some_and(|o| o.stdout.trim_ascii_start().starts_with(b"T"))
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        let _ = pid;
        false
    }
}

/// Whether process `pid` runs `keyswitch proxy run`: a keyswitch binary with exactly those
/// arguments. Linux only; elsewhere no process is recognised (so none is signalled).
pub fn is_keyswitch_proxy(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        linux::is_keyswitch_proxy(pid)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        false
    }
}

/// Asks process `pid` to stop (SIGTERM: a keyswitch proxy drains its requests and exits).
#[cfg(unix)]
pub fn terminate(pid: u32) -> std::io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| std::io::Error::other(format!("no such process id {pid}")))?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).map_err(Into::into)
}

#[cfg(target_os = "linux")]
mod linux {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    use super::Holder;
    use crate::proxy_pid_record::PidRecord;

    /// A socket's row in `/proc/net/tcp{,6}`.
    #[derive(Debug, PartialEq, Eq)]
    pub(super) struct Row {
        pub addr: SocketAddr,
        pub listening: bool,
        pub uid: u32,
        pub inode: u64,
    }

    pub fn holder(addr: SocketAddr) -> Option<Holder> {
        let mut rows: Vec<Row> = ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .flat_map(|text| {
                text.lines()
                    .skip(1)
                    .filter_map(parse_row)
                    .collect::<Vec<_>>()
            })
            .filter(|row| row.listening && covers(row.addr, addr))
            .collect();
        let ours = super::our_uid();
        rows.sort_by_key(|row| Some(row.uid) == ours);
        let row = rows.first()?;
        let pid = pid_of_socket(row.inode).or_else(|| {
            // A proxy keeps its /proc/PID/fd from its own user too (it is not dumpable, so no
            // core file holds a key): then it is told among the user's proxies by its record.
            (Some(row.uid) == ours)
                .then(|| proxy_of_ours(addr))
                .flatten()
        });
        Some(Holder { uid: row.uid, pid })
    }

    /// Which of this user's `keyswitch proxy run` processes holds `addr`, when its fds cannot
    /// be read. The record is this profile's (the state folder this keyswitch runs with):
    /// the proxy a `get` of this profile started.
    fn proxy_of_ours(addr: SocketAddr) -> Option<u32> {
        let ours = super::our_uid()?;
        let proxies: Vec<u32> = std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                (uid_of(pid) == Some(ours) && is_keyswitch_proxy(pid)).then_some(pid)
            })
            .collect();
        let recorded = crate::paths::Dirs::from_env()
            .ok()
            .and_then(|dirs| crate::proxy_pid_record::read(&dirs.proxy_pid_file()));
        choose_proxy(addr, &proxies, recorded)
    }

    /// Among this user's proxies (`proxies`, each checked to be a `keyswitch proxy run` of
    /// this uid), the one holding `addr`: the recorded one when it is among them and listens
    /// there, else the only one, else none (a guess could name another profile's proxy).
    pub(super) fn choose_proxy(
        addr: SocketAddr,
        proxies: &[u32],
        recorded: Option<PidRecord>,
    ) -> Option<u32> {
        if let Some(record) = recorded
            && proxies.contains(&record.pid)
            && covers(record.listen, addr)
        {
            return Some(record.pid);
        }
        match proxies {
            [only] => Some(*only),
            _ => None,
        }
    }

    /// The real uid on the `Uid:` line of `/proc/PID/status`.
    fn uid_of(pid: u32) -> Option<u32> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Whether a socket listening on `bound` takes connections to `wanted`.
    pub(super) fn covers(bound: SocketAddr, wanted: SocketAddr) -> bool {
        if bound.port() != wanted.port() {
            return false;
        }
        let bound_ip = match bound.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        bound_ip.is_unspecified() || bound_ip == wanted.ip()
    }

    /// `  0: 0100007F:1F90 00000000:0000 0A … uid timeout inode …`; addresses as the kernel
    /// keeps them in memory (network order), printed as host-order words.
    pub(super) fn parse_row(line: &str) -> Option<Row> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (ip, port) = fields.get(1)?.split_once(':')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        let ip = match ip.len() {
            8 => IpAddr::V4(Ipv4Addr::from(word(ip)?)),
            32 => {
                let mut bytes = [0u8; 16];
                for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                    chunk.copy_from_slice(&word(ip.get(8 * i..8 * i + 8)?)?);
                }
                IpAddr::V6(Ipv6Addr::from(bytes))
            }
            _ => return None,
        };
        Some(Row {
            addr: SocketAddr::new(ip, port),
            listening: *fields.get(3)? == "0A",
            uid: fields.get(7)?.parse().ok()?,
            inode: fields.get(9)?.parse().ok()?,
        })
    }

    fn word(hex: &str) -> Option<[u8; 4]> {
        u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes)
    }

    /// The process holding socket `inode`, from the `/proc/PID/fd` links it may read.
    fn pid_of_socket(inode: u64) -> Option<u32> {
        if inode == 0 {
            return None;
        }
        let wanted = format!("socket:[{inode}]");
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .find_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
                fds.flatten()
                    .any(|fd| {
                        std::fs::read_link(fd.path())
                            .is_ok_and(|target| target.as_os_str() == wanted.as_str())
                    })
                    .then_some(pid)
            })
    }

    /// The state letter of `/proc/PID/stat` (after the command name, which may hold spaces).
    pub fn state(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?.1.trim_start().chars().next()
    }

    pub fn is_keyswitch_proxy(pid: u32) -> bool {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let args: Vec<&[u8]> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .collect();
        let keyswitch = |path: &[u8]| {
            let name = path.rsplit(|b| *b == b'/').next().unwrap_or(path);
            name == b"keyswitch"
        };
        let exe_is_keyswitch = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.as_encoded_bytes().to_vec()))
            // An upgrade replaces the binary: the link then reads "keyswitch (deleted)".
            .is_some_and(|n| n == b"keyswitch" || n == b"keyswitch (deleted)");
        matches!(args.as_slice(), [exe, b"proxy", b"run"] if keyswitch(exe) || exe_is_keyswitch)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn rows_of_proc_net_tcp_are_read() {
            let v4 = "   0: 0100007F:1F92 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0";
            let row = parse_row(v4).unwrap();
            assert_eq!(row.addr, "127.0.0.1:8082".parse().unwrap());
            assert!(row.listening);
            assert_eq!((row.uid, row.inode), (1000, 4242));
            let v6 = "   1: 00000000000000000000000001000000:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0";
            let row = parse_row(v6).unwrap();
            assert_eq!(row.addr, "[::1]:8082".parse().unwrap());
            assert!(covers(
                "0.0.0.0:8082".parse().unwrap(),
                "127.0.0.1:8082".parse().unwrap()
            ));
            assert!(covers(
                "[::ffff:127.0.0.1]:8082".parse().unwrap(),
                "127.0.0.1:8082".parse().unwrap()
            ));
            assert!(!covers(
                "127.0.0.1:8083".parse().unwrap(),
                "127.0.0.1:8082".parse().unwrap()
            ));
        }

        #[test]
        fn a_proxy_whose_fds_cannot_be_read_is_told_by_its_record() {
            let addr: SocketAddr = "127.0.0.1:8082".parse().unwrap();
            let record = |pid, listen: &str| {
                Some(PidRecord {
                    pid,
                    listen: listen.parse().unwrap(),
                })
            };
            // Two profiles' proxies: the record says which is this one's.
            assert_eq!(
                choose_proxy(addr, &[10, 20], record(20, "127.0.0.1:8082")),
                Some(20)
            );
            assert_eq!(choose_proxy(addr, &[10, 20], None), None);
            // A record of another address, or of a pid that is no proxy of ours now: no guess.
            assert_eq!(
                choose_proxy(addr, &[10, 20], record(20, "127.0.0.1:9000")),
                None
            );
            assert_eq!(
                choose_proxy(addr, &[10, 20], record(30, "127.0.0.1:8082")),
                None
            );
            // One proxy of ours: that one, whatever a stale record says.
            assert_eq!(
                choose_proxy(addr, &[10], record(30, "127.0.0.1:8082")),
                Some(10)
            );
            assert_eq!(choose_proxy(addr, &[10], None), Some(10));
            assert_eq!(choose_proxy(addr, &[], record(30, "127.0.0.1:8082")), None);
        }

        #[test]
        fn a_listener_of_this_process_is_found_with_its_pid_and_state() {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let found = holder(listener.local_addr().unwrap()).unwrap();
            assert_eq!(Some(found.uid), super::super::our_uid());
            assert_eq!(found.pid, Some(std::process::id()));
            assert!(found.is_ours());
            assert!(matches!(state(std::process::id()), Some('R' | 'S')));
            assert!(!is_keyswitch_proxy(std::process::id()));
        }
    }
}

#[cfg(target_os = "macos")]
mod macos {
    use std::net::SocketAddr;

    use super::Holder;

    /// `lsof -Fpu` prints `p<pid>` and `u<uid>` lines; it sees every user's sockets only as
    /// root, so another user's listener may go unseen (the proof still protects).
    pub fn holder(addr: SocketAddr) -> Option<Holder> {
        let out = std::process::Command::new("lsof")
            .args([
                "-nP",
                &format!("-iTCP:{}", addr.port()),
                "-sTCP:LISTEN",
                "-Fpu",
            ])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut pid = None;
        for line in text.lines() {
            if let Some(p) = line.strip_prefix('p') {
                pid = p.parse().ok();
            } else if let Some(u) = line.strip_prefix('u') {
                return Some(Holder {
                    uid: u.parse().ok()?,
                    pid,
                });
            }
        }
        None
    }
}

/// The user of another account (neither ours nor root) whose socket listens on `addr`, read
/// from the kernel's socket table alone (no process scan: the proxy asks this on each new
/// upstream connection). Root is allowed: docker-proxy publishes containers' ports as root,
/// and root can read everything of ours anyway. `None` where nothing is known (not Linux).
pub fn foreign_listener_uid(addr: SocketAddr) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        let ours = our_uid()?;
        ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .flat_map(|text| {
                text.lines()
                    .skip(1)
                    .filter_map(linux::parse_row)
                    .collect::<Vec<_>>()
            })
            .filter(|row| row.listening && linux::covers(row.addr, addr))
            .map(|row| row.uid)
            .find(|&uid| uid != ours && uid != 0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = addr;
        None
    }
}
