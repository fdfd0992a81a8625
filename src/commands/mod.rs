//! One file per subcommand. Each takes the parsed arguments and a [`Context`].

mod add;
mod doctor;
mod get;
mod hook;
mod install;
mod key_options;
mod list;
mod log;
mod mark;
mod move_key;
mod proxy;
mod purge;
mod reauthorize;
mod remove;
mod reset;
mod set;
mod status;
mod subscription;
mod uninstall;
mod usage;

use anyhow::Result;
use jiff::ZonedDateTime;

use crate::claude::live::{Nudge, follow_active_key};
use crate::cli::{Command, HookEvent};
use crate::config::Config;
use crate::paths::Dirs;
use crate::pool::Pool;
use crate::store::Keychain;

/// What every command needs: where the files are and what time it is.
pub struct Context {
    pub dirs: Dirs,
    pub now: ZonedDateTime,
}

impl Context {
    fn from_env() -> Result<Self> {
        Ok(Self {
            dirs: Dirs::from_env()?,
            // Whole seconds: what the files keep and what people read.
            now: crate::timespec::to_whole_seconds(
                jiff::Timestamp::now().to_zoned_datetime(crate::timespec::local_zone()),
            ),
        })
    }
}

pub fn run(command: Command) -> Result<()> {
    let ctx = Context::from_env()?;
    match command {
        Command::Add {
            name,
            endpoint,
            cooldown,
            replace,
        } => add::run(
            &ctx,
            &name,
            &add::Options::parse(&name, endpoint.as_deref(), cooldown.as_deref(), replace)?,
        ),
        Command::Set {
            name,
            endpoint,
            no_endpoint,
            cooldown,
            no_cooldown,
        } => set::run(
            &ctx,
            &name,
            &key_options::KeyOptions::parse(
                (endpoint.as_deref(), no_endpoint),
                (cooldown.as_deref(), no_cooldown),
            )?,
        ),
        Command::List { json } => list::run(&ctx, json),
        Command::Get => {
            // Claude Code waits on the helper: a keychain dialog must fail it, not hang it.
            crate::store::forbid_dialogs();
            get::run(&ctx)
        }
        Command::MarkExhausted {
            name,
            for_duration,
            until,
        } => mark::run(
            &ctx,
            name.as_deref(),
            mark::requested_end(&ctx.now, for_duration.as_deref(), until.as_deref())?,
        ),
        Command::Reset { name } => reset::run(&ctx, name.as_deref()),
        Command::Remove { name } => remove::run(&ctx, &name),
        Command::Move { name, position } => move_key::run(&ctx, &name, &position),
        Command::Status => status::run(&ctx),
        Command::Log { json } => log::run(&ctx, json),
        Command::Usage { json } => usage::run(&ctx, json),
        Command::Install(args) => install::install(
            &ctx,
            install::Asked {
                settings: args.settings.as_deref(),
                force: args.force,
                max_retries: args.max_retries,
                statusline: args.statusline,
                keys_only: args.keys_only,
                wanted: install::Wanted::from_flags(
                    args.proxy,
                    args.helper,
                    args.subscription_first,
                    args.listen.as_deref(),
                )?,
            },
        ),
        Command::Proxy(action) => proxy::run(&ctx, action),
        Command::Uninstall {
            settings,
            purge,
            yes,
        } => match purge {
            true => purge::run(&ctx, settings.as_deref(), yes),
            false => uninstall::run(&ctx, settings.as_deref()),
        },
        Command::Hook(HookEvent::StopFailure) => {
            crate::store::forbid_dialogs();
            hook::stop_failure(&ctx);
            Ok(())
        }
        Command::Reauthorize => reauthorize::run(&ctx),
        Command::Doctor { json } => {
            // Reports what `get` would meet instead of showing the dialog itself.
            crate::store::forbid_dialogs();
            doctor::run(&ctx, json)
        }
    }
}

/// Finishes a change made under the lock: writes the state and events, then — lock still
/// held — brings Claude Code's settings in step with the active key so running sessions pick
/// it up on their next request. A settings problem is a warning: the change itself stands.
pub fn settle(pool: &mut Pool, now: jiff::Timestamp) -> Result<()> {
    settle_with(pool, now, Nudge::Always)
}

pub fn settle_with(pool: &mut Pool, now: jiff::Timestamp, nudge: Nudge) -> Result<()> {
    pool.commit()?;
    if let Err(e) = follow_active_key(&pool.dirs, pool.config(), pool.active_key(now), nudge) {
        crate::messages::warn_failed("update Claude Code's settings", &e);
    }
    Ok(())
}

/// Opens the keychain the config names.
pub fn open_keychain(config: &Config) -> Result<Keychain> {
    Keychain::open(config.store_kind(), config.keychain_service())
}

/// Writes a line to stdout; a closed pipe (`keyswitch list | head`) ends quietly.
pub fn out(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
