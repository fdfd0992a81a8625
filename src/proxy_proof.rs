//! Proof that the proxy holds the access token, without the token crossing the socket.
//!
//! Any local program, of any user, may bind the proxy's loopback port while the proxy is not
//! running. So the CLI never trusts what answers there on its word: it sends a fresh random
//! nonce, and only an answer carrying HMAC-SHA256(token, nonce + the answer's own bytes) is the
//! user's proxy. Stopping the proxy works the same way the other way round: the client makes a
//! fresh nonce and takes the time, and a shutdown carries an HMAC over both, so the token never
//! goes to a listener that has not proved itself. The proxy takes each nonce once and only
//! within a short time of its clock, so a recorded shutdown cannot be played again, and nothing
//! the proxy hands out can be used up by another program (it keeps no pool of challenges that
//! a flood of probes could push out). Each use of the key has its own label (domain separation), so a
//! proof made for one purpose is never valid for another.
//!
//! Both sides import this module; neither imports the other.

use anyhow::{Result, anyhow};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The client's nonce on a health request.
pub const NONCE_HEADER: &str = "x-keyswitch-nonce";
/// The proxy's proof on a health answer; the client's on a shutdown request.
pub const PROOF_HEADER: &str = "x-keyswitch-proof";
/// On a shutdown request: when the client made it, in unix seconds.
pub const TIME_HEADER: &str = "x-keyswitch-time";

/// Random bytes in a nonce or a challenge: as many as the token holds.
const RANDOM_BYTES: usize = 32;

const HEALTH_LABEL: &[u8] = b"keyswitch-proxy health v1\0";
// v2: over the client's nonce and time (v1 was over a challenge the proxy handed out).
const SHUTDOWN_LABEL: &[u8] = b"keyswitch-proxy shutdown v2\0";

/// A fresh random nonce, as lowercase hex.
pub fn fresh_nonce() -> Result<String> {
    let mut raw = [0u8; RANDOM_BYTES];
    getrandom::fill(&mut raw).map_err(|e| anyhow!("cannot get random bytes: {e}"))?;
    Ok(hex(&raw))
}

/// The clock a shutdown's time is read from, on both sides: unix seconds (0 for a clock set
/// before 1970, which no proof's time then matches).
pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether `text` has the shape of [`fresh_nonce`]'s values: anything else is not answered.
pub fn is_nonce(text: &str) -> bool {
    text.len() == 2 * RANDOM_BYTES
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The proxy's proof over its health answer `body` to the client's `nonce`.
pub fn health_proof(token: &str, nonce: &str, body: &[u8]) -> String {
    finish(mac(token, HEALTH_LABEL, &[nonce.as_bytes(), b"\0", body]))
}

/// Whether `proof` is the health proof of `body` to `nonce` by the holder of `token`.
pub fn health_proved(token: &str, nonce: &str, body: &[u8], proof: &str) -> bool {
    verify(
        mac(token, HEALTH_LABEL, &[nonce.as_bytes(), b"\0", body]),
        proof,
    )
}

/// The client's proof that it holds `token`, asking at unix second `time` (with its fresh
/// `nonce`) for the proxy to stop.
pub fn shutdown_proof(token: &str, nonce: &str, time: u64) -> String {
    finish(shutdown_mac(token, nonce, time))
}

/// Whether `proof` is [`shutdown_proof`] of `nonce` and `time` by the holder of `token`.
pub fn shutdown_proved(token: &str, nonce: &str, time: u64, proof: &str) -> bool {
    verify(shutdown_mac(token, nonce, time), proof)
}

fn shutdown_mac(token: &str, nonce: &str, time: u64) -> Option<Hmac<Sha256>> {
    let time = time.to_string();
    mac(
        token,
        SHUTDOWN_LABEL,
        &[nonce.as_bytes(), b"\0", time.as_bytes()],
    )
}

/// HMAC-SHA256 keyed with the token over the label and the parts. `None` only if the HMAC
/// crate ever refused a key length (it takes any today): then nothing proves, so trust fails
/// closed.
fn mac(token: &str, label: &[u8], parts: &[&[u8]]) -> Option<Hmac<Sha256>> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(token.as_bytes()).ok()?;
    mac.update(label);
    for part in parts {
        mac.update(part);
    }
    Some(mac)
}

fn finish(mac: Option<Hmac<Sha256>>) -> String {
    mac.map(|m| hex(&m.finalize().into_bytes()))
        .unwrap_or_default()
}

/// Constant-time comparison of the expected MAC with the hex `proof` given.
fn verify(expected: Option<Hmac<Sha256>>, proof: &str) -> bool {
    match (expected, unhex(proof)) {
        (Some(expected), Some(given)) => expected.verify_slice(&given).is_ok(),
        _ => false,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_verifies_only_for_its_token_nonce_body_and_purpose() {
        let nonce = fresh_nonce().unwrap();
        assert!(is_nonce(&nonce));
        assert_ne!(nonce, fresh_nonce().unwrap());
        let proof = health_proof("ksp-a", &nonce, b"{}");
        assert!(health_proved("ksp-a", &nonce, b"{}", &proof));
        assert!(!health_proved("ksp-b", &nonce, b"{}", &proof));
        assert!(!health_proved(
            "ksp-a",
            &fresh_nonce().unwrap(),
            b"{}",
            &proof
        ));
        assert!(!health_proved("ksp-a", &nonce, b"{ }", &proof));
        assert!(!health_proved("ksp-a", &nonce, b"{}", "zz"));
        assert!(!health_proved("ksp-a", &nonce, b"{}", ""));
        // A health proof is no shutdown proof, whatever the bytes.
        assert!(!shutdown_proved("ksp-a", &nonce, 7, &proof));
        let stop = shutdown_proof("ksp-a", &nonce, 7);
        assert!(shutdown_proved("ksp-a", &nonce, 7, &stop));
        assert!(!shutdown_proved("ksp-a", &nonce, 8, &stop));
        assert!(!shutdown_proved("ksp-b", &nonce, 7, &stop));
        assert!(!shutdown_proved("ksp-a", &fresh_nonce().unwrap(), 7, &stop));
        assert!(!is_nonce("ABCD"));
        assert!(!is_nonce(&nonce.to_uppercase()));
    }
}
