//! What a key name and a secret may look like. Every message names the problem and the fix,
//! and none ever repeats the secret.

use crate::error::refuse;

pub const MAX_NAME_LEN: usize = 64;
/// Claude Code rejects helper output longer than this (docs/facts/claude-code-facts.md).
pub const MAX_SECRET_LEN: usize = 16_384;

/// 1–64 characters of `[A-Za-z0-9._-]`, starting with a letter or digit.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let how = "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. work-proxy)";
    if name.is_empty() {
        return Err(refuse(format!("the key name is empty: {how}")));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(refuse(format!(
            "the key name is {} characters long: {how}",
            name.chars().count()
        )));
    }
    let shown: String = name.escape_debug().collect();
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(refuse(format!(
            "the key name \"{shown}\" does not start with a letter or digit: {how}"
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        let bad: String = bad.escape_debug().collect();
        return Err(refuse(format!(
            "the key name \"{shown}\" contains '{bad}': {how}"
        )));
    }
    Ok(())
}

/// A secret Claude Code will accept as helper output: printable ASCII, no whitespace,
/// 1–16,384 characters.
pub fn check_secret(secret: &str) -> anyhow::Result<()> {
    let Some(problem) = secret_problem(secret) else {
        return Ok(());
    };
    let how = if secret.len() > MAX_SECRET_LEN {
        "more than Claude Code accepts: check that only the key was piped in"
    } else {
        "pipe the key alone, e.g. printf '%s' \"$KEY\" | keyswitch add NAME"
    };
    let glue = if secret.len() > MAX_SECRET_LEN {
        ", "
    } else {
        ": "
    };
    Err(refuse(format!("the secret {problem}{glue}{how}")))
}

/// Why a secret is not one printable token for Claude Code, e.g. `contains whitespace at
/// character 3`; `None` when it is fine. Also for secrets another tool put in the keychain.
/// Shorter than any API key or gateway key keyswitch knows (Anthropic's are about 100
/// characters, LiteLLM's and OpenRouter's dozens): likely a typo or a paste cut short.
pub const SHORTEST_LIKELY_KEY: usize = 20;

/// Why `secret` does not look like an API key, for a warning (it is stored all the same:
/// some gateways hand out short keys).
pub fn unlikely_key(secret: &str) -> Option<String> {
    (secret.len() < SHORTEST_LIKELY_KEY).then(|| {
        format!(
            "is only {} characters, shorter than any API key keyswitch knows",
            secret.len()
        )
    })
}

pub fn secret_problem(secret: &str) -> Option<String> {
    if secret.is_empty() {
        return Some("is empty".to_string());
    }
    if secret.len() > MAX_SECRET_LEN {
        return Some(format!("is longer than {MAX_SECRET_LEN} characters"));
    }
    let (index, c) = secret
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_whitespace() || c.is_control() || !c.is_ascii())?;
    let what = if c.is_whitespace() {
        "a space or line break"
    } else if c.is_control() {
        "a control character"
    } else {
        "a non-ASCII character"
    };
    Some(format!("contains {what} at character {}", index + 1))
}

/// What `list` shows of a secret: its last 4 characters, and only for secrets of 20 characters
/// or more, so that a short secret is never mostly revealed.
pub fn mask_secret(secret: &str) -> String {
    let count = secret.chars().count();
    if count >= 20 {
        // Escaped: a secret another program stored may end in a terminal escape sequence.
        let tail: String = secret.chars().skip(count - 4).collect();
        format!("…{}", crate::messages::as_typed(&tail))
    } else {
        "…".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_secret_s_shown_tail_never_carries_a_control_character() {
        let shown = mask_secret("sk-ant-test-aaaaaaaaaaaa\u{1b}[2J");
        assert!(!shown.contains('\u{1b}'), "{shown:?}");
        assert_eq!(shown, "…\\u{1b}[2J");
        assert_eq!(mask_secret("sk-ant-test-aaaaaaaaaabcd"), "…abcd");
    }

    #[test]
    fn names() {
        for good in ["primary", "a", "Work.proxy_2-b", "0", &"x".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "..",
            "-x",
            ".hidden",
            "a/b",
            "a b",
            "é",
            "a\nb",
            &"x".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn secrets() {
        assert!(check_secret("sk-ant-test-abc123").is_ok());
        assert!(check_secret(&"a".repeat(MAX_SECRET_LEN)).is_ok());
        for bad in [
            "",
            "sk ant",
            "sk\tant",
            "sk-\u{7f}",
            "sk-\u{1b}[0m",
            "sk-ünï",
            "two\nlines",
            &"a".repeat(MAX_SECRET_LEN + 1),
        ] {
            assert!(check_secret(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_never_repeat_the_secret() {
        let secret = "sk-ant-test-VERYSECRET with-space";
        let message = format!("{}", check_secret(secret).unwrap_err());
        assert!(!message.contains("VERYSECRET"), "{message}");
    }

    #[test]
    fn masking() {
        assert_eq!(mask_secret("sk-ant-test-0123456789abcd"), "…abcd");
        assert_eq!(mask_secret("short-secret"), "…");
        assert_eq!(mask_secret("0123456789012345678"), "…");
        assert_eq!(mask_secret("01234567890123456789"), "…6789");
    }

    proptest! {
        #[test]
        fn masks_show_at_most_four_characters(secret in "[!-~]{0,64}") {
            let mask = mask_secret(&secret);
            prop_assert!(mask.chars().count() <= 5);
            if secret.len() < 20 {
                prop_assert_eq!(mask, "…");
            }
        }

        #[test]
        fn accepted_names_are_safe_as_file_and_account_names(name in "\\PC{0,70}") {
            if check_name(&name).is_ok() {
                prop_assert!(!name.contains('/') && !name.starts_with('.') && !name.starts_with('-'));
                prop_assert!(!name.is_empty() && name.len() <= 64);
            }
        }
    }
}
