//! The rule "which keys may this session be given": pure, no I/O. A key is only ever printed for
//! a session whose `ANTHROPIC_BASE_URL` is that key's endpoint; when the key that should be
//! active belongs elsewhere, the session may get only a usable key of its own endpoint, and the
//! settings are to be moved to the active key's endpoint.

use crate::config::KeyConfig;
use crate::endpoint::{Endpoint, key_belongs, session_endpoint};
use crate::select::Availability;

/// Which keys a session may be handed, best first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handout {
    /// The active key belongs where the session is: these keys, in the pool's order.
    Here(Vec<usize>),
    /// The active key belongs to another endpoint: the settings should move there, which makes
    /// Claude Code ask again; meanwhile only these ready keys of the session's own endpoint
    /// (perhaps none).
    Elsewhere(Vec<usize>),
}

/// The keys of `order` (the pool's candidates, active first) that a session talking to
/// `session_url` may be given. `user_default` is the base URL the user had before keyswitch
/// managed it.
pub fn for_session(
    keys: &[KeyConfig],
    availability: &[Availability],
    order: &[usize],
    session_url: Option<&str>,
    user_default: Option<&str>,
) -> Handout {
    let Some(&desired) = order.first() else {
        return Handout::Here(Vec::new());
    };
    if !keys.iter().any(|k| k.endpoint().is_some()) {
        return Handout::Here(order.to_vec());
    }
    let session = session_endpoint(session_url);
    let managed: Vec<Endpoint> = keys.iter().filter_map(|k| k.endpoint()).cloned().collect();
    let belongs = |i: usize| key_belongs(keys[i].endpoint(), &session, &managed, user_default);
    if belongs(desired) {
        Handout::Here(order.iter().copied().filter(|&i| belongs(i)).collect())
    } else {
        Handout::Elsewhere(
            order
                .iter()
                .copied()
                .filter(|&i| belongs(i) && availability[i] == Availability::Ready)
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::candidates;
    use jiff::Timestamp;

    fn key(name: &str, endpoint: Option<&str>) -> KeyConfig {
        let mut key = KeyConfig::new(name);
        if let Some(e) = endpoint {
            key.set_endpoint(Endpoint::parse(e).unwrap());
        }
        key
    }

    fn handout(
        keys: &[KeyConfig],
        availability: &[Availability],
        session: Option<&str>,
    ) -> Handout {
        for_session(keys, availability, &candidates(availability), session, None)
    }

    const READY: Availability = Availability::Ready;

    fn cooling() -> Availability {
        Availability::CoolingUntil(Timestamp::from_second(2_000_000_000).unwrap())
    }

    #[test]
    fn without_endpoints_every_candidate_goes_anywhere() {
        let keys = [key("a", None), key("b", None)];
        assert_eq!(
            handout(&keys, &[cooling(), READY], Some("https://x.example")),
            Handout::Here(vec![1, 0])
        );
    }

    #[test]
    fn a_session_gets_only_its_own_endpoints_keys() {
        let keys = [
            key("a", Some("https://proxy.corp")),
            key("b", None),
            key("c", Some("https://proxy.corp")),
        ];
        let ready = [READY, READY, READY];
        assert_eq!(
            handout(&keys, &ready, Some("https://proxy.corp/")),
            Handout::Here(vec![0, 2])
        );
    }

    #[test]
    fn a_session_elsewhere_gets_only_ready_keys_of_its_endpoint() {
        let keys = [
            key("a", Some("https://proxy.corp")),
            key("b", None),
            key("c", None),
        ];
        // The active key is at the proxy; the session is on the public API.
        assert_eq!(
            handout(&keys, &[READY, cooling(), READY], None),
            Handout::Elsewhere(vec![2])
        );
        assert_eq!(
            handout(&keys, &[READY, cooling(), cooling()], None),
            Handout::Elsewhere(vec![])
        );
    }

    #[test]
    fn no_candidates_means_no_keys() {
        let keys = [key("a", Some("https://proxy.corp"))];
        assert_eq!(
            handout(&keys, &[Availability::SetAside], None),
            Handout::Here(vec![])
        );
    }
}
