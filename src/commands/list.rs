//! `keyswitch list`: the keys in order, with a masked secret, which is active, when cooling
//! keys return, and (in proxy mode) each key's headroom as its gateway last reported it; in
//! subscription-first mode the subscription first. The keychain is read only to show that each
//! secret is there.

use anyhow::Result;
use serde_json::json;

use super::{Context, open_keychain, out};
use crate::headroom::show::{self, NEED_PROXY};
use crate::headroom::store::Book;
use crate::pool::Pool;
use crate::select::Availability;
use crate::timespec::{local_clock, until_in_words};
use crate::validate::mask_secret;

pub fn run(ctx: &Context, json: bool) -> Result<()> {
    let now = ctx.now.timestamp();
    let pool = Pool::read(ctx.dirs.clone(), now)?;
    let hints = secret_hints(&pool);
    // Helper mode has no proxy to read the figures: none are shown, and the way to them is.
    let book = crate::mode::proxy_chosen(&crate::mode::Mode::load(&ctx.dirs))
        .then(|| Book::load(&ctx.dirs.headroom_file()));
    if json {
        return out(&serde_json::to_string_pretty(&json_rows(
            &pool,
            &hints,
            book.as_ref(),
            ctx,
        ))?);
    }
    if pool.config().keys.is_empty() {
        say!("keyswitch: {}", crate::messages::NO_KEYS_YET);
        return Ok(());
    }
    for line in table(&pool, &hints, book.as_ref(), ctx) {
        out(&line)?;
    }
    if book.is_none() {
        out(&format!("headroom: {NEED_PROXY}"))?;
    }
    Ok(())
}

/// A key's headroom for `--json`: the last report (with when it came) and today's tally.
fn headroom_json(book: Option<&Book>, name: &str, ctx: &Context) -> serde_json::Value {
    let Some(figures) = book.and_then(|b| b.key(name)) else {
        return serde_json::Value::Null;
    };
    json!({
        "reported": figures.reported,
        "today": figures.day(ctx.now.date()),
    })
}

/// One JSON object a key, for `--json`.
fn json_rows(
    pool: &Pool,
    hints: &[Option<String>],
    book: Option<&Book>,
    ctx: &Context,
) -> Vec<serde_json::Value> {
    let now = ctx.now.timestamp();
    let availability = pool.availability(now);
    let active = pool.active(now);
    let subscription = Subscription::of(pool, now);
    // On the subscription no key is in use.
    let active = active.filter(|_| subscription.as_ref().is_none_or(Subscription::held));
    let subscription = subscription.map(|sub| {
        json!({
            "name": crate::subscription::NAME,
            "kind": "subscription",
            "active": !sub.held(),
            "state": if sub.held() { "limited" } else { "ready" },
            "limited_until": sub.hold.as_ref().map(|h| h.until.to_string()),
            "claim": sub.hold.as_ref().and_then(|h| h.claim.as_ref()).map(|c| c.as_str().to_string()),
        })
    });
    let keys = pool
        .config()
        .keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let cooldown = pool.state().cooldowns.get(&key.name);
            let (state, until) = match availability[i] {
                Availability::Ready => ("ready", None),
                Availability::CoolingUntil(until) => ("cooling", Some(until.to_string())),
                Availability::SetAside => ("rejected", None),
            };
            json!({
                "name": key.name,
                "position": i + 1,
                "active": active == Some(i),
                "state": state,
                "exhausted_until": until,
                "reason": cooldown.filter(|_| availability[i] != Availability::Ready).map(|c| c.reason.to_string()),
                "endpoint": key.endpoint_text(),
                "cooldown": key.cooldown_text(),
                "secret": hints[i],
                "headroom": headroom_json(book, &key.name, ctx),
            })
        });
    subscription.into_iter().chain(keys).collect()
}

/// Subscription-first mode's subscription, listed before the keys.
struct Subscription {
    /// The hold on now, if any (over ones are not).
    hold: Option<crate::subscription::hold::Hold>,
}

