//! The one-off samples of the `peers` mode, each against a proxy in a known state: the time
//! from spawning it to its first 200, a failover (the primary's 429 until the fallback's
//! request arrives, and what the client got), every key spent (what the client gets and how
//! many upstream calls that cost), and its memory with 64 streams held open.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::conn::{Bodies, Conn, Target};
use super::process::{Running, group_rss_kib};
use crate::standin::StandIn;

const READY_DEADLINE: Duration = Duration::from_secs(120);
pub const OPEN_STREAMS: usize = 64;

/// Polls with a Messages request until one is answered 200: the time since the spawn.
pub async fn first_200(
    running: &mut Running,
    target: &Target,
    bodies: &Bodies,
) -> Result<Duration, String> {
    let mut last;
    loop {
        let mut conn = Conn::new(target.clone());
        match conn.exchange(&bodies.plain).await {
            Ok(a) if a.status == 200 => return Ok(running.started.elapsed()),
            Ok(a) => last = format!("answered {}", a.status),
            Err(e) => last = e,
        }
        if let Ok(Some(status)) = running.child.try_wait() {
            return Err(format!(
                "exited with {status} before answering 200 ({last})"
            ));
        }
        if running.started.elapsed() > READY_DEADLINE {
            return Err(format!(
                "no 200 within {} s ({last})",
                READY_DEADLINE.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One request that the stand-in answers 429 for the primary's key.
pub async fn failover(up: &StandIn, conn: &mut Conn, bodies: &Bodies) -> Value {
    up.take_gaps();
    up.take_calls();
    let result = conn.exchange(&bodies.failover).await;
    let gaps = up.take_gaps();
    let calls = up.take_calls();
    match result {
        Ok(a) => json!({
            "status": a.status,
            "gap_ms": gaps.first().map(|g| crate::ms(*g)),
            "upstream_calls": calls,
        }),
        Err(e) => json!({"error": e, "upstream_calls": calls}),
    }
}

/// One request that the stand-in answers 429 (`retry-after: 30`) for every key.
pub async fn spent(up: &StandIn, conn: &mut Conn, bodies: &Bodies) -> Value {
    up.take_calls();
    let start = Instant::now();
    let result = conn.exchange(&bodies.spent).await;
    let took = crate::ms(start.elapsed());
    let calls = up.take_calls();
    match result {
        Ok(a) => json!({
            "status": a.status,
            "retry_after": a.headers.get("retry-after").and_then(|v| v.to_str().ok()),
            "upstream_calls": calls,
            "ms": took,
        }),
        Err(e) => json!({"error": e, "upstream_calls": calls, "ms": took}),
    }
}

/// Opens 64 streams through the target that the stand-in holds open after their first event;
/// the resident memory of the target's process group while they are open. A target that does
/// not pass the first event on within 10 s (it buffers the stream) ends the attempt.
pub async fn held_streams(up: &StandIn, target: &Target, bodies: &Bodies, pgid: u32) -> Value {
    use http_body_util::BodyExt;
    let mut open = Vec::new();
    let mut error = None;
    for _ in 0..OPEN_STREAMS {
        let mut conn = Conn::new(target.clone());
        let first = tokio::time::timeout(Duration::from_secs(10), conn.first_byte(&bodies.hold));
        match first.await {
            Ok(Ok((_, rest))) => open.push((conn, rest)),
            Ok(Err(e)) => error = Some(e),
            Err(_) => error = Some("no first event within 10 s".to_string()),
        }
        if error.is_some() {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss = group_rss_kib(pgid);
    let opened = open.len();
    up.release();
    for (_conn, rest) in open.drain(..) {
        let _ = tokio::time::timeout(Duration::from_secs(30), rest.collect()).await;
    }
    json!({"rss_kib": rss, "opened": opened, "error": error})
}
