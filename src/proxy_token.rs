//! The local access token of proxy mode: what `get` prints instead of a key, and the only
//! thing the proxy accepts in its place. One per user, in a file only the user can read.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use zeroize::Zeroizing;

use crate::fileio::{private_options, read_optional};
use crate::paths::{Dirs, ensure_private_dir};

/// Every access token starts with this: never mistaken for an API key, easy to grep for.
pub const TOKEN_PREFIX: &str = "ksp-";

/// The local access token, created on first use: 256 random bits, in a file only the user can
/// read. Two processes creating it at once agree on one (the first `create_new` wins).
pub fn ensure_token(dirs: &Dirs) -> Result<Zeroizing<String>> {
    let path = dirs.proxy_token_file();
    if let Some(token) = read_token(&path)? {
        if !open_to_others(&path) {
            return Ok(token);
        }
        return replace_exposed(dirs, &path);
    }
    make_token(dirs)
}

/// A new random token placed in the file (unless a concurrent creator's is there first).
fn make_token(dirs: &Dirs) -> Result<Zeroizing<String>> {
    place_token(dirs, &fresh_token()?)
}

/// 256 random bits after the prefix, as hex.
fn fresh_token() -> Result<Zeroizing<String>> {
    let mut raw = Zeroizing::new([0u8; 32]);
    getrandom::fill(raw.as_mut()).map_err(|e| anyhow!("cannot get random bytes: {e}"))?;
    let mut token = Zeroizing::new(String::from(TOKEN_PREFIX));
    for byte in raw.iter() {
        token.push_str(&format!("{byte:02x}"));
    }
    Ok(token)
}

/// Whether group or others may read or write the token file (a `chmod`, a backup tool, a copy
/// restored with other modes): on a shared host another user may have read the token, so it
/// is no longer secret.
fn open_to_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::symlink_metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// Replaces a token others could read with a new one, made as the file is (0600): the running
/// proxy takes the file's token up, and sessions that still send the old one get 401, on which
/// Claude Code asks `get` again. One replacer at a time, so concurrent callers agree on the new
/// token instead of each deleting the other's.
fn replace_exposed(dirs: &Dirs, path: &Path) -> Result<Zeroizing<String>> {
    let _one = crate::fileio::WriteLock::acquire(&dirs.state.join("proxy-token.lock"))?;
    if !open_to_others(path) {
        if let Some(token) = read_token(path)? {
            return Ok(token);
        }
    } else {
        crate::messages::warn(format_args!(
            "the proxy token file {} could be read by other users: replaced it with a new token (sessions take it up on their next request)",
            path.display()
        ));
    }
    // Renamed over the old file, never removed first: a proxy that finds the file missing puts
    // its own token back, which here is the exposed one.
    let token = fresh_token()?;
    let temp = write_temp(dirs, &token)?;
    std::fs::rename(&temp, path)
        .with_context(|| format!("cannot replace the exposed token file {}", path.display()))?;
    Ok(token)
}

/// The token in the file, if there is one (an error if it is damaged).
pub fn read(dirs: &Dirs) -> Result<Option<Zeroizing<String>>> {
    read_token(&dirs.proxy_token_file())
}

/// Puts `token` in the token file unless one is there already; returns the file's token, which
/// is another's when a concurrent creator got there first. The running proxy calls this to put
/// its token back when the file was deleted.
pub fn place_token(dirs: &Dirs, token: &str) -> Result<Zeroizing<String>> {
    let path = dirs.proxy_token_file();
    // Written whole to a temp file, then linked into place without replacing: a concurrent
    // creator's token is never overwritten, and nobody reads a half-written one.
    let temp = write_temp(dirs, token)?;
    let linked = std::fs::hard_link(&temp, &path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(Zeroizing::new(token.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_token(&path)?
            .ok_or_else(|| anyhow!("{} is empty: delete it and try again", path.display())),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// `token` in a new private temp file beside the token file, synced. Not under the writer
/// lock, so not named like the temp files that writers sweep.
fn write_temp(dirs: &Dirs, token: &str) -> Result<std::path::PathBuf> {
    ensure_private_dir(&dirs.state)?;
    let temp = dirs
        .state
        .join(format!(".proxy-token-{}.new", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    let mut file = private_options()
        .write(true)
        .create_new(true)
        .open(&temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    Ok(temp)
}

fn read_token(path: &Path) -> Result<Option<Zeroizing<String>>> {
    let bytes = match read_optional(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        // It cannot be opened or read (another owner, a mode without read): a new one does as
        // well. Other refusals (a folder in its place) say what to do already.
        Err(e) if e.root_cause().is::<std::io::Error>() => {
            return Err(anyhow!(
                "{}: delete it; keyswitch makes a new one, and a running proxy takes it up",
                crate::error::one_line(&e)
            ));
        }
        Err(e) => return Err(e),
    };
    let bytes = Zeroizing::new(bytes);
    let text = std::str::from_utf8(&bytes).unwrap_or("").trim();
    if !text.starts_with(TOKEN_PREFIX) || text.len() != TOKEN_PREFIX.len() + 64 {
        return Err(anyhow!(
            "the proxy token file {} is damaged: delete it; keyswitch makes a new one",
            path.display()
        ));
    }
    Ok(Some(Zeroizing::new(text.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            config: dir.path().join("c"),
            state: dir.path().join("s"),
        };
        let first = ensure_token(&dirs).unwrap();
        let second = ensure_token(&dirs).unwrap();
        assert_eq!(*first, *second);
        assert!(first.starts_with(TOKEN_PREFIX) && first.len() == TOKEN_PREFIX.len() + 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dirs.proxy_token_file())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0);
        }
        let other = Dirs {
            config: dir.path().join("c2"),
            state: dir.path().join("s2"),
        };
        assert_ne!(*ensure_token(&other).unwrap(), *first);
    }
}
