use super::*;

fn now() -> Timestamp {
    "2026-12-01T10:00:00Z".parse().unwrap()
}

fn of(headers: &[(&'static str, &'static str)]) -> Option<Reported> {
    read(headers.iter().map(|(k, v)| (*k, v.as_bytes())), now())
}

fn window(r: &Reported, name: &str) -> Window {
    r.windows
        .iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("no window {name} in {r:?}"))
        .clone()
}

fn at(text: &str) -> Option<Timestamp> {
    Some(text.parse().unwrap())
}

#[test]
fn litellm_spend_and_budget() {
    let r = of(&[
        ("x-litellm-key-spend", "4.02"),
        ("x-litellm-key-max-budget", "5.0"),
        ("x-litellm-version", "1.108.7"),
    ])
    .unwrap();
    assert_eq!(r.spend, Some(4.02));
    assert_eq!(r.max_budget, Some(5.0));
    assert!((r.spent_share().unwrap() - 0.804).abs() < 1e-9);
    // No budget set: LiteLLM writes Python's None.
    let r = of(&[
        ("x-litellm-key-spend", "0.0"),
        ("x-litellm-key-max-budget", "None"),
    ])
    .unwrap();
    assert_eq!((r.spend, r.max_budget), (Some(0.0), None));
    assert_eq!(r.spent_share(), None);
}

#[test]
fn anthropic_windows_with_their_reset_times() {
    let r = of(&[
        ("anthropic-ratelimit-requests-limit", "50"),
        ("anthropic-ratelimit-requests-remaining", "49"),
        ("anthropic-ratelimit-requests-reset", "2026-12-01T10:00:02Z"),
        ("anthropic-ratelimit-input-tokens-limit", "30000"),
        ("anthropic-ratelimit-input-tokens-remaining", "27000"),
        (
            "anthropic-ratelimit-input-tokens-reset",
            "2026-12-01T10:00:06Z",
        ),
        ("anthropic-ratelimit-output-tokens-limit", "8000"),
        ("anthropic-ratelimit-tokens-remaining", "35000"),
    ])
    .unwrap();
    assert_eq!(r.spend, None);
    assert_eq!(
        window(&r, "requests"),
        Window {
            name: "requests".into(),
            limit: Some(50),
            remaining: Some(49),
            reset: at("2026-12-01T10:00:02Z"),
        }
    );
    let input = window(&r, "input-tokens");
    assert_eq!((input.limit, input.remaining), (Some(30000), Some(27000)));
    assert_eq!(window(&r, "output-tokens").remaining, None);
    assert_eq!(window(&r, "tokens").remaining, Some(35000));
}

#[test]
fn openrouter_reset_in_milliseconds_and_envoy_in_seconds() {
    let r = of(&[
        ("x-ratelimit-limit", "20"),
        ("x-ratelimit-remaining", "19"),
        ("x-ratelimit-reset", "1764583260000"),
    ])
    .unwrap();
    let w = window(&r, "rate");
    assert_eq!((w.limit, w.remaining), (Some(20), Some(19)));
    assert_eq!(
        w.reset,
        Some(Timestamp::from_millisecond(1764583260000).unwrap())
    );
    let r = of(&[
        ("x-ratelimit-limit", "1000, 1000;w=60"),
        ("x-ratelimit-remaining", "900"),
        ("x-ratelimit-reset", "30"),
    ])
    .unwrap();
    let w = window(&r, "rate");
    assert_eq!((w.limit, w.remaining), (Some(1000), Some(900)));
    assert_eq!(w.reset, at("2026-12-01T10:00:30Z"));
}

#[test]
fn litellm_passes_on_its_own_keys_limits_which_are_not_the_users() {
    let r = of(&[
        ("x-litellm-version", "1.108.7"),
        ("x-litellm-key-spend", "1.0"),
        ("x-ratelimit-remaining-requests", "3999"),
        ("x-ratelimit-limit-requests", "4000"),
        ("x-litellm-key-remaining-requests-claude-sonnet-4-5", "1"),
        ("x-litellm-key-rpm-limit", "None"),
    ])
    .unwrap();
    assert_eq!(r.windows.len(), 1, "{r:?}");
    let w = window(&r, "requests");
    assert_eq!((w.remaining, w.limit), (Some(1), None));
}