impl Subscription {
    fn of(pool: &Pool, now: jiff::Timestamp) -> Option<Self> {
        crate::mode::Mode::load(&pool.dirs)
            .is_ok_and(|m| m.is_subscription_first())
            .then(|| Self {
                hold: crate::subscription::hold::load(&pool.dirs).filter(|h| !h.is_over(now)),
            })
    }

    fn held(&self) -> bool {
        self.hold.is_some()
    }

    /// Its row of the table.
    fn row(&self, ctx: &Context) -> [String; 7] {
        let now = ctx.now.timestamp();
        let status = match &self.hold {
            Some(hold) => format!(
                "limited until {} ({}, {})",
                local_clock(hold.until, &ctx.now),
                until_in_words(hold.until, now),
                hold.what()
            ),
            None => "active".to_string(),
        };
        [
            if self.held() { "" } else { "*" }.to_string(),
            "-".to_string(),
            crate::subscription::NAME.to_string(),
            "(login)".to_string(),
            status,
            "Anthropic, directly".to_string(),
            String::new(),
        ]
    }
}

/// The keys as aligned text lines, a header first; the headroom last, when there is a book.
fn table(pool: &Pool, hints: &[Option<String>], book: Option<&Book>, ctx: &Context) -> Vec<String> {
    let colour = show::colour_on_stdout();
    let now = ctx.now.timestamp();
    let availability = pool.availability(now);
    let active = pool.active(now);
    let default = super::key_options::default_endpoint(&ctx.dirs);
    let mut table = vec![[
        "".to_string(),
        "#".to_string(),
        "NAME".to_string(),
        "SECRET".to_string(),
        "STATUS".to_string(),
        "ENDPOINT".to_string(),
        if book.is_some() { "HEADROOM" } else { "" }.to_string(),
    ]];
    let subscription = Subscription::of(pool, now);
    // On the subscription, the key that would be used is on standby.
    let on_subscription = subscription.as_ref().is_some_and(|s| !s.held());
    table.extend(subscription.map(|s| s.row(ctx)));
    let active = active.filter(|_| !on_subscription);
    for (i, key) in pool.config().keys.iter().enumerate() {
        let status = match availability[i] {
            Availability::Ready if active == Some(i) => "active".to_string(),
            Availability::Ready if on_subscription && pool.active(now) == Some(i) => {
                "standby (used while the subscription is limited)".to_string()
            }
            Availability::Ready => "ready".to_string(),
            Availability::CoolingUntil(until) => format!(
                "{}cooling until {} ({})",
                if active == Some(i) {
                    "active, all "
                } else {
                    ""
                },
                local_clock(until, &ctx.now),
                until_in_words(until, now)
            ),
            Availability::SetAside => "rejected by the API: replace or reset".to_string(),
        };
        table.push([
            if active == Some(i) { "*" } else { "" }.to_string(),
            (i + 1).to_string(),
            key.name.clone(),
            hints[i].clone().unwrap_or_else(|| "?".to_string()),
            status,
            key.endpoint_text().unwrap_or(&default).to_string(),
            book.map_or_else(String::new, |b| {
                show::list_cell(b.key(&key.name), ctx.now.date(), now, colour)
            }),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| {
            table
                .iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    table
        .iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect()
}

/// The masked secret of each key, `missing` when the keychain has none; all `None` (with one
/// warning) when the keychain cannot be reached, so `list` still shows the order and cooldowns.
fn secret_hints(pool: &Pool) -> Vec<Option<String>> {
    let none = vec![None; pool.config().keys.len()];
    if pool.config().keys.is_empty() {
        return none;
    }
    let keychain = match open_keychain(pool.config()) {
        Ok(k) => k,
        Err(e) => {
            crate::messages::warn(crate::error::one_line(&e));
            return none;
        }
    };
    pool.config()
        .keys
        .iter()
        .map(|key| match keychain.read(&key.name) {
            Ok(Some(secret)) => Some(mask_secret(&secret)),
            Ok(None) => Some("missing".to_string()),
            Err(_) => None,
        })
        .collect()
}
