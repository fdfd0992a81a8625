//! What `scripts/bench-peers.sh` hands the `peers` mode: the stand-in's port, how much load to
//! send, and per proxy how to set it up, start it, reset its keys and talk to it. Read from one
//! JSON file; a field that is missing or of the wrong type stops the run with its name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::Value;

/// A command to run: its arguments, extra environment (on top of the benchmark's own) and
/// working directory.
#[derive(Clone, Debug)]
pub struct Cmd {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// Its stdout, trimmed, is the token the client sends (keyswitch's `get`).
    pub prints_token: bool,
}

#[derive(Clone, Debug)]
pub struct Peer {
    pub name: String,
    pub version: String,
    /// Where the keys end up, as the script read it from the peer's own files.
    pub keys_stored: String,
    pub listen: SocketAddr,
    /// What the client sends as `x-api-key` (replaced by a setup command's output if one prints it).
    pub token: String,
    /// Run once, in order, with the stand-in up and before the first start.
    pub setup: Vec<Cmd>,
    pub start: Cmd,
    /// Run after each stop, so the next start finds both keys ready again.
    pub reset: Vec<Cmd>,
    /// Where the peer's stdout and stderr go.
    pub log: PathBuf,
}

pub struct Spec {
    pub standin_port: u16,
    /// Starts of each peer: all but the last are timed to the first 200 and then used for one
    /// failover or one every-key-spent sample (alternately); the last stays up for the load.
    pub starts: usize,
    pub rounds: usize,
    pub warmup: usize,
    pub c1_requests: usize,
    pub per_connection: usize,
    pub streams: usize,
    pub peers: Vec<Peer>,
}

pub fn read(path: &str) -> Result<Spec, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: not JSON: {e}"))?;
    let n = |name: &str| -> Result<usize, String> {
        v[name]
            .as_u64()
            .map(|n| n as usize)
            .ok_or(format!("{path}: `{name}` must be a number"))
    };
    let peers = v["peers"]
        .as_array()
        .ok_or(format!("{path}: `peers` must be a list"))?
        .iter()
        .map(peer)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Spec {
        standin_port: n("standin_port")? as u16,
        starts: n("starts")?.max(1),
        rounds: n("rounds")?.max(1),
        warmup: n("warmup")?,
        c1_requests: n("c1_requests")?.max(10),
        per_connection: n("per_connection")?.max(2),
        streams: n("streams")?.max(10),
        peers,
    })
}

fn peer(v: &Value) -> Result<Peer, String> {
    let name = text(v, "name")?;
    let at = |e: String| format!("peer {name}: {e}");
    let cmds = |field: &str| -> Result<Vec<Cmd>, String> {
        match &v[field] {
            Value::Null => Ok(Vec::new()),
            Value::Array(list) => list.iter().map(cmd).collect(),
            _ => Err(format!("`{field}` must be a list of commands")),
        }
    };
    Ok(Peer {
        version: text(v, "version").map_err(at)?,
        keys_stored: text(v, "keys_stored").map_err(at)?,
        listen: text(v, "listen")
            .map_err(at)?
            .parse()
            .map_err(|e| at(format!("`listen`: {e}")))?,
        token: v["token"].as_str().unwrap_or("").to_string(),
        setup: cmds("setup").map_err(at)?,
        start: cmd(&v["start"]).map_err(at)?,
        reset: cmds("reset").map_err(at)?,
        log: PathBuf::from(text(v, "log").map_err(at)?),
        name,
    })
}

fn cmd(v: &Value) -> Result<Cmd, String> {
    let argv: Vec<String> = v["argv"]
        .as_array()
        .ok_or("a command needs `argv`, a list of strings")?
        .iter()
        .map(|a| {
            a.as_str()
                .map(str::to_string)
                .ok_or("`argv` holds strings only")
        })
        .collect::<Result<_, _>>()?;
    if argv.is_empty() {
        return Err("`argv` is empty".into());
    }
    let env = v["env"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Cmd {
        argv,
        env,
        cwd: v["cwd"].as_str().map(PathBuf::from),
        prints_token: v["prints_token"].as_bool().unwrap_or(false),
    })
}

fn text(v: &Value, field: &str) -> Result<String, String> {
    v[field]
        .as_str()
        .map(str::to_string)
        .ok_or(format!("`{field}` must be a string"))
}
