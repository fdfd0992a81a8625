//! A key near its budget, as its gateway last reported it (proxy mode's headroom file): said
//! while there is still time to act. One key near it is news (keyswitch fails over when it
//! runs out); every key near it would fail a turn soon, and needs fixing.

use anyhow::Result;

use super::Report;
use crate::commands::Context;
use crate::config::Config;
use crate::headroom::show::money;
use crate::headroom::store::Book;
use crate::timespec::ago_in_words;

/// A key that has spent this share of its budget is near it.
pub const NEAR: f64 = 0.9;

pub(super) fn check(r: &mut Report, ctx: &Context, config: &Config) -> Result<()> {
    let book = Book::load(&ctx.dirs.headroom_file());
    let now = ctx.now.timestamp();
    let mut near = 0;
    for key in &config.keys {
        let Some(seen) = book.key(&key.name).and_then(|f| f.reported.as_ref()) else {
            continue;
        };
        let (Some(spend), Some(max), Some(share)) = (
            seen.reported.spend,
            seen.reported.max_budget,
            seen.reported.spent_share(),
        ) else {
            continue;
        };
        if share < NEAR {
            continue;
        }
        near += 1;
        r.info(&format!(
            "{} has spent {} of its {} budget ({:.0} %) at its gateway, as of {}",
            key.name,
            money(spend),
            money(max),
            share * 100.0,
            ago_in_words(seen.at, now)
        ))?;
    }
    if near > 0 && near == config.keys.len() {
        r.fix(
            "every key is near its budget: the next turns may find none left",
            "raise a budget at the gateway, or add a key with `keyswitch add NAME`",
        )?;
    }
    Ok(())
}
