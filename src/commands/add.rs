//! `keyswitch add`: keychain first, then the config, so a failure half-way never loses a key.
//! The pool lock is taken only after the keychain has answered.

use std::io::{IsTerminal, Read};

use anyhow::{Context as _, Result};
use zeroize::Zeroizing;

use super::key_options::{KeyOptions, Words};
use super::{Context, open_keychain};
use crate::config::KeyConfig;
use crate::error::refuse;
use crate::fileio::WriteLock;
use crate::pool::Pool;
use crate::validate::{MAX_SECRET_LEN, check_name, check_secret};

/// What `add` was asked for, every value parsed (see [`Options::parse`]).
pub struct Options {
    pub key: KeyOptions,
    pub replace: bool,
}

impl Options {
    /// Parses the command line's values, in the order they are checked: the name first.
    pub fn parse(
        name: &str,
        endpoint: Option<&str>,
        cooldown: Option<&str>,
        replace: bool,
    ) -> Result<Self> {
        check_name(name)?;
        if crate::subscription::is_name(name) {
            return Err(crate::error::refuse(format!(
                "\"{name}\" is the name keyswitch gives your Claude subscription (`keyswitch mark-exhausted subscription`, `keyswitch reset subscription`): give the key another name"
            )));
        }
        Ok(Self {
            key: KeyOptions::parse((endpoint, false), (cooldown, false))?,
            replace,
        })
    }
}

pub fn run(ctx: &Context, name: &str, options: &Options) -> Result<()> {
    let replace = options.replace;
    let now = ctx.now.timestamp();

    // Refuse a name clash before asking for the secret; checked again below.
    check_clash(&Pool::read(ctx.dirs.clone(), now)?, name, replace)?;
    options.key.check(&ctx.dirs)?;
    let secret = read_secret(name)?;
    check_secret(&secret)?;
    if let Some(why) = crate::validate::unlikely_key(&secret) {
        crate::messages::warn(format_args!(
            "the secret for {name} {why}; stored all the same (`keyswitch add {name} --replace` puts another in)"
        ));
    }

    // The keychain is written under the keychain lock, never the pool lock: a slow or stuck
    // keychain must not hold up `get`, the StopFailure hook or any other writer. Only `add` and
    // `remove` change which keys exist, and both hold this lock throughout, so the names read
    // here stay true until the config is saved.
    let _keychain_lock = WriteLock::acquire(&ctx.dirs.keychain_lock_file())?;
    let before = Pool::read(ctx.dirs.clone(), now)?;
    check_clash(&before, name, replace)?;
    let keychain = open_keychain(before.config())?;
    let existing = before.config().position(name);
    let stored_name = existing
        .map(|i| before.key(i).name.clone())
        .unwrap_or_else(|| name.to_string());
    keychain.write(&stored_name, &secret)?;

    let mut pool = Pool::lock(ctx.dirs.clone(), now)?;
    check_clash(&pool, name, replace)?;
    let words = Words::new(&ctx.dirs, pool.config());
    let existing = pool.config().position(name);
    let (position, said) = match existing {
        Some(index) => {
            let before = pool.key(index).clone();
            pool.replace_secret(index, |key| options.key.apply(key), now)?;
            (
                index + 1,
                words.asked(&before, pool.key(index), &options.key),
            )
        }
        None => {
            let mut key = KeyConfig::new(stored_name.clone());
            options.key.apply(&mut key);
            let said = words.current(&key, &options.key);
            (pool.add_key(key, now)?, said)
        }
    };
    let kind = keychain.kind().describe();
    super::settle(&mut pool, now)?;

    let role = if position == 1 {
        "the primary"
    } else {
        "a fallback"
    };
    // The options given, as the key now has them ("; endpoint https://a → https://b").
    let said: String = said.iter().map(|s| format!("; {s}")).collect();
    if existing.is_some() {
        say!(
            "keyswitch: replaced the secret of {stored_name} (position {position}) in {kind}{said}"
        );
    } else {
        say!("keyswitch: added {stored_name} as key {position}, {role}, in {kind}{said}");
    }
    Ok(())
}

fn check_clash(pool: &Pool, name: &str, replace: bool) -> Result<()> {
    match (pool.config().position(name), replace) {
        (Some(i), false) => {
            let existing = &pool.key(i).name;
            Err(refuse(format!(
                "a key named {existing} already exists: use `keyswitch add {existing} --replace` to change its secret, or pick another name"
            )))
        }
        (None, true) => Err(refuse(format!(
            "there is no key named {} to replace: drop --replace to add it",
            name.escape_debug()
        ))),
        _ => Ok(()),
    }
}

/// One line from stdin when it is not a terminal (trailing newline dropped), else a hidden prompt.
fn read_secret(name: &str) -> Result<Zeroizing<String>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let typed = rpassword::prompt_password(format!("Secret for {name} (hidden): "))
            .context("cannot read the secret from the terminal")?;
        return Ok(Zeroizing::new(typed));
    }
    // Read a little more than the limit, so an over-long secret is refused, not truncated.
    let mut raw = Zeroizing::new(Vec::new());
    stdin
        .lock()
        .take(MAX_SECRET_LEN as u64 + 3)
        .read_to_end(&mut raw)
        .context("cannot read the secret from stdin")?;
    let mut text = Zeroizing::new(
        String::from_utf8(raw.to_vec())
            .map_err(|_| refuse("the secret on stdin is not text: pipe the key alone, e.g. printf '%s' \"$KEY\" | keyswitch add NAME"))?,
    );
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}
