//! Whether a Claude subscription login (Pro/Max) is here. Any `apiKeyHelper` wins over it
//! (measured), so with keyswitch wired every request goes out on the API keys and is billed to
//! them. Only whether a login is there is looked at — never its content.

use std::path::PathBuf;

/// Where a login was found, for messages; `None` when there is none.
pub fn find() -> Option<String> {
    if std::env::var_os("CLAUDE_CODE_OAUTH_TOKEN").is_some_and(|v| !v.is_empty()) {
        return Some("CLAUDE_CODE_OAUTH_TOKEN is set".to_string());
    }
    if let Some(file) = credentials_file()
        && file.is_file()
    {
        return Some(file.display().to_string());
    }
    keychain_login()
}

/// `.credentials.json` in Claude Code's config folder, where it keeps a login on Linux and
/// Windows.
fn credentials_file() -> Option<PathBuf> {
    let settings = crate::claude::settings_file::SettingsFile::locate(None).ok()?;
    Some(settings.path.parent()?.join(".credentials.json"))
}

/// macOS keeps the login in the keychain item "Claude Code-credentials". `security` without
/// `-w`/`-g` says only whether it exists, and shows no dialog.
#[cfg(target_os = "macos")]
fn keychain_login() -> Option<String> {
    let mut security = std::process::Command::new("/usr/bin/security");
    security.args(["find-generic-password", "-s", "Claude Code-credentials"]);
    let (status, _) = crate::bounded_command::run(security, std::time::Duration::from_secs(3))?;
    status
        .success()
        .then(|| "the keychain item \"Claude Code-credentials\"".to_string())
}

#[cfg(not(target_os = "macos"))]
fn keychain_login() -> Option<String> {
    None
}
