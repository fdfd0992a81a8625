//! Windows Credential Manager specifics. Pure rules, compiled on every OS so that they are
//! tested everywhere.

use crate::config::StoreKind;
use crate::error::refuse;

/// `CRED_MAX_CREDENTIAL_BLOB_SIZE` (5 × 512 bytes): the most one Credential Manager entry holds.
/// keyswitch stores the secret's bytes as they are (ASCII), so this is also its length limit.
pub const MAX_CREDENTIAL_BLOB: usize = 5 * 512;

/// Refuses, before anything is written, a secret the store cannot hold: keyswitch accepts up
/// to 16,384 characters (what Claude Code accepts), the Credential Manager far fewer.
pub fn check_fits(kind: StoreKind, secret: &str) -> anyhow::Result<()> {
    if kind == StoreKind::WindowsCredentialManager && secret.len() > MAX_CREDENTIAL_BLOB {
        return Err(refuse(format!(
            "the secret is {} characters long, and the Windows Credential Manager holds at most {MAX_CREDENTIAL_BLOB}: check that only the key was piped in (an Anthropic API key is about 110 characters)",
            secret.len()
        )));
    }
    Ok(())
}
