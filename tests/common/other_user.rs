//! A listener run as another user (uid 65534, through `setpriv`): what a stranger on a shared
//! host would run on a loopback port. It answers every connection with one fixed HTTP body and
//! keeps every byte it was sent. Root only (CI runs as root); elsewhere the test skips.

use std::io::Read;
use std::process::{Child, ChildStdout, Stdio};

pub const OTHER_UID: u32 = 65534;

pub struct OtherUserListener {
    child: Child,
    stdout: ChildStdout,
}

impl OtherUserListener {
    /// Listens on 127.0.0.1:`port` as uid 65534 and answers `body` (JSON) to each
    /// connection; `None`, with the reason printed, where the test cannot switch user.
    pub fn start(port: u16, body: &str) -> Option<Self> {
        if !rustix::process::getuid().is_root()
            || !std::path::Path::new("/usr/bin/setpriv").exists()
        {
            eprintln!("skipped: needs root and setpriv to listen as another user");
            return None;
        }
        let script = format!(
            r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", {port}))
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(0.5)
    try:
        data = c.recv(65536)
    except Exception:
        data = b""
    sys.stdout.write(data.decode("latin-1").replace("\n", " ") + "\n")
    sys.stdout.flush()
    body = {body:?}.encode()
    c.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
    c.close()
"#
        );
        // The system's python: one under root's home (pyenv) is not for uid 65534 to run.
        let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("a system python3 (CI installs it)");
        let mut child = std::process::Command::new("/usr/bin/setpriv")
            .args([
                &format!("--reuid={OTHER_UID}"),
                &format!("--regid={OTHER_UID}"),
                "--clear-groups",
                python,
                "-c",
                &script,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut ready = [0u8; 6];
        stdout.read_exact(&mut ready).unwrap();
        assert_eq!(&ready, b"ready\n");
        Some(Self { child, stdout })
    }

    /// Stops the listener; everything it was sent, one line a connection.
    pub fn heard(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut heard = String::new();
        let _ = self.stdout.read_to_string(&mut heard);
        heard
    }
}

/// A failed assertion must not leave the listener running (it holds the test's output open).
impl Drop for OtherUserListener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
