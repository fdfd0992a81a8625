//! The load, sent to the stand-in directly and through every proxy, interleaved so that the
//! machine's noise falls on all of them alike: one request at a time in turn (each round with
//! the order rotated), 32 connections per target in phases whose order flips every round, and
//! streams in turn. Each returns, per target, the times of the requests that were answered 200
//! and how many were not.

use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;

use super::conn::{Conn, Target};

pub const CONCURRENCY: usize = 32;
/// Untimed requests that open each of the 32 connections' phase.
const RAMP_UP: usize = 2;

#[derive(Default)]
pub struct Times {
    pub ok: Vec<Duration>,
    pub failed: usize,
    pub last_error: Option<String>,
}

impl Times {
    fn note(&mut self, result: Result<(Duration, u16), String>) {
        match result {
            Ok((t, 200)) => self.ok.push(t),
            Ok((_, status)) => {
                self.failed += 1;
                self.last_error = Some(format!("answered {status}"));
            }
            Err(e) => {
                self.failed += 1;
                self.last_error = Some(e);
            }
        }
    }

    fn merge(&mut self, other: Times) {
        self.ok.extend(other.ok);
        self.failed += other.failed;
        if other.last_error.is_some() {
            self.last_error = other.last_error;
        }
    }
}

/// `n` requests to each target, one at a time, taking turns; the order of the turn rotates by
/// one each time so that no target always follows the same one.
pub async fn in_turn(conns: &mut [Conn], body: &Bytes, n: usize, stream: bool) -> Vec<Times> {
    let mut times: Vec<Times> = conns.iter().map(|_| Times::default()).collect();
    for i in 0..n {
        for k in 0..conns.len() {
            let at = (i + k) % conns.len();
            let result = if stream {
                first_event(&mut conns[at], body).await
            } else {
                conns[at].exchange(body).await.map(|a| (a.took, a.status))
            };
            times[at].note(result);
        }
    }
    times
}

/// Time to the first event, then the rest of the stream read to its end.
async fn first_event(conn: &mut Conn, body: &Bytes) -> Result<(Duration, u16), String> {
    use http_body_util::BodyExt;
    let (t, rest) = conn.first_byte(body).await?;
    rest.collect()
        .await
        .map_err(|e| format!("stream cut off: {e}"))?;
    Ok((t, 200))
}

/// 32 connections to one target, each sending `per_connection` timed requests after an untimed
/// ramp-up: 32 requests in flight, steady.
pub async fn concurrent(target: &Target, body: &Bytes, per_connection: usize) -> Times {
    let mut tasks = JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (target, body) = (target.clone(), body.clone());
        tasks.spawn(async move {
            let mut conn = Conn::new(target);
            let mut times = Times::default();
            for i in 0..RAMP_UP + per_connection {
                let result = conn.exchange(&body).await.map(|a| (a.took, a.status));
                if i >= RAMP_UP || result.is_err() {
                    times.note(result);
                }
            }
            times
        });
    }
    let mut all = Times::default();
    while let Some(done) = tasks.join_next().await {
        all.merge(done.expect("a load task failed"));
    }
    all
}
