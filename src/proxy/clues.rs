//! The one place the proxy reads an error's words: hyper-util's tunnel error and the native TLS
//! libraries' errors (Security.framework, SChannel) are of types that do not tell their cases
//! apart, so what they say is all there is to go on. Everything else is told by type.

/// What an error's words say where its type does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clue {
    /// The proxy answered a CONNECT with 407.
    ProxyAuthRequired,
    /// The proxy answered a CONNECT with another status that is no success.
    TunnelRefused,
    /// The certificate's issuer is not trusted.
    UnknownIssuer,
    NotValidForName,
    Expired,
}

/// What `text` (an error's message) says, if it is one of the cases the proxy names.
pub fn clue(text: &str) -> Option<Clue> {
    let text = text.to_ascii_lowercase();
    let says = |words: &str| text.contains(words);
    if says("proxy authorization required") {
        Some(Clue::ProxyAuthRequired)
    } else if says("tunnel error: unsuccessful") {
        Some(Clue::TunnelRefused)
    } else if says("unknownissuer") || says("unknown issuer") {
        Some(Clue::UnknownIssuer)
    } else if says("notvalidforname") || says("not valid for name") {
        Some(Clue::NotValidForName)
    } else if says("expired") {
        Some(Clue::Expired)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_of_each_case_are_recognised() {
        for (text, expected) in [
            (
                "tunnel error: proxy authorization required",
                Some(Clue::ProxyAuthRequired),
            ),
            ("tunnel error: unsuccessful", Some(Clue::TunnelRefused)),
            (
                "invalid peer certificate: UnknownIssuer",
                Some(Clue::UnknownIssuer),
            ),
            (
                "certificate verify failed: unknown issuer",
                Some(Clue::UnknownIssuer),
            ),
            (
                "invalid peer certificate: NotValidForName",
                Some(Clue::NotValidForName),
            ),
            (
                "The certificate is not valid for name example.com",
                Some(Clue::NotValidForName),
            ),
            ("certificate has Expired", Some(Clue::Expired)),
            ("tunnel error: failed to create underlying connection", None),
            ("tunnel error: unexpected end of file", None),
            ("connection reset by peer", None),
        ] {
            assert_eq!(clue(text), expected, "{text}");
        }
    }
}