#[test]
fn openai_style_windows() {
    let r = of(&[
        ("x-ratelimit-limit-requests", "100"),
        ("x-ratelimit-remaining-requests", "99"),
        ("x-ratelimit-reset-requests", "6m0s"),
        ("x-ratelimit-remaining-tokens", "1000"),
        ("x-ratelimit-reset-tokens", "20ms"),
    ])
    .unwrap();
    let requests = window(&r, "requests");
    assert_eq!((requests.limit, requests.remaining), (Some(100), Some(99)));
    assert_eq!(requests.reset, at("2026-12-01T10:06:00Z"));
    assert_eq!(window(&r, "tokens").reset, at("2026-12-01T10:00:00.02Z"));
}

#[test]
fn kong_windows_share_one_reset() {
    let r = of(&[
        ("x-ai-ratelimit-limit-60-anthropic", "10000"),
        ("x-ai-ratelimit-remaining-60-anthropic", "9000"),
        ("x-ai-ratelimit-reset", "9"),
        ("x-ai-ratelimit-retry-after", "9"),
    ])
    .unwrap();
    let w = window(&r, "kong 60-anthropic");
    assert_eq!((w.limit, w.remaining), (Some(10000), Some(9000)));
    assert_eq!(w.reset, at("2026-12-01T10:00:09Z"));
    assert_eq!(r.windows.len(), 1);
}

#[test]
fn missing_and_garbage_values_are_skipped() {
    assert_eq!(of(&[]), None);
    assert_eq!(of(&[("content-type", "application/json")]), None);
    // A provider's headers LiteLLM passes on are about LiteLLM's own key.
    assert_eq!(
        of(&[("llm_provider-anthropic-ratelimit-tokens-remaining", "5")]),
        None
    );
    for garbage in ["", "abc", "-1", "NaN", "inf", "1e400", "4.02$", " "] {
        assert_eq!(
            of(&[
                ("x-litellm-key-spend", garbage),
                ("x-litellm-key-max-budget", garbage),
                ("anthropic-ratelimit-tokens-remaining", garbage),
                ("x-ratelimit-limit", garbage),
                ("x-ai-ratelimit-remaining-60-x", garbage),
            ]),
            None,
            "{garbage:?}"
        );
    }
    // A good count with a reset that means nothing: the count stays, the reset does not.
    let r = of(&[
        ("anthropic-ratelimit-tokens-remaining", "7"),
        ("anthropic-ratelimit-tokens-reset", "soon"),
        ("anthropic-ratelimit-tokens-unknown", "1"),
    ])
    .unwrap();
    assert_eq!(window(&r, "tokens").reset, None);
    assert_eq!(count("12.0"), Some(12));
    assert_eq!(count("12.5"), None);
    assert_eq!(
        go_duration("1h2m3.5s"),
        Some(SignedDuration::from_millis(3_723_500))
    );
    assert_eq!(go_duration("5x"), None);
    assert_eq!(go_duration("m"), None);
}

#[test]
fn windows_are_bounded_and_names_cleaned() {
    let names: Vec<String> = (0..20)
        .map(|i| format!("anthropic-ratelimit-w{i}\u{1b}x-remaining"))
        .collect();
    let headers: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"1"[..])).collect();
    let r = read(headers, now()).unwrap();
    assert_eq!(r.windows.len(), MAX_WINDOWS);
    assert!(r.windows.iter().all(|w| {
        w.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    }));
}

#[test]
fn a_window_named_like_a_key_keeps_no_name_of_its_own() {
    assert_eq!(window_name("", "requests-minute"), "requests-minute");
    assert_eq!(window_name("", "claude-3-5-sonnet"), "claude-3-5-sonnet");
    assert_eq!(window_name("", "sk-ant-test-SECRETSECRET"), "other");
    assert_eq!(window_name("", "tokens-sk-abc"), "other");
    assert_eq!(window_name("", "abcdefghijklmnopqrstuvwxyz"), "other");
}
