//! `keyswitch reauthorize`: stores every key's secret again, written by this keyswitch binary.
//!
//! On macOS a keychain item is readable without a dialog only by the binary that created it,
//! so after an upgrade `get` fails at once (it never waits on a dialog). Run in a terminal, this
//! reads each secret (macOS asks; allow it), deletes the item and creates it anew, owned by the
//! new binary. Each secret is first copied under a side service name, so a failure half-way
//! never loses a key: a rerun picks the copy up. Harmless on the other keychains.

use anyhow::{Context as _, Result, anyhow};

use super::{Context, open_keychain};
use crate::pool::Pool;

pub fn run(ctx: &Context) -> Result<()> {
    let pool = Pool::read(ctx.dirs.clone(), ctx.now.timestamp())?;
    if pool.config().keys.is_empty() {
        return Err(anyhow!(crate::messages::NO_KEYS_YET));
    }
    let keychain = open_keychain(pool.config())?;
    let spare = keychain.with_service(&format!("{}.reauthorize", keychain.service()));
    for key in &pool.config().keys {
        let name = &key.name;
        // The original first; a copy left by an interrupted run when the original is gone.
        let secret = match keychain.read(name)? {
            Some(secret) => secret,
            None => match spare.read(name)? {
                Some(secret) => secret,
                None => {
                    crate::messages::warn(format_args!(
                        "{name} has no secret in {}; store one with `keyswitch add {name} --replace`",
                        keychain.kind().describe()
                    ));
                    continue;
                }
            },
        };
        spare
            .write(name, &secret)
            .with_context(|| format!("cannot keep a safety copy of {name}; nothing changed"))?;
        let kept = || {
            format!(
                "{name}'s secret is kept under the keychain service {}: run `keyswitch reauthorize` again",
                spare.service()
            )
        };
        keychain.delete(name).with_context(kept)?;
        keychain.write(name, &secret).with_context(kept)?;
        // Read it back as `get` will, without dialogs, so "done" means done.
        let read_back = crate::store::without_dialogs(|| keychain.read(name));
        if let Ok(ref found) = read_back
            && found.as_deref().map(|s| s.as_str()) != Some(secret.as_str())
        {
            return Err(anyhow!("{name} did not read back as stored: {}", kept()));
        }
        // The secret is in its new item: the copy has done its job.
        if let Err(e) = spare.delete(name) {
            crate::messages::warn_failed(
                format_args!(
                    "delete the safety copy of {name} (keychain service {})",
                    spare.service()
                ),
                &e,
            );
        }
        if let Err(e) = read_back {
            return Err(anyhow!(
                "{name} was stored again, but this binary still cannot read it without a dialog ({}): in Keychain Access, open the item \"{}\" for {name} and allow keyswitch under Access Control",
                crate::error::one_line(&e),
                keychain.service()
            ));
        }
        say!("keyswitch: stored {name} again, owned by this keyswitch binary");
    }
    Ok(())
}
