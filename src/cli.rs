//! The command line: subcommands and flags, their doc comments being the help text.

use clap::{Parser, Subcommand};

/// Hands Claude Code the API key to use now from an ordered pool of keychain-held keys; a key
/// that ran out of budget cools down while the next one is used.
#[derive(Debug, Parser)]
#[command(name = "keyswitch", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a key in the OS keychain and append it to the order (the first key is the primary).
    ///
    /// The secret is read from stdin when stdin is not a terminal (one line), otherwise from a
    /// hidden prompt. It is never taken from the command line.
    Add {
        /// The key's name: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.
        name: String,
        /// The API base URL this key belongs to (e.g. your company's proxy).
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        /// This key's default cooldown when it runs out, like 30m, 5h or 1d.
        #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
        cooldown: Option<String>,
        /// Change the secret of an existing key, keeping its position and options.
        #[arg(long)]
        replace: bool,
    },
    /// Change a key's endpoint or cooldown; its secret and position stay.
    Set {
        /// The key to change.
        name: String,
        /// The API base URL this key belongs to (e.g. your company's proxy).
        #[arg(long, value_name = "URL", conflicts_with = "no_endpoint")]
        endpoint: Option<String>,
        /// Send this key where keys without an endpoint of their own go.
        #[arg(long)]
        no_endpoint: bool,
        /// This key's default cooldown when it runs out, like 30m, 5h or 1d.
        #[arg(
            long,
            value_name = "DURATION",
            allow_hyphen_values = true,
            conflicts_with = "no_cooldown"
        )]
        cooldown: Option<String>,
        /// Give this key the configured default cooldown.
        #[arg(long)]
        no_cooldown: bool,
    },
    /// Show the keys in order, which one is active, and when cooling keys return.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the key to use now, and nothing else (Claude Code's apiKeyHelper).
    Get,
    /// Put a key on cooldown: it is skipped until the cooldown ends.
    MarkExhausted {
        /// The key to mark; the active key when omitted. `subscription` (subscription-first
        /// mode) puts sessions on the keys until the time given.
        name: Option<String>,
        /// How long, like 90s, 30m, 5h, 2d or 1h30m (whole seconds).
        #[arg(
            long = "for",
            value_name = "DURATION",
            conflicts_with = "until",
            allow_hyphen_values = true
        )]
        for_duration: Option<String>,
        /// Until when: a local HH:MM (its next occurrence), a local date-time like
        /// 2026-12-01T09:00, one in a zone like 2026-12-01T09:00[Europe/Berlin], or RFC 3339.
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        until: Option<String>,
    },
    /// End the cooldown of a key, or of every key.
    Reset {
        /// The key; every key when omitted. `subscription` ends its hold: sessions go back to
        /// the subscription.
        name: Option<String>,
    },
    /// Delete a key from the keychain and from the order.
    Remove {
        /// The key to delete.
        name: String,
    },
    /// Move a key to another position; position 1 is the primary.
    Move {
        /// The key to move.
        name: String,
        /// Its new position, 1 being the primary.
        position: String,
    },
    /// One short line for a status bar: the active key and when a cooling key returns.
    ///
    /// Reads no secret and never touches the keychain.
    Status,
    /// Wire keyswitch into Claude Code's user settings: the apiKeyHelper, the StopFailure hook
    /// that marks a key when it runs out, and the helper's refresh interval. Proxy mode on a
    /// first install (subscription-first mode over a Claude subscription login); a re-install
    /// keeps the mode installed unless --helper, --proxy or --subscription-first says.
    Install(InstallArgs),
    /// Take out of Claude Code's settings exactly what `install` put in. Keys stay in the
    /// keychain unless `--purge` is given.
    Uninstall {
        /// The settings file; default as for `install`.
        #[arg(long, value_name = "PATH")]
        settings: Option<std::path::PathBuf>,
        /// Then delete everything else keyswitch keeps: every key's secret in the keychain, the
        /// config and the state folders. Asks first on a terminal.
        #[arg(long)]
        purge: bool,
        /// Purge without asking (required when stdin is not a terminal).
        #[arg(long, requires = "purge")]
        yes: bool,
    },
    /// The local proxy of proxy mode (`keyswitch install --proxy`); `get` starts it when needed.
    #[command(subcommand)]
    Proxy(ProxyAction),
    /// Entry points for Claude Code hooks.
    #[command(subcommand)]
    Hook(HookEvent),
    /// Check the whole chain (keychain, keys, settings, proxy, upstreams) and say how to fix
    /// what would fail a turn; exits 1 when something would.
    Doctor {
        /// Print one JSON object (`ok` and the `findings`) instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Store every key's secret again, written by this keyswitch binary. On macOS, run it once
    /// in a terminal after upgrading keyswitch: the keychain then lets the new binary read the
    /// keys without asking (`get` never waits on a keychain dialog).
    Reauthorize,
    /// Show the event log of marks, resets and switches, newest last.
    Log {
        /// Print a JSON array instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Show each key's tokens per day for the last two weeks, and its headroom as its gateway
    /// last reported it (proxy mode: the proxy reads both off the answers).
    Usage {
        /// Print JSON instead of the chart.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProxyAction {
    /// Run the proxy in the foreground (for a systemd user unit or a launchd agent).
    Run,
    /// Start the proxy in the background unless it already runs.
    Start,
    /// Stop the proxy; requests in flight finish first.
    Stop,
    /// Stop the proxy and start it again from here: it records this shell's network settings
    /// (HTTPS_PROXY, NO_PROXY, CA files), which every background proxy gets, and the proxy
    /// takes this shell's D-Bus session for the keychain.
    Restart,
    /// Whether the proxy runs, where, and which version.
    Status {
        /// Print {"running", "pid", "listen", "version"} as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum HookEvent {
    /// Run by Claude Code's StopFailure hook: marks the key the failing session was using.
    /// Reads the hook's JSON on stdin; always exits 0 and prints nothing.
    StopFailure,
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The settings file; default `$CLAUDE_CONFIG_DIR/settings.json` or `~/.claude/settings.json`.
    #[arg(long, value_name = "PATH")]
    pub settings: Option<std::path::PathBuf>,
    /// Replace an apiKeyHelper that is already set (uninstall puts it back).
    #[arg(long)]
    pub force: bool,
    /// Let Claude Code retry a failed request only N times (CLAUDE_CODE_MAX_RETRIES), so a
    /// key that ran out fails the turn, and switches, sooner; off by default (see docs/how-it-works.md).
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// Proxy mode (the default): Claude Code talks to a local keyswitch proxy, which answers a request
    /// whose key ran out from the next key, so no turn fails (see docs/how-it-works.md).
    #[arg(long, conflicts_with = "helper")]
    pub proxy: bool,
    /// Helper mode: Claude Code gets the key itself and nothing runs in the background; a
    /// key that runs out fails one turn, and the next turn uses the next key.
    #[arg(long)]
    pub helper: bool,
    /// Also point Claude Code's status line at `keyswitch status` (by its full path);
    /// a status line of your own is replaced only with --force, and uninstall puts it back.
    #[arg(long)]
    pub statusline: bool,
    /// Install although a Claude subscription login (Pro/Max) is here: every request then goes
    /// out on your API keys and is billed to them, not to the subscription.
    #[arg(long)]
    pub keys_only: bool,
    /// Subscription first (the default over a Claude subscription login): sessions use the
    /// subscription, and only while its usage limit holds do they run on your API keys.
    #[arg(long, conflicts_with_all = ["helper", "proxy", "listen", "keys_only"])]
    pub subscription_first: bool,
    /// The proxy's loopback address (default 127.0.0.1:27329); implies --proxy.
    #[arg(long, value_name = "IP:PORT", conflicts_with = "helper")]
    pub listen: Option<String>,
}
