//! `keyswitch log`: the event log, newest last.

use anyhow::Result;
use serde_json::json;

use super::{Context, out};
use crate::events;
use crate::timespec::ago_in_words;

pub fn run(ctx: &Context, json: bool) -> Result<()> {
    let events = events::read(&ctx.dirs.event_log())?;
    if json {
        let rows: Vec<_> = events
            .iter()
            .map(|e| {
                json!({
                    "time": e.time.to_string(),
                    "event": e.event,
                    "key": e.key,
                    "reason": e.reason,
                    "session_id": e.session_id,
                    "detail": e.detail,
                })
            })
            .collect();
        return out(&serde_json::to_string_pretty(&rows)?);
    }
    if events.is_empty() {
        eprintln!("keyswitch: the event log is empty");
        return Ok(());
    }
    let now = ctx.now.timestamp();
    let zone = ctx.now.time_zone().clone();
    for e in &events {
        let when = e
            .time
            .to_zoned_datetime(zone.clone())
            .strftime("%Y-%m-%d %H:%M:%S");
        let mut line = format!(
            "{when}  {:<7} {:<16} {:<22}",
            e.event,
            e.key.as_deref().unwrap_or("-"),
            e.reason.as_deref().unwrap_or("-")
        );
        if let Some(detail) = &e.detail {
            line.push_str(&format!(" {detail}"));
        }
        if let Some(session) = &e.session_id {
            line.push_str(&format!(" [session {session}]"));
        }
        line.push_str(&format!(" ({})", ago_in_words(e.time, now)));
        out(line.trim_end())?;
    }
    Ok(())
}
