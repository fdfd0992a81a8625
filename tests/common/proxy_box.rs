//! A sandbox in proxy mode, and requests to its proxy as Claude Code sends them: the harness
//! that tests/proxy.rs and tests/proxy_network.rs share.

use std::net::TcpListener;

use serde_json::Value;

use super::{Sandbox, fake_key};

/// A small Messages API request body.
pub const BODY: &[u8] =
    br#"{"model":"claude-test","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `keyswitch install --proxy --listen 127.0.0.1:PORT` in `s`, to add an environment to.
pub fn install_proxy(s: &Sandbox, port: u16) -> assert_cmd::Command {
    let mut cmd = s.cmd();
    cmd.args([
        "install",
        "--proxy",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    cmd
}

/// A sandbox in proxy mode on a port of its own; the proxy is stopped when it is dropped.
pub struct ProxyBox {
    pub s: Sandbox,
    pub port: u16,
}

impl ProxyBox {
    /// Adds the keys (with their `add` flags), then runs `install --proxy` with `upstream` as
    /// the user's own base URL and `env` in its environment; the proxy it starts keeps running.
    pub fn installed(upstream: &str, keys: &[(&str, &[&str])], env: &[(&str, &str)]) -> Self {
        let keys: Vec<(&str, String, &[&str])> = keys
            .iter()
            .map(|(name, extra)| (*name, fake_key(name), *extra))
            .collect();
        let keys: Vec<(&str, &str, &[&str])> = keys
            .iter()
            .map(|(name, secret, extra)| (*name, secret.as_str(), *extra))
            .collect();
        Self::installed_with_secrets(upstream, &keys, env)
    }

    /// As [`ProxyBox::installed`], with each key's secret given (name, secret, `add` flags):
    /// for an upstream that only knows its own keys, such as a real gateway.
    pub fn installed_with_secrets(
        upstream: &str,
        keys: &[(&str, &str, &[&str])],
        env: &[(&str, &str)],
    ) -> Self {
        let s = Sandbox::new();
        for (name, secret, extra) in keys {
            s.add(name, secret, extra);
        }
        let port = free_port();
        let out = install_proxy(&s, port)
            .env("ANTHROPIC_BASE_URL", upstream)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "install --proxy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { s, port }
    }

    pub fn new(upstream: &str, keys: &[(&str, &[&str])]) -> Self {
        Self::installed(upstream, keys, &[])
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `get` as a Claude Code session with `env` (its network settings) runs it: the token.
    pub fn get(&self, env: &[(&str, &str)]) -> String {
        let out = self
            .s
            .cmd()
            .arg("get")
            .env("ANTHROPIC_BASE_URL", self.base_url())
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "get: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub fn token(&self) -> String {
        self.get(&[])
    }

    pub fn proxy_status(&self) -> Value {
        let out = self
            .s
            .cmd()
            .args(["proxy", "status", "--json"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn proxy_log(&self) -> String {
        std::fs::read_to_string(self.s.state_dir().join("proxy.log")).unwrap_or_default()
    }

    pub fn send(&self, token: &str, body: &[u8]) -> Answer {
        send(&self.base_url(), token, body, &[])
    }

    /// Sends `request` as it is, byte for byte (an HTTP client library would tidy odd request
    /// lines and headers), on a connection of its own; the whole answer as text.
    pub fn send_raw(&self, request: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }
}

impl Drop for ProxyBox {
    fn drop(&mut self) {
        let _ = self.s.cmd().args(["proxy", "stop"]).output();
    }
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The message of an Anthropic-shaped error.
    pub fn message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

pub fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A Messages API request as Claude Code sends it: the token in both credential headers.
pub fn send(base: &str, token: &str, body: &[u8], extra: &[(&str, &str)]) -> Answer {
    block(async {
        let mut request = client()
            .post(format!("{base}/v1/messages?beta=true"))
            .header("x-api-key", token)
            .header("authorization", format!("Bearer {token}"))
            .header("anthropic-version", "2023-06-01")
            .header("content-type", "application/json")
            .header("x-claude-code-session-id", "0b1f2c3d-test-session")
            .body(body.to_vec());
        for (k, v) in extra {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.unwrap().to_vec(),
        }
    })
}
