//! A Claude subscription login (Pro/Max) next to keyswitch: any `apiKeyHelper` wins over it
//! (measured), so every request goes out on the API keys and is billed to them. Only whether a
//! login is there is looked at — never its content.

use anyhow::Result;

use super::Report;
use crate::claude::settings_file::SettingsFile;

pub(super) fn check(r: &mut Report) -> Result<()> {
    let Some(login) = login() else {
        return Ok(());
    };
    r.info(&format!(
        "a Claude subscription login is here ({login}): while keyswitch is Claude Code's apiKeyHelper, every request goes out on your API keys and is billed to them, not to the subscription (keyswitch uninstall gives sessions back to the login)"
    ))
}

/// Where a login was found, for the message.
fn login() -> Option<String> {
    if std::env::var_os("CLAUDE_CODE_OAUTH_TOKEN").is_some_and(|v| !v.is_empty()) {
        return Some("CLAUDE_CODE_OAUTH_TOKEN is set".to_string());
    }
    if let Some(folder) = SettingsFile::locate(None)
        .ok()
        .and_then(|s| s.path.parent().map(std::path::Path::to_path_buf))
    {
        let file = folder.join(".credentials.json");
        if file.is_file() {
            return Some(file.display().to_string());
        }
    }
    keychain_login()
}

/// macOS keeps the login in the keychain item "Claude Code-credentials". `security` without
/// `-w`/`-g` says only whether it exists, and shows no dialog.
#[cfg(target_os = "macos")]
fn keychain_login() -> Option<String> {
    let mut security = std::process::Command::new("/usr/bin/security");
    security.args(["find-generic-password", "-s", "Claude Code-credentials"]);
    let (status, _) = super::bounded::run(security, std::time::Duration::from_secs(3))?;
    status
        .success()
        .then(|| "the keychain item \"Claude Code-credentials\"".to_string())
}

#[cfg(not(target_os = "macos"))]
fn keychain_login() -> Option<String> {
    None
}
