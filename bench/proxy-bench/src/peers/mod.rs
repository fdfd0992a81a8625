//! The `peers` mode: keyswitch's proxy and the proxies people use instead, driven by the same
//! load generator against the same stand-in upstream, interleaved, in one run.
//!
//!   proxy-bench peers --spec FILE --pids FILE
//!
//! `scripts/bench-peers.sh` writes the spec (what each proxy is and how to run it, see
//! [`spec`]) and runs this in a network namespace of its own, loopback only. First every proxy
//! is started `starts` times in turn: each start is timed to its first 200; all but the last are
//! then warmed with 20 requests and give one failover sample or one every-key-spent sample
//! (alternately), are stopped and have their keys reset. The last start of each stays up, and
//! all of them take the load at once: in turn at concurrency 1, in phases at concurrency 32, in
//! turn for the first event of a stream, then 64 streams held open. Prints one JSON object on
//! stdout; progress goes to stderr. A proxy that fails to set up or start is reported, not
//! measured.

mod conn;
mod load;
mod process;
mod samples;
mod spec;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::standin::StandIn;
use conn::{Bodies, Conn, Target};
use process::Running;
use spec::{Peer, Spec};

/// Requests a fresh start is warmed with before its failover or every-key-spent sample.
const WARM_BEFORE_SAMPLE: usize = 20;

pub fn main(args: &[String]) {
    let mut spec_path = None;
    let mut pids = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match (flag.as_str(), it.next()) {
            ("--spec", Some(v)) => spec_path = Some(v.clone()),
            ("--pids", Some(v)) => pids = Some(PathBuf::from(v)),
            _ => crate::usage(&format!("peers: unknown or incomplete argument {flag}")),
        }
    }
    let (Some(spec_path), Some(pids)) = (spec_path, pids) else {
        crate::usage("peers needs --spec FILE and --pids FILE")
    };
    let spec = spec::read(&spec_path).unwrap_or_else(|e| crate::usage(&e));
    let up = StandIn::start_on(spec.standin_port);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(run(&spec, &up, &pids));
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}

/// One proxy through the run: its facts, what was measured, and its process while it is up.
struct Entry {
    peer: Peer,
    target: Target,
    report: Value,
    running: Option<Running>,
}

async fn run(spec: &Spec, up: &StandIn, pids: &PathBuf) -> Value {
    let bodies = Bodies::new(crate::BODY_BYTES);
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    for peer in &spec.peers {
        match set_up(peer) {
            Ok(token) => entries.push(Entry {
                target: Target {
                    addr: peer.listen,
                    key: token,
                },
                report: json!({"name": peer.name, "version": peer.version,
                    "keys_stored": peer.keys_stored, "ready_ms": [], "rss_at_start_kib": [],
                    "failover": [], "spent": []}),
                peer: peer.clone(),
                running: None,
            }),
            Err(e) => skipped.push(json!({"name": peer.name, "why": e})),
        }
    }

    for i in 0..spec.starts {
        let last = i + 1 == spec.starts;
        for entry in entries.iter_mut().filter(|e| e.report["failed"].is_null()) {
            eprintln!(
                "proxy-bench peers: start {}/{} of {}",
                i + 1,
                spec.starts,
                entry.peer.name
            );
            if let Err(e) = start_once(entry, up, &bodies, pids, i, last).await {
                eprintln!("proxy-bench peers: {}: {e}", entry.peer.name);
                entry.report["failed"] = json!(e);
            }
        }
    }
    let (live, failed): (Vec<Entry>, Vec<Entry>) = entries
        .into_iter()
        .partition(|e| e.report["failed"].is_null() && e.running.is_some());
    let mut live = live;
    let direct = load_phase(spec, up, &bodies, &mut live).await;

    let mut peers = Vec::new();
    for mut entry in live.into_iter().chain(failed) {
        if let Some(running) = entry.running.take() {
            process::stop(running, entry.peer.listen);
        }
        peers.push(entry.report);
    }
    json!({"body_bytes": crate::BODY_BYTES, "direct": direct, "peers": peers, "skipped": skipped})
}

/// Runs the peer's setup commands; the token the client sends.
fn set_up(peer: &Peer) -> Result<String, String> {
    let mut token = peer.token.clone();
    for cmd in &peer.setup {
        let out = process::run(cmd)?;
        if cmd.prints_token {
            token = out;
        }
    }
    if token.is_empty() {
        return Err(
            "no token for the client: neither `token` nor a setup command printing it".into(),
        );
    }
    Ok(token)
}

