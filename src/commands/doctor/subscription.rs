//! Doctor's word on a Claude subscription login next to keyswitch (see
//! `crate::subscription_login`).

use anyhow::Result;

use super::Report;

pub(super) fn check(r: &mut Report) -> Result<()> {
    let Some(login) = crate::subscription_login::find() else {
        return Ok(());
    };
    r.info(&format!(
        "a Claude subscription login is here ({login}): while keyswitch is Claude Code's apiKeyHelper, every request goes out on your API keys and is billed to them, not to the subscription (keyswitch uninstall gives sessions back to the login)"
    ))
}
