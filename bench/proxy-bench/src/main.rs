//! The proxy-mode benchmark: everything measured against a reference in the same run.
//!
//!   proxy-bench --keyswitch PATH [--rounds N] [--requests N]
//!   proxy-bench peers --spec FILE --pids FILE     (keyswitch beside other proxies: [`peers`])
//!
//! Runs inside a sandbox that `scripts/bench-proxy.sh` set up (config and state folders, a
//! private keyring holding a key `primary` and a key `fallback`). Starts a stand-in upstream,
//! puts keyswitch in proxy mode in front of it, and prints one JSON object on stdout:
//! - added latency: the same requests direct to the stand-in and through the proxy,
//!   interleaved, at concurrency 1 and 32, each over keep-alive connections;
//! - time to the first event of a stream, direct and through the proxy;
//! - the failover gap, timed inside the stand-in (from handing out the primary's 429 to the
//!   fallback's request arriving), through the proxy and for a client re-sending by itself;
//! - the proxy's resident memory idle and with 64 streams open; its time from spawn to ready.
//!
//! Each latency measurement is repeated `--rounds` times; the script reports the medians.
//! Progress goes to stderr.

mod client;
mod peers;
mod proxy;
mod standin;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use client::{Sender, Target, connect, exchange, first_byte, request};
use proxy::{Cpu, Keyswitch, cpu, rss_kib};
use standin::StandIn;

/// Proxy starts timed to ready (the last one stays up for the rest of the run).
const STARTS: usize = 9;
const WARMUP: usize = 300;
const CONCURRENCY: usize = 32;
/// Requests per connection in one phase at concurrency 32; two phases per side and round.
const PER_CONNECTION: usize = 150;
/// Each phase starts with all 32 connections sending at once, from an idle proxy (and, in the
/// first, an empty upstream pool): that ramp-up, this many requests per connection, is not timed,
/// so what is measured is 32 requests in flight, steady.
const RAMP_UP: usize = 5;
const STREAM_SAMPLES: usize = 400;
const FAILOVER_SAMPLES: usize = 25;
const OPEN_STREAMS: usize = 64;
/// The request body: 50 KB, the size the targets are stated for.
const BODY_BYTES: usize = 50 * 1000;

struct Args {
    keyswitch: PathBuf,
    rounds: usize,
    requests: usize,
}

fn args() -> Args {
    let mut args = Args {
        keyswitch: PathBuf::new(),
        rounds: 5,
        requests: 5000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--keyswitch" => args.keyswitch = PathBuf::from(value()),
            "--rounds" => args.rounds = value().parse().unwrap_or_else(|_| usage("--rounds N")),
            "--requests" => {
                args.requests = value().parse().unwrap_or_else(|_| usage("--requests N"))
            }
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if args.keyswitch.as_os_str().is_empty() || args.rounds == 0 || args.requests < 100 {
        usage("--keyswitch is required; --rounds at least 1, --requests at least 100");
    }
    args
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "proxy-bench: {problem}\nusage: proxy-bench --keyswitch PATH [--rounds N] [--requests N]"
    );
    std::process::exit(2)
}

/// A run that takes longer than this is stuck (a stand-in or proxy that stopped answering):
/// better a clear failure than a CI job that hangs.
const WATCHDOG: Duration = Duration::from_secs(300);

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("peers") {
        return peers::main(&argv[1..]);
    }
    let args = args();
    std::thread::spawn(|| {
        std::thread::sleep(WATCHDOG);
        eprintln!(
            "proxy-bench: no result after {} s: something stopped answering",
            WATCHDOG.as_secs()
        );
        std::process::exit(1);
    });
    let up = StandIn::start();
    let ks = Keyswitch {
        bin: args.keyswitch.clone(),
    };
    let listen = free_port();
    let proxy_url = format!("http://{listen}");
    let listen_arg = listen.to_string();
    ks.run(
        &["install", "--proxy", "--listen", &listen_arg],
        &[("ANTHROPIC_BASE_URL", &up.url())],
    );
    let token = ks.run(&["get"], &[("ANTHROPIC_BASE_URL", &proxy_url)]);
    assert!(token.starts_with("ksp-"), "get did not hand out a token");
    ks.run(&["proxy", "stop"], &[]);

    eprintln!("proxy-bench: start-up, {STARTS} starts");
    let mut ready = Vec::new();
    let mut rss_at_start = Vec::new();
    let mut running = None;
    for i in 0..STARTS {
        let (child, took) = ks.start(listen);
        ready.push(took);
        rss_at_start.push(rss_kib(child.id()));
        if i + 1 < STARTS {
            proxy::stop(child);
        } else {
            running = Some(child);
        }
    }
    let child = running.unwrap();
    let pid = child.id();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut report = runtime.block_on(measure(&args, &up, &ks, listen, &token, pid));
    proxy::stop(child);

    ready.sort();
    report["ready_ms"] = json!({"median": ms(ready[ready.len() / 2]), "all": ready.iter().map(|d| ms(*d)).collect::<Vec<_>>()});
    rss_at_start.sort();
    report["rss_kib"]["at_start"] = json!(rss_at_start[rss_at_start.len() / 2]);
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}

