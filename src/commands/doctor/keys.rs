//! doctor's checks of the keys: the keychain answers and holds each secret, endpoints are not
//! documentation examples, and which keys are cooling down or set aside, with when each
//! returns — no key usable at all is a turn that fails.

use anyhow::Result;

use super::Report;
use crate::commands::{Context, open_keychain};
use crate::config::Config;
use crate::select::Availability;
use crate::store::Keychain;
use crate::timespec::{local_clock, until_in_words};

pub(super) fn check_keys(r: &mut Report, ctx: &Context, config: &Config) -> Result<()> {
    r.info(&format!(
        "the config file is {}",
        ctx.dirs.config_file().display()
    ))?;
    check_endpoints(r, config)?;
    // The keychain even with no keys yet: a missing keychain is what `add` would run into.
    let keychain = match open_keychain(config) {
        Ok(k) => k,
        Err(e) => {
            r.fix("the keychain", &crate::error::one_line(&e))?;
            if config.keys.is_empty() {
                r.fix("no keys", "once the keychain works, add one: printf '%s' \"$KEY\" | keyswitch add primary")?;
            }
            return Ok(());
        }
    };
    if config.keys.is_empty() {
        // Looking up a name that is never stored proves the keychain answers.
        return match keychain.read(".keyswitch-doctor-probe") {
            Ok(_) => {
                r.ok(&format!("{} reachable", keychain.kind().describe()))?;
                r.fix(
                    "no keys",
                    "add one: printf '%s' \"$KEY\" | keyswitch add primary",
                )
            }
            Err(e) => r.fix("the keychain", &crate::error::one_line(&e)),
        };
    }
    check_secrets(r, &keychain, config)
}

/// Every key has a secret in the keychain, and the keychain lets it be read.
fn check_secrets(r: &mut Report, keychain: &Keychain, config: &Config) -> Result<()> {
    for key in &config.keys {
        match keychain.read(&key.name) {
            Ok(Some(_)) => {}
            Ok(None) => {
                r.fix(
                    &format!(
                        "{} has no secret in {}",
                        key.name,
                        keychain.kind().describe()
                    ),
                    &format!("store it: keyswitch add {} --replace", key.name),
                )?;
            }
            Err(e) => {
                return r.fix(
                    &format!("cannot read {}", key.name),
                    &crate::error::one_line(&e),
                );
            }
        }
    }
    r.ok(&format!(
        "{} reachable and unlocked; {} key(s)",
        keychain.kind().describe(),
        config.keys.len()
    ))
}

/// Keys cooling down (each with when it returns) and keys the API rejected (aside until given
/// a valid secret); with none left to hand out, every turn fails until the first returns.
pub(super) fn check_availability(r: &mut Report, ctx: &Context, config: &Config) -> Result<()> {
    if config.keys.is_empty() {
        return Ok(());
    }
    let now = ctx.now.timestamp();
    let (state, _) = crate::state::State::load(&ctx.dirs.state_file(), now, false)?;
    let when = |until| {
        format!(
            "{} ({})",
            local_clock(until, &ctx.now),
            until_in_words(until, now)
        )
    };
    let mut first_back = None;
    let mut ready = 0;
    for key in &config.keys {
        match Availability::of(state.cooldowns.get(&key.name), now) {
            Availability::Ready => ready += 1,
            Availability::CoolingUntil(until) => {
                first_back = Some(first_back.map_or(until, |t: jiff::Timestamp| t.min(until)));
                r.info(&format!(
                    "{} is cooling down until {}; keyswitch reset {} puts it back now if its budget is back",
                    key.name,
                    when(until),
                    key.name
                ))?;
            }
            Availability::SetAside => r.fix(
                &format!(
                    "{} was rejected by the API (authentication failed) and is set aside",
                    key.name
                ),
                &format!(
                    "give it a valid secret: keyswitch add {} --replace (or keyswitch reset {})",
                    key.name, key.name
                ),
            )?,
        }
    }
    if ready > 0 {
        return r.ok(&format!("{ready} of {} key(s) ready", config.keys.len()));
    }
    match first_back {
        Some(until) => r.fix(
            &format!(
                "no key is usable: every key is cooling down or set aside, so turns fail until the first returns at {}",
                when(until)
            ),
            "wait for it, add another key (printf '%s' \"$KEY\" | keyswitch add NAME), or keyswitch reset NAME for a key whose budget is back",
        ),
        None => r.fix(
            "no key is usable: every key is set aside (rejected by the API), and none returns by itself",
            "give one a valid secret (keyswitch add NAME --replace), or add another key",
        ),
    }
}

/// Endpoints copied from documentation (`https://your-proxy.example.com`) point nowhere: the
/// RFC 2606 names are reserved for examples.
fn check_endpoints(r: &mut Report, config: &Config) -> Result<()> {
    for key in &config.keys {
        let Some(endpoint) = key.endpoint_text() else {
            continue;
        };
        if is_placeholder_endpoint(endpoint) {
            r.fix(
                &format!(
                    "{}'s endpoint {endpoint} is a documentation example, not a real server",
                    key.name
                ),
                &format!(
                    "put the real URL in keys[].endpoint of the config, or run keyswitch set {} --endpoint URL",
                    key.name
                ),
            )?;
        }
    }
    Ok(())
}

pub(super) fn is_placeholder_endpoint(endpoint: &str) -> bool {
    let Some(host) = url::Url::parse(endpoint).ok().and_then(|u| {
        u.host_str()
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
    }) else {
        return false;
    };
    ["example.com", "example.net", "example.org", "example"]
        .iter()
        .any(|reserved| host == *reserved || host.ends_with(&format!(".{reserved}")))
        || host.ends_with(".invalid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documentation_endpoints_are_recognised() {
        for placeholder in [
            "https://your-proxy.example.com",
            "https://example.com/v1",
            "http://proxy.EXAMPLE.org.",
            "https://api.example",
            "https://x.invalid",
        ] {
            assert!(is_placeholder_endpoint(placeholder), "{placeholder}");
        }
        for real in [
            "https://api.anthropic.com",
            "https://example.company.com",
            "https://notexample.com",
            "http://127.0.0.1:8080",
        ] {
            assert!(!is_placeholder_endpoint(real), "{real}");
        }
    }
}