/// Start `i` of a peer: timed to its first 200; all but the last then give one sample and stop.
async fn start_once(
    entry: &mut Entry,
    up: &StandIn,
    bodies: &Bodies,
    pids: &PathBuf,
    i: usize,
    last: bool,
) -> Result<(), String> {
    let mut running = process::spawn(&entry.peer.start, &entry.peer.log, pids);
    let ready = samples::first_200(&mut running, &entry.target, bodies).await;
    let ready = match ready {
        Ok(r) => r,
        Err(e) => {
            process::stop(running, entry.peer.listen);
            return Err(e);
        }
    };
    push(&mut entry.report["ready_ms"], json!(crate::ms(ready)));
    push(
        &mut entry.report["rss_at_start_kib"],
        json!(process::group_rss_kib(running.pgid())),
    );
    if last {
        entry.running = Some(running);
        return Ok(());
    }
    let mut conn = Conn::new(entry.target.clone());
    for _ in 0..WARM_BEFORE_SAMPLE {
        let _ = conn.exchange(&bodies.plain).await;
    }
    if i.is_multiple_of(2) {
        let sample = samples::failover(up, &mut conn, bodies).await;
        push(&mut entry.report["failover"], sample);
    } else {
        let sample = samples::spent(up, &mut conn, bodies).await;
        push(&mut entry.report["spent"], sample);
    }
    drop(conn);
    process::stop(running, entry.peer.listen);
    for cmd in &entry.peer.reset {
        process::run(cmd)?;
    }
    Ok(())
}

fn push(list: &mut Value, item: Value) {
    if let Some(list) = list.as_array_mut() {
        list.push(item);
    }
}

/// Every live proxy under load at once, and the stand-in directly as the reference. Returns the
/// direct figures; the proxies' go into their reports.
async fn load_phase(spec: &Spec, up: &StandIn, bodies: &Bodies, live: &mut [Entry]) -> Value {
    let direct = Target {
        addr: up.addr,
        key: "sk-ant-test-bench-direct-0000".to_string(),
    };
    let mut targets = vec![direct];
    targets.extend(live.iter().map(|e| e.target.clone()));
    let mut conns: Vec<Conn> = targets.iter().cloned().map(Conn::new).collect();

    eprintln!("proxy-bench peers: warm-up");
    load::in_turn(&mut conns, &bodies.plain, spec.warmup, false).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for entry in live.iter_mut() {
        let pgid = entry.running.as_ref().unwrap().pgid();
        entry.report["rss_idle_after_warmup_kib"] = json!(process::group_rss_kib(pgid));
    }

    let mut rounds: Vec<Vec<Value>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..spec.rounds {
        eprintln!("proxy-bench peers: round {}/{}", round + 1, spec.rounds);
        let c1 = load::in_turn(&mut conns, &bodies.plain, spec.c1_requests, false).await;
        let mut order: Vec<usize> = (0..targets.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        let mut c32: Vec<Option<load::Times>> = targets.iter().map(|_| None).collect();
        for &k in &order {
            c32[k] = Some(load::concurrent(&targets[k], &bodies.plain, spec.per_connection).await);
        }
        let ttfb = load::in_turn(&mut conns, &bodies.sse, spec.streams, true).await;
        for (k, ((c1, c32), ttfb)) in c1.into_iter().zip(c32).zip(ttfb).enumerate() {
            rounds[k]
                .push(json!({"c1": stats(c1), "c32": stats(c32.unwrap()), "ttfb": stats(ttfb)}));
        }
    }
    drop(conns);

    for entry in live.iter_mut() {
        eprintln!(
            "proxy-bench peers: {} open streams through {}",
            samples::OPEN_STREAMS,
            entry.peer.name
        );
        let pgid = entry.running.as_ref().unwrap().pgid();
        entry.report["streams_64"] = samples::held_streams(up, &entry.target, bodies, pgid).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for entry in live.iter_mut() {
        let pgid = entry.running.as_ref().unwrap().pgid();
        entry.report["rss_idle_after_load_kib"] = json!(process::group_rss_kib(pgid));
    }
    let mut rounds = rounds.into_iter();
    let direct = json!({"rounds": rounds.next().unwrap()});
    for (entry, r) in live.iter_mut().zip(rounds) {
        entry.report["rounds"] = json!(r);
    }
    direct
}

/// p50 and p99 of the answered requests, and how many were not answered 200.
fn stats(mut t: load::Times) -> Value {
    t.ok.sort();
    if t.ok.is_empty() {
        return json!({"samples": 0, "failed": t.failed, "last_error": t.last_error});
    }
    json!({
        "samples": t.ok.len(),
        "p50": crate::ms(crate::percentile(&t.ok, 0.50)),
        "p99": crate::ms(crate::percentile(&t.ok, 0.99)),
        "failed": t.failed,
        "last_error": t.last_error,
    })
}