async fn measure(
    args: &Args,
    up: &StandIn,
    ks: &Keyswitch,
    listen: SocketAddr,
    token: &str,
    pid: u32,
) -> Value {
    let body = Bytes::from(message_body(BODY_BYTES));
    let direct = Target {
        addr: up.addr,
        key: "sk-ant-test-bench-direct-0000".to_string(),
    };
    let through = Target {
        addr: listen,
        key: token.to_string(),
    };

    eprintln!("proxy-bench: warm-up");
    let mut d = connect(direct.addr).await;
    let mut p = connect(through.addr).await;
    for _ in 0..WARMUP {
        let (_, s1) = exchange(&mut d, request(&direct, &direct.key, "", &body)).await;
        let (_, s2) = exchange(&mut p, request(&through, &through.key, "", &body)).await;
        assert!(s1 == 200 && s2 == 200, "warm-up answered {s1} / {s2}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_idle_warm = rss_kib(pid);

    let mut c1 = Vec::new();
    let mut c32 = Vec::new();
    let mut ttfb = Vec::new();
    for round in 0..args.rounds {
        eprintln!("proxy-bench: round {}/{}", round + 1, args.rounds);
        c1.push(sequential(&mut d, &mut p, &direct, &through, &body, args.requests, pid).await);
        c32.push(concurrent(&direct, &through, &body, pid).await);
        ttfb.push(streams(&mut d, &mut p, &direct, &through, &body).await);
    }

    eprintln!("proxy-bench: failover");
    let failover = failover(up, ks, &mut d, &mut p, &direct, &through, &body).await;

    eprintln!("proxy-bench: {OPEN_STREAMS} open streams");
    let rss_streams = held_streams(up, &through, &body, pid).await;
    drop((d, p));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let rss_idle_after = rss_kib(pid);

    json!({
        "body_bytes": BODY_BYTES,
        "c1": summarize(c1),
        "c32": summarize(c32),
        "ttfb": summarize(ttfb),
        "failover": failover,
        "rss_kib": {
            "idle_after_warmup": rss_idle_warm,
            "streams_64": rss_streams,
            "idle_after_load": rss_idle_after,
        },
    })
}

/// Direct and through the proxy, one request at a time each, alternating which goes first.
async fn sequential(
    d: &mut Sender,
    p: &mut Sender,
    direct: &Target,
    through: &Target,
    body: &Bytes,
    n: usize,
    pid: u32,
) -> Value {
    let before = cpu(pid);
    let mut direct_times = Vec::with_capacity(n);
    let mut proxy_times = Vec::with_capacity(n);
    for i in 0..n {
        let order: [bool; 2] = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_direct in order {
            if is_direct {
                let (t, _) = exchange(d, request(direct, &direct.key, "", body)).await;
                direct_times.push(t);
            } else {
                let (t, s) = exchange(p, request(through, &through.key, "", body)).await;
                assert_eq!(s, 200, "the proxy answered {s}");
                proxy_times.push(t);
            }
        }
    }
    with_cpu(compare(direct_times, proxy_times), before, cpu(pid), n)
}

/// Adds what the proxy's threads spent per request: on a CPU, and waiting for one.
fn with_cpu(mut result: Value, before: Cpu, after: Cpu, requests: usize) -> Value {
    let (run, wait) = before.per_request(after, requests);
    result["proxy_cpu_us"] = json!(run);
    result["proxy_cpu_wait_us"] = json!(wait);
    result
}

/// 32 connections each way; phases alternate direct, proxy, proxy, direct so that neither
/// side always runs on a warmer or quieter machine.
async fn concurrent(direct: &Target, through: &Target, body: &Bytes, pid: u32) -> Value {
    let mut direct_conns = Vec::new();
    let mut proxy_conns = Vec::new();
    for _ in 0..CONCURRENCY {
        direct_conns.push(connect(direct.addr).await);
        proxy_conns.push(connect(through.addr).await);
    }
    let mut direct_times = Vec::new();
    let mut proxy_times = Vec::new();
    let mut proxy_cpu = (Cpu::default(), Cpu::default());
    // This process (load generator and stand-in) on the direct phases: the work of one
    // request and its answer without the proxy, for scale.
    let mut own_cpu = (Cpu::default(), Cpu::default());
    for is_direct in [true, false, false, true] {
        let (target, conns, times) = if is_direct {
            (direct, &mut direct_conns, &mut direct_times)
        } else {
            (through, &mut proxy_conns, &mut proxy_times)
        };
        let start = cpu(pid);
        let own_start = cpu(std::process::id());
        let mut tasks = JoinSet::new();
        for mut sender in conns.drain(..) {
            let (target, body) = (target.clone(), body.clone());
            tasks.spawn(async move {
                let mut times = Vec::with_capacity(PER_CONNECTION);
                for i in 0..RAMP_UP + PER_CONNECTION {
                    let (t, s) =
                        exchange(&mut sender, request(&target, &target.key, "", &body)).await;
                    assert_eq!(s, 200, "answered {s} at concurrency {CONCURRENCY}");
                    if i >= RAMP_UP {
                        times.push(t);
                    }
                }
                (sender, times)
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (sender, t) = done.expect("a load task failed");
            conns.push(sender);
            times.extend(t);
        }
        let (end, own_end) = (cpu(pid), cpu(std::process::id()));
        let add = |total: &mut Cpu, from: Cpu, to: Cpu| {
            total.run_ns += to.run_ns - from.run_ns;
            total.wait_ns += to.wait_ns - from.wait_ns;
        };
        if is_direct {
            add(&mut own_cpu.1, own_start, own_end);
        } else {
            add(&mut proxy_cpu.1, start, end);
        }
    }
    let n = proxy_times.len();
    let mut result = with_cpu(
        compare(direct_times, proxy_times),
        proxy_cpu.0,
        proxy_cpu.1,
        n,
    );
    result["direct_generator_and_stand_in_cpu_us"] = json!(own_cpu.0.per_request(own_cpu.1, n).0);
    result
}

/// Time to the first event of a streamed answer, direct and through the proxy, alternating.
async fn streams(
    d: &mut Sender,
    p: &mut Sender,
    direct: &Target,
    through: &Target,
    body: &Bytes,
) -> Value {
    let mut direct_times = Vec::new();
    let mut proxy_times = Vec::new();
    for i in 0..STREAM_SAMPLES {
        for is_direct in [i % 2 == 0, i % 2 != 0] {
            let (sender, target, times) = if is_direct {
                (&mut *d, direct, &mut direct_times)
            } else {
                (&mut *p, through, &mut proxy_times)
            };
            let (t, rest) = first_byte(sender, request(target, &target.key, "sse", body)).await;
            use http_body_util::BodyExt;
            rest.collect().await.expect("stream cut off");
            times.push(t);
        }
    }
    compare(direct_times, proxy_times)
}

/// The failover gap through the proxy against a client that re-sends to the fallback itself.
async fn failover(
    up: &StandIn,
    ks: &Keyswitch,
    d: &mut Sender,
    p: &mut Sender,
    direct: &Target,
    through: &Target,
    body: &Bytes,
) -> Value {
    up.take_gaps();
    for _ in 0..FAILOVER_SAMPLES {
        let (_, s) = exchange(
            d,
            request(direct, "sk-ant-test-bench-primary-direct", "failover", body),
        )
        .await;
        assert_eq!(s, 429);
        let (_, s) = exchange(
            d,
            request(
                direct,
                "sk-ant-test-bench-fallback-direct",
                "failover",
                body,
            ),
        )
        .await;
        assert_eq!(s, 200);
    }
    let mut direct_gaps = up.take_gaps();

    // The first failover also reads the fallback's secret from the keychain: reported apart.
    let mut cold = None;
    let mut proxy_gaps = Vec::new();
    let mut attempts = 0;
    while proxy_gaps.len() < FAILOVER_SAMPLES && attempts < FAILOVER_SAMPLES * 3 {
        attempts += 1;
        let before = up.primary_429s();
        let (_, s) = exchange(p, request(through, &through.key, "failover", body)).await;
        assert_eq!(s, 200, "the proxy did not answer from the fallback");
        let gaps = up.take_gaps();
        if up.primary_429s() > before && gaps.len() == 1 {
            if cold.is_none() {
                cold = Some(gaps[0]);
            } else {
                proxy_gaps.push(gaps[0]);
            }
        }
        // Bring the primary back for the next sample, once the proxy has recorded its mark
        // (a reset before that would be undone by the proxy's write).
        wait_until_cooling(ks);
        ks.run(&["reset", "primary"], &[]);
    }
    assert!(
        proxy_gaps.len() >= FAILOVER_SAMPLES / 2,
        "too few failover samples"
    );
    direct_gaps.sort();
    proxy_gaps.sort();
    let direct_median = direct_gaps[direct_gaps.len() / 2];
    let proxy_median = proxy_gaps[proxy_gaps.len() / 2];
    json!({
        "samples": proxy_gaps.len(),
        "direct_median_ms": ms(direct_median),
        "proxy_median_ms": ms(proxy_median),
        "proxy_max_ms": ms(*proxy_gaps.last().unwrap()),
        "added_ms": ms(proxy_median) - ms(direct_median),
        "cold_ms": cold.map(ms),
    })
}

fn wait_until_cooling(ks: &Keyswitch) {
    for _ in 0..500 {
        let list: Value = serde_json::from_str(&ks.run(&["list", "--json"], &[])).unwrap();
        let cooling =
            list.as_array().into_iter().flatten().any(|k| {
                k["name"] == "primary" && k["state"].as_str().is_some_and(|s| s != "ready")
            });
        if cooling {
            // The proxy drops its in-memory mark just after the file holds it.
            std::thread::sleep(Duration::from_millis(5));
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("the proxy never recorded the primary's 429");
}

/// Opens 64 streams through the proxy that the stand-in keeps open; the proxy's resident
/// memory while they are open.
async fn held_streams(up: &StandIn, through: &Target, body: &Bytes, pid: u32) -> u64 {
    let mut open = Vec::new();
    for _ in 0..OPEN_STREAMS {
        let mut sender = connect(through.addr).await;
        let (_, rest) = first_byte(&mut sender, request(through, &through.key, "hold", body)).await;
        open.push((sender, rest));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss = rss_kib(pid);
    up.release();
    for (_sender, rest) in open {
        use http_body_util::BodyExt;
        rest.collect().await.expect("held stream cut off");
    }
    rss
}

/// p50 and p99 of each side and what the proxy adds to each.
fn compare(mut direct: Vec<Duration>, mut proxy: Vec<Duration>) -> Value {
    direct.sort();
    proxy.sort();
    let (d50, d99) = (percentile(&direct, 0.50), percentile(&direct, 0.99));
    let (p50, p99) = (percentile(&proxy, 0.50), percentile(&proxy, 0.99));
    if std::env::var_os("BENCH_DEBUG").is_some() {
        let q = |v: &[Duration]| {
            [0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0]
                .map(|x| format!("{:.2}", ms(percentile(v, x))))
                .join(" ")
        };
        eprintln!("direct {}\nproxy  {}", q(&direct), q(&proxy));
    }
    json!({
        "samples": proxy.len(),
        "direct_p50": ms(d50), "direct_p99": ms(d99),
        "proxy_p50": ms(p50), "proxy_p99": ms(p99),
        "added_p50": ms(p50) - ms(d50), "added_p99": ms(p99) - ms(d99),
    })
}

/// The median of each figure over the rounds, and the rounds themselves.
fn summarize(rounds: Vec<Value>) -> Value {
    let mut median = serde_json::Map::new();
    for field in [
        "direct_p50",
        "direct_p99",
        "proxy_p50",
        "proxy_p99",
        "added_p50",
        "added_p99",
    ] {
        let mut values: Vec<f64> = rounds.iter().filter_map(|r| r[field].as_f64()).collect();
        values.sort_by(f64::total_cmp);
        median.insert(field.to_string(), json!(values[values.len() / 2]));
    }
    json!({"median": median, "rounds": rounds})
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// A Messages API request body of `size` bytes: one long user turn.
fn message_body(size: usize) -> Vec<u8> {
    let head = r#"{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":""#;
    let tail = r#""}]}"#;
    let filler = "The quick brown fox jumps over the lazy dog. ";
    let mut text = String::with_capacity(size);
    text.push_str(head);
    while text.len() + tail.len() < size {
        let room = size - tail.len() - text.len();
        text.push_str(&filler[..room.min(filler.len())]);
    }
    text.push_str(tail);
    text.into_bytes()
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap()
}
