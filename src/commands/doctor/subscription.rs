//! Doctor's word on a Claude subscription login next to keyswitch (see
//! `crate::subscription_login`).

use anyhow::Result;

use super::Report;
use crate::commands::Context;
use crate::timespec::{local_clock, until_in_words};

pub(super) fn check(r: &mut Report, ctx: &Context) -> Result<()> {
    let login = crate::subscription_login::find();
    if crate::mode::Mode::load(&ctx.dirs).is_ok_and(|m| m.is_subscription_first()) {
        return subscription_first(r, ctx, login.as_deref());
    }
    let Some(login) = login else {
        return Ok(());
    };
    r.info(&format!(
        "a Claude subscription login is here ({login}): while keyswitch is Claude Code's apiKeyHelper, every request goes out on your API keys and is billed to them, not to the subscription (keyswitch uninstall gives sessions back to the login)"
    ))
}

/// What subscription-first mode does, and the hold if one is on.
fn subscription_first(r: &mut Report, ctx: &Context, login: Option<&str>) -> Result<()> {
    let now = ctx.now.timestamp();
    match crate::subscription::hold::load(&ctx.dirs) {
        Some(hold) if !hold.is_over(now) => r.info(&format!(
            "subscription first: the subscription's {} holds until {} ({}); sessions run on your API keys meanwhile, billed to them, and go back to the subscription after it",
            hold.what(),
            local_clock(hold.until, &ctx.now),
            until_in_words(hold.until, now)
        )),
        Some(_) => r.info(
            "subscription first: the subscription's limit has reset; sessions go back to it at their next helper refresh",
        ),
        None => match login {
            Some(login) => r.ok(&format!(
                "subscription first: sessions use your subscription login ({login}); only while its usage limit holds do they run on your API keys"
            )),
            None => r.fix(
                "subscription-first mode, but no Claude subscription login is here: sessions have no credential",
                "log in (`claude`, then /login), or bill the keys: keyswitch install --proxy --keys-only",
            ),
        },
    }
}
