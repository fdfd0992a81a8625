//! `keyswitch remove`: the config first, then the keychain, so a failure half-way leaves a
//! secret behind (reported) rather than a config entry without its secret.

use anyhow::{Result, anyhow};

use super::{Context, open_keychain};
use crate::fileio::WriteLock;
use crate::pool::Pool;

pub fn run(ctx: &Context, name: &str) -> Result<()> {
    let now = ctx.now.timestamp();
    // The keychain lock, not the pool lock, is held across keychain I/O (see `add`).
    let _keychain_lock = WriteLock::acquire(&ctx.dirs.keychain_lock_file())?;
    let before = Pool::read(ctx.dirs.clone(), now)?;
    before.resolve(name)?;
    // Reach the keychain before changing anything, so an unreachable one changes nothing.
    let keychain = open_keychain(before.config())?;
    let key = {
        let mut pool = Pool::lock(ctx.dirs.clone(), now)?;
        let index = pool.resolve(name)?;
        let (key, switched_to) = pool.remove_key(index, now)?;
        super::settle(&mut pool, now)?;
        if let Some(to) = switched_to {
            say!("keyswitch: now handing out {to}");
        }
        key
        // The pool lock is released here, before the keychain is touched again.
    };
    match keychain.delete(&key.name) {
        Ok(_) => {
            say!(
                "keyswitch: removed {} and deleted its secret from {}",
                key.name,
                keychain.kind().describe()
            );
            Ok(())
        }
        Err(e) => Err(anyhow!(
            "removed {} from the order, but its secret is still in {}: {}; delete it there by hand",
            key.name,
            keychain.kind().describe(),
            crate::error::one_line(&e)
        )),
    }
}
