//! macOS Keychain specifics: never waiting on a keychain dialog, and what to say instead.
//!
//! An item in the login keychain is readable without a dialog only by the binary that created
//! it (its code hash, for an unsigned build). After an upgrade macOS asks "keyswitch wants to use
//! your confidential information" and the read waits for the user — Claude Code's helper would
//! hang. So `get`, the hook and `doctor` turn dialogs off: a read that would need one fails at
//! once with errSecInteractionNotAllowed, which also covers a locked keychain and SSH sessions.
//! The message below says what clears it. The rules are pure and compiled on every OS.

use keyring_core::Error as KeyringError;

/// errSecInteractionNotAllowed: the call needed a dialog and dialogs are off (or impossible,
/// as over SSH); the keychain is locked, or the item's access list does not name this binary.
pub const INTERACTION_NOT_ALLOWED: i32 = -25308;
/// errSecAuthFailed: the keychain could not be unlocked.
pub const AUTH_FAILED: i32 = -25293;

/// What to do about a keychain call that failed with `status`, when keyswitch knows.
pub fn remedy(status: i32) -> Option<&'static str> {
    match status {
        INTERACTION_NOT_ALLOWED | AUTH_FAILED => Some(
            "the keychain is locked, or it wants to ask before showing the key to this keyswitch binary (as after an upgrade), and keyswitch never waits on a dialog: unlock the login keychain (over SSH: `security unlock-keychain`), or run `keyswitch reauthorize` once in a terminal on the Mac to store the keys again with this binary; `keyswitch doctor` checks it",
        ),
        _ => None,
    }
}

/// The OSStatus inside a store error, when the store passed one on.
#[cfg(target_os = "macos")]
pub fn status(error: &KeyringError) -> Option<i32> {
    match error {
        KeyringError::PlatformFailure(inner) | KeyringError::NoStorageAccess(inner) => inner
            .downcast_ref::<security_framework::base::Error>()
            .map(|e| e.code()),
        _ => None,
    }
}

#[cfg(not(target_os = "macos"))]
pub fn status(_error: &KeyringError) -> Option<i32> {
    None
}

/// Turns keychain dialogs off for the rest of this process (a process-wide switch in the
/// Security framework). Best effort: if even that fails, the calls behave as before.
#[cfg(target_os = "macos")]
pub fn forbid_dialogs() {
    use security_framework::os::macos::keychain::SecKeychain;
    if let Ok(guard) = SecKeychain::disable_user_interaction() {
        // Dropping the guard would turn dialogs back on; they stay off until the process ends.
        std::mem::forget(guard);
    }
}

#[cfg(not(target_os = "macos"))]
pub fn forbid_dialogs() {}

/// Runs `f` with keychain dialogs off, then turns them back on: for checking, from a terminal,
/// what `get` will meet.
#[cfg(target_os = "macos")]
pub fn without_dialogs<T>(f: impl FnOnce() -> T) -> T {
    use security_framework::os::macos::keychain::SecKeychain;
    let _guard = SecKeychain::disable_user_interaction();
    f()
}

#[cfg(not(target_os = "macos"))]
pub fn without_dialogs<T>(f: impl FnOnce() -> T) -> T {
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_and_not_allowed_say_what_to_do() {
        for status in [INTERACTION_NOT_ALLOWED, AUTH_FAILED] {
            let remedy = remedy(status).unwrap();
            assert!(remedy.contains("keyswitch reauthorize"), "{remedy}");
            assert!(remedy.contains("unlock"), "{remedy}");
            assert!(!remedy.contains('\n'));
        }
        assert_eq!(remedy(-25300), None);
    }

    /// The store passes these codes on as a platform failure holding security-framework's error.
    #[cfg(target_os = "macos")]
    #[test]
    fn finds_the_status_inside_a_store_error() {
        let inner = security_framework::base::Error::from_code(INTERACTION_NOT_ALLOWED);
        let error = KeyringError::PlatformFailure(Box::new(inner));
        assert_eq!(status(&error), Some(INTERACTION_NOT_ALLOWED));
        assert_eq!(status(&KeyringError::NoEntry), None);
    }
}
