//! A real LiteLLM proxy (PyPI `litellm[proxy]`, pinned in scripts/install-litellm.sh) on a free
//! loopback port, in front of a loopback stand-in for the Messages API that prices every reply
//! (1000 input + 100 output tokens: $0.002 with tests/gateway/config.template.yaml's prices).
//! Its keys come from tests/gateway/custom_auth.py: `sk-litellm-budget-TAG` (a per-model budget
//! the 4th request crosses), `sk-litellm-rpm-TAG` (2 requests a minute) and
//! `sk-litellm-fallback-TAG` (no limit); each TAG makes a key of its own, so tests can share one
//! LiteLLM ([`shared`]: its start-up is the slow part). Nothing leaves the machine: the proxy
//! variables point at a closed loopback port, with loopback exempt. The process (and anything it
//! started) is killed when this is dropped, or when the test process exits.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::proxy_box::free_port;
use super::upstream::{Reply, Request, Upstream};

/// A key with a per-model budget: [`BUDGET_REQUESTS`] requests, then LiteLLM refuses it.
pub fn budget_key(tag: &str) -> String {
    format!("sk-litellm-budget-{tag}")
}
/// A key with an rpm limit of 2.
pub fn rpm_key(tag: &str) -> String {
    format!("sk-litellm-rpm-{tag}")
}
/// A key without limits.
pub fn fallback_key(tag: &str) -> String {
    format!("sk-litellm-fallback-{tag}")
}
/// The model the config serves and the budget key's per-model budget is for.
pub const MODEL: &str = "claude-sonnet-4-5";
/// Requests the budget key is served before LiteLLM refuses it: $0.002 each, $0.005 budget.
pub const BUDGET_REQUESTS: usize = 3;

/// The environment that keeps a process on loopback: every proxy variable points at the
/// discard port of 127.0.0.1 (nothing listens; a connection is refused at once) and loopback is
/// exempt, so only loopback traffic can work.
pub const LOOPBACK_ONLY_ENV: [(&str, &str); 8] = [
    ("HTTPS_PROXY", "http://127.0.0.1:9"),
    ("HTTP_PROXY", "http://127.0.0.1:9"),
    ("ALL_PROXY", "http://127.0.0.1:9"),
    ("https_proxy", "http://127.0.0.1:9"),
    ("http_proxy", "http://127.0.0.1:9"),
    ("all_proxy", "http://127.0.0.1:9"),
    ("NO_PROXY", "127.0.0.1,localhost,::1"),
    ("no_proxy", "127.0.0.1,localhost,::1"),
];

/// The `litellm` executable from `KEYSWITCH_LITELLM_BIN` (scripts/test.sh exports it). `None`
/// means skip: only outside CI, and the reason is printed. Under CI (`CI` set) a missing
/// LiteLLM fails the test.
pub fn binary() -> Option<PathBuf> {
    match std::env::var_os("KEYSWITCH_LITELLM_BIN").filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.exists(),
                "KEYSWITCH_LITELLM_BIN={} does not exist: run scripts/install-litellm.sh",
                path.display()
            );
            Some(path)
        }
        None if std::env::var_os("CI").is_some() => panic!(
            "KEYSWITCH_LITELLM_BIN is unset under CI: the gateway tests need the real LiteLLM \
             (scripts/install-litellm.sh installs it; scripts/test.sh exports the variable)"
        ),
        None => {
            eprintln!(
                "skipped: KEYSWITCH_LITELLM_BIN is unset (run scripts/install-litellm.sh and \
                 export KEYSWITCH_LITELLM_BIN=\"$(scripts/install-litellm.sh)\", or use scripts/test.sh)"
            );
            None
        }
    }
}

/// How LiteLLM answers a spent budget (`litellm_settings.budget_exceeded_status_code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetStatus {
    /// 1.104 and later: 422.
    Default,
    /// 429, as 1.85 to 1.103 answered.
    Older429,
    /// 400, as 1.84 and earlier answered.
    Older400,
}

/// One LiteLLM per [`BudgetStatus`] for the whole test binary, started on first use; `None`
/// when [`binary`] says skip. It ends with the test process (see [`LiteLlm::start_with`]).
pub fn shared(budget: BudgetStatus) -> Option<&'static LiteLlm> {
    static SHARED: [OnceLock<LiteLlm>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let bin = binary()?;
    let slot = match budget {
        BudgetStatus::Default => &SHARED[0],
        BudgetStatus::Older429 => &SHARED[1],
        BudgetStatus::Older400 => &SHARED[2],
    };
    Some(slot.get_or_init(|| LiteLlm::start_with(&bin, budget)))
}

pub struct LiteLlm {
    child: Child,
    pub port: u16,
    /// The stand-in LiteLLM forwards to; it sees LiteLLM's own upstream key, never the client's.
    pub upstream: Upstream,
    dir: tempfile::TempDir,
    /// How long from spawning LiteLLM to its first healthy answer.
    pub started_in: Duration,
}

impl LiteLlm {
    /// Starts the stand-in and LiteLLM in front of it, and waits until LiteLLM is live. `None`
    /// when [`binary`] says skip.
    pub fn start(budget: BudgetStatus) -> Option<Self> {
        Some(Self::start_with(&binary()?, budget))
    }

    pub fn start_with(bin: &Path, budget: BudgetStatus) -> Self {
        let upstream = Upstream::start(priced_answer);
        let dir = tempfile::tempdir().unwrap();
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gateway");
        std::fs::copy(
            here.join("custom_auth.py"),
            dir.path().join("custom_auth.py"),
        )
        .unwrap();
        let extra = match budget {
            BudgetStatus::Default => "",
            BudgetStatus::Older429 => "  budget_exceeded_status_code: 429\n",
            BudgetStatus::Older400 => "  budget_exceeded_status_code: 400\n",
        };
        let config = std::fs::read_to_string(here.join("config.template.yaml"))
            .unwrap()
            .replace("@STANDIN_PORT@", &upstream.port.to_string())
            .replace("@EXTRA_SETTINGS@\n", extra);
        std::fs::write(dir.path().join("config.yaml"), config).unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let log = std::fs::File::create(dir.path().join("litellm.log")).unwrap();

        let port = free_port();
        let started = Instant::now();
        // A watchdog shell starts LiteLLM, then reads its stdin, a pipe from this process: at
        // its end (this is dropped, or the test process exits, as it does with [`shared`]'s
        // LiteLLMs never dropped) it kills its own process group, LiteLLM and all.
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(r#""$0" "$@" </dev/null & cat >/dev/null; kill -KILL 0"#)
            .arg(bin)
            .args(["--config", "config.yaml", "--host", "127.0.0.1"])
            .arg("--port")
            .arg(port.to_string())
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("TZ", "UTC")
            // Its price list from the package, not downloaded.
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .env("KEYSWITCH_LITELLM_AUTH_LOG", dir.path().join("auth.log"))
            .envs(LOOPBACK_ONLY_ENV)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // Its own process group, so that drop ends whatever it started too.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("LiteLLM starts");
        let mut litellm = Self {
            child,
            port,
            upstream,
            dir,
            started_in: Duration::ZERO,
        };
        litellm.wait_until_live();
        litellm.started_in = started.elapsed();
        eprintln!(
            "LiteLLM ({:?}) live on port {port} after {:.1} s",
            budget,
            litellm.started_in.as_secs_f64()
        );
        litellm
    }

    fn wait_until_live(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "LiteLLM exited with {status} before it was live:\n{}",
                    self.log()
                );
            }
            if get_status(self.port, "/health/liveliness") == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "LiteLLM was not live within 90 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// LiteLLM's own output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("litellm.log")).unwrap_or_default()
    }

    /// The requests LiteLLM served, as its access log has them (`"POST /v1/messages?beta=true
    /// HTTP/1.1" 200 OK`), health checks left out.
    pub fn access_log(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains(" HTTP/1.1\" ") && !l.contains("/health/"))
            .map(|l| l.split_once(" - ").map_or(l, |(_, r)| r).trim().to_string())
            .collect()
    }

    /// The kinds (`budget`, `rpm`, `fallback`, ...) of the keys tagged `tag` that LiteLLM was
    /// asked with, in order, as tests/gateway/custom_auth.py recorded them: one per request it
    /// authenticated, refused ones included.
    pub fn keys_asked(&self, tag: &str) -> Vec<String> {
        let suffix = format!("-{tag}");
        std::fs::read_to_string(self.dir.path().join("auth.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|key| key.strip_suffix(&suffix)?.strip_prefix("sk-litellm-"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for LiteLlm {
    fn drop(&mut self) {
        // Closing the watchdog's stdin ends the group; the kill below makes sure.
        drop(self.child.stdin.take());
        let pid = self.child.id();
        // The whole group: LiteLLM and any worker it forked.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The HTTP status of a GET to loopback `port`, or `None` when nothing answered.
fn get_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// The stand-in's answer: a priced Messages API reply, streamed when the request asks.
fn priced_answer(r: &Request) -> Reply {
    if !r.path.starts_with("/v1/messages") {
        return Reply::json(
            404,
            r#"{"type":"error","error":{"type":"not_found_error","message":"stand-in"}}"#,
        );
    }
    let request: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let model = request["model"].as_str().unwrap_or(MODEL).to_string();
    if request["stream"] == json!(true) {
        Reply::Sse {
            events: priced_stream(&model, "hello from the stand-in"),
            gap: Duration::ZERO,
        }
    } else {
        Reply::json(200, &priced_message(&model, "hello from the stand-in"))
    }
}

/// A Messages API reply with a `usage` block LiteLLM prices: 1000 input, 100 output tokens.
pub fn priced_message(model: &str, text: &str) -> String {
    json!({"id": "msg_standin", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
        "stop_sequence": null, "usage": {"input_tokens": 1000, "output_tokens": 100}})
    .to_string()
}

/// The same as server-sent events, the usage split as Anthropic sends it.
pub fn priced_stream(model: &str, text: &str) -> Vec<String> {
    super::upstream::message_events(model, text, 1000, 100)
}
