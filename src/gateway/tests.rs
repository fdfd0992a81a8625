//! The classifier over what real gateways answer: the table of docs/facts/gateway-facts.md, row by
//! row, and the answers that are not about the key.

use std::collections::HashMap;

use super::*;
use crate::failure::Failure;

fn now() -> Timestamp {
    "2026-12-01T19:00:00Z".parse().unwrap()
}

fn judge(status: u16, headers: &[(&str, &str)], body: &str) -> Failure {
    judge_with(status, headers, body, &[])
}

fn judge_with(status: u16, headers: &[(&str, &str)], body: &str, rules: &[Rule]) -> Failure {
    let map: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    let header = move |name: &str| map.get(name).cloned();
    let fields = ErrorFields::parse(body.as_bytes());
    classify(
        &Answer {
            status,
            header: &header,
            fields: &fields,
            body,
        },
        rules,
        now(),
    )
}

/// What the classifier said, in the words of the fixtures: the meaning, and the reset if any.
fn meaning(failure: &Failure) -> (&'static str, Option<Timestamp>) {
    match failure {
        Failure::Spent {
            reason: Reason::RateLimit,
            until,
            ..
        } => ("rate_limited", *until),
        Failure::Spent { until, .. } => ("spent", *until),
        Failure::Revoked { .. } => ("revoked", None),
        Failure::ThisRequestOnly { .. } => ("this_request_only", None),
        Failure::NotTheKey => ("not_the_key", None),
    }
}

fn at(text: &str) -> Option<Timestamp> {
    Some(text.parse().unwrap())
}

#[test]
fn every_real_budget_answer_is_spent() {
    let litellm = |code: &str| {
        format!(
            r#"{{"error":{{"message":"LiteLLM Virtual Key: 9b1c, key_alias: budget, exceeded budget for model=claude-sonnet-4-5","type":"budget_exceeded","param":null,"code":"{code}"}}}}"#
        )
    };
    for (status, headers, body, expected) in [
        // LiteLLM >= 1.104 (422), 1.85-1.103 (429), <= 1.84 (400): the same body.
        (422, vec![], litellm("422"), ("spent", None)),
        (429, vec![], litellm("429"), ("spent", None)),
        (400, vec![], litellm("400"), ("spent", None)),
        (
            400,
            vec![],
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"You have reached your specified workspace API usage limits. You will regain access on 2027-01-01 at 00:00 UTC."}}"#.to_string(),
            ("spent", at("2027-01-01T00:00:00Z")),
        ),
        (
            429,
            vec![],
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"You have reached your API usage limits: $100.00. You will regain access on 2026-12-15 at 00:00 UTC.","details":{"error_code":"enforced_spend_limit_reached"}}}"#.to_string(),
            ("spent", at("2026-12-15T00:00:00Z")),
        ),
        (
            400,
            vec![],
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."}}"#.to_string(),
            ("spent", None),
        ),
        (
            402,
            vec![],
            r#"{"type":"error","error":{"type":"billing_error","message":"There is an issue with your payment method."}}"#.to_string(),
            ("spent", None),
        ),
        (
            402,
            vec![],
            r#"{"error":{"code":402,"message":"Insufficient credits. Add more using https://openrouter.ai/credits","metadata":{"limit_source":"openrouter_credits"}}}"#.to_string(),
            ("spent", None),
        ),
        (
            403,
            vec![],
            r#"{"error":{"code":403,"message":"Workspace monthly budget of $500.00 exceeded. Contact your workspace admin."}}"#.to_string(),
            ("spent", None),
        ),
        (
            403,
            vec![],
            r#"{"error":{"code":403,"message":"Key limit exceeded. Manage it using https://openrouter.ai/settings/keys"}}"#.to_string(),
            ("spent", None),
        ),
        (
            412,
            vec![],
            r#"{"status":"failure","message":"Budget limit exceeded for this API key"}"#.to_string(),
            ("spent", None),
        ),
        (
            403,
            vec![("Retry-After", "3600")],
            r#"{"statusCode":403,"message":"Token quota exceeded. Try again in 1 hour."}"#.to_string(),
            ("spent", at("2026-12-01T20:00:00Z")),
        ),
    ] {
        let failure = judge(status, &headers, &body);
        assert_eq!(meaning(&failure), expected, "{status} {body}");
        assert!(failure.mark(crate::reason::Source::Proxy, None).is_some());
    }
}

#[test]
fn rate_limits_cool_until_the_reset_wherever_it_is_said() {
    for (headers, body, until) in [
        // LiteLLM's rpm limit on /v1/messages: the reset only in the message.
        (
            vec![],
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"Rate limit exceeded for api_key: 3f2a. Limit type: requests. Current limit: 2, Remaining: 0. Limit resets at: 2026-12-01 19:01:52 UTC"}}"#,
            at("2026-12-01T19:01:52Z"),
        ),
        // The same on /v1/chat/completions: retry-after and reset_at.
        (
            vec![
                ("retry-after", "60"),
                ("reset_at", "2026-12-01 19:01:00 UTC"),
            ],
            r#"{"error":{"message":"Rate limit exceeded","type":"throttling_error","param":null,"code":"429"}}"#,
            at("2026-12-01T19:01:00Z"),
        ),
        (
            vec![("retry-after", "17")],
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#,
            at("2026-12-01T19:00:17Z"),
        ),
        (
            vec![
                ("X-AI-RateLimit-Retry-After", "9"),
                ("X-AI-RateLimit-Reset", "9"),
            ],
            r#"{"message":"AI token rate limit exceeded for provider(s): anthropic"}"#,
            at("2026-12-01T19:00:09Z"),
        ),
        (
            vec![("x-ratelimit-reset", "30")],
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"token budget exhausted"}}"#,
            at("2026-12-01T19:00:30Z"),
        ),
        (vec![], "", None),
    ] {
        let failure = judge(429, &headers, body);
        assert_eq!(
            meaning(&failure),
            ("rate_limited", until),
            "{headers:?} {body}"
        );
    }
}

#[test]
fn a_short_limit_is_not_notable_and_a_long_one_is() {
    let short = judge(429, &[("retry-after", "17")], "");
    assert!(!short.notable());
    assert!(short.detail().contains("retry-after"), "{}", short.detail());
    let long = judge(429, &[("retry-after", "7200")], "");
    assert!(long.notable());
}

#[test]
fn a_refused_key_is_revoked_and_a_forbidden_model_is_this_request_only() {
    assert_eq!(meaning(&judge(401, &[], "")).0, "revoked");
    assert_eq!(
        meaning(&judge(
            403,
            &[],
            r#"{"type":"error","error":{"type":"forbidden","message":"Request not allowed"}}"#
        ))
        .0,
        "revoked"
    );
    let permission = judge(
        403,
        &[],
        r#"{"type":"error","error":{"type":"permission_error","message":"Your API key does not have permission to use the specified resource."}}"#,
    );
    assert_eq!(meaning(&permission).0, "this_request_only");
    assert_eq!(permission.mark(crate::reason::Source::Proxy, None), None);
}

#[test]
fn answers_about_the_request_are_not_the_keys() {
    for (status, body) in [
        (
            422,
            r#"{"error":{"message":"[{'type': 'missing', 'loc': ('body', 'messages'), 'msg': 'Field required'}]","type":"None","param":"None","code":"422"}}"#,
        ),
        (
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#,
        ),
        (
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"messages.0: 'why is my credit balance low?' exceeds the limit"}}"#,
        ),
        (
            413,
            r#"{"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum allowed number of bytes."}}"#,
        ),
        (
            404,
            r#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-nope"}}"#,
        ),
        (
            529,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ),
        (
            500,
            r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#,
        ),
        (400, "not json"),
        (200, ""),
    ] {
        assert_eq!(
            judge(status, &[], body),
            Failure::NotTheKey,
            "{status} {body}"
        );
    }
}

#[test]
fn only_error_statuses_that_say_it_in_words_are_read() {
    for status in [400, 401, 402, 403, 412, 422, 429] {
        assert!(needs_body(status, &[]), "{status}");
    }
    for status in [200, 404, 413, 500, 529] {
        assert!(!needs_body(status, &[]), "{status}");
    }
}

fn rule(json: &str) -> Result<Rule, anyhow::Error> {
    Rule::try_from(serde_json::from_str::<rules::RuleFile>(json).unwrap())
}

#[test]
fn the_users_rules_come_first() {
    let rules = [
        rule(r#"{"status": 500, "body_contains": "QUOTA", "meaning": "spent", "cooldown": "2h"}"#)
            .unwrap(),
        rule(r#"{"error_type": "budget_exceeded", "meaning": "not_the_key"}"#).unwrap(),
    ];
    assert!(needs_body(500, &rules));
    let quota = judge_with(500, &[], r#"{"message":"daily quota used up"}"#, &rules);
    assert_eq!(meaning(&quota), ("spent", at("2026-12-01T21:00:00Z")));
    // A reset the gateway states wins over the rule's cooldown.
    let stated = judge_with(
        500,
        &[("retry-after", "60")],
        r#"{"message":"quota"}"#,
        &rules,
    );
    assert_eq!(meaning(&stated), ("spent", at("2026-12-01T19:01:00Z")));
    let overridden = judge_with(
        422,
        &[],
        r#"{"error":{"type":"budget_exceeded","message":"m"}}"#,
        &rules,
    );
    assert_eq!(overridden, Failure::NotTheKey);
    assert_eq!(judge_with(500, &[], "other", &rules), Failure::NotTheKey);
}

#[test]
fn bad_rules_are_refused_with_what_is_wrong() {
    for (json, says) in [
        (r#"{"status": 418, "meaning": "spnt"}"#, "is not one of"),
        (
            r#"{"status": 200, "meaning": "spent"}"#,
            "not an error status",
        ),
        (r#"{"meaning": "spent"}"#, "matches every answer"),
        (
            r#"{"body_contains": " ", "meaning": "spent"}"#,
            "body_contains is empty",
        ),
        (
            r#"{"status": 403, "meaning": "revoked", "cooldown": "1h"}"#,
            "only for a rule meaning",
        ),
        (
            r#"{"status": 403, "meaning": "spent", "cooldown": "0s"}"#,
            "0s",
        ),
    ] {
        let error = format!("{:#}", rule(json).unwrap_err());
        assert!(error.contains(says), "{json}: {error}");
    }
}

/// One answer of tests/fixtures/gateways: what a gateway said, byte for byte, and what it means.
#[derive(serde::Deserialize)]
struct Fixture {
    situation: String,
    now: Timestamp,
    status: u16,
    headers: serde_json::Map<String, serde_json::Value>,
    body: String,
    expect: String,
    reset: Option<Timestamp>,
}

#[test]
fn every_recorded_gateway_answer_means_what_its_fixture_says() {
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gateways");
    let mut checked = 0;
    let mut wrong = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let fixture: Fixture = serde_json::from_slice(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let headers: HashMap<String, String> = fixture
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase(),
                    v.as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let header = move |name: &str| headers.get(name).cloned();
        let fields = ErrorFields::parse(fixture.body.as_bytes());
        let failure = classify(
            &Answer {
                status: fixture.status,
                header: &header,
                fields: &fields,
                body: &fixture.body,
            },
            &[],
            fixture.now,
        );
        let (meaning, until) = meaning(&failure);
        if meaning != fixture.expect || until != fixture.reset {
            wrong.push(format!(
                "{}: {} — expected {} until {:?}, got {meaning} until {until:?}",
                path.file_name().unwrap().to_string_lossy(),
                fixture.situation,
                fixture.expect,
                fixture.reset
            ));
        }
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} fixtures found in {folder}");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// --- Adversarial review (h-attack2) ---

/// A corporate proxy that intercepts TLS answers a blocked or metered request with its own HTML
/// page; every key meets it. Its words ("quota", "budget") are the network's, not the key's:
/// taken as a spent key, each key in turn would cool for the billing cooldown.
#[test]
fn a_proxy_block_page_is_not_a_spent_key() {
    let zscaler = "<html><head><title>Internet Access Quota Exceeded</title></head><body><p>You have exceeded your daily browsing quota for this category. Contact your IT department.</p></body></html>";
    let bluecoat = "<!DOCTYPE html>\n<html><body><h1>Access Denied</h1>Your bandwidth budget for today has been used.</body></html>";
    for page in [zscaler, bluecoat] {
        assert_ne!(meaning(&judge(403, &[], page)).0, "spent", "{page}");
    }
}

/// LiteLLM's other budget wordings (litellm `auth_checks.py`): the internal-user and end-user
/// budgets ("ExceededBudget: User=… over budget. Spend=…, Budget=…"), the team budget, and the
/// older per-key "ExceededTokenBudget". Claude Code shows only the message to the hook (`error`
/// `unknown`), so the words must say it without the `budget_exceeded` type.
#[test]
fn litellms_other_budget_wordings_are_spent_by_their_words_alone() {
    for message in [
        "ExceededBudget: User=user-7 over budget. Spend=3.7e-05, Budget=0.0",
        "ExceededBudget: End User=cust-1 over budget. Spend=5, Budget=5",
        "Team=3A over budget. Spend=51, Budget=50",
        "ExceededTokenBudget: Current spend for token: 7.2e-05; Max Budget for Token: 2e-07",
    ] {
        for status in [400, 422, 429] {
            let body =
                format!(r#"{{"error":{{"message":"{message}","type":"None","code":"{status}"}}}}"#);
            assert_eq!(
                meaning(&judge(status, &[], &body)).0,
                "spent",
                "{status} {message}"
            );
        }
    }
    // Older LiteLLM sent a key's spent budget as a 401 "Authentication Error, …": not a
    // revoked key, which would be set aside for good.
    let old = r#"{"error":{"message":"Authentication Error, ExceededTokenBudget: Current spend for token: 10.01; Max Budget for Token: 10.0","type":"auth_error","code":"401"}}"#;
    assert_eq!(meaning(&judge(401, &[], old)).0, "spent");
}

/// Bodies in odd shapes never panic and never make a spent key of nothing.
#[test]
fn odd_bodies_are_judged_without_panic() {
    let huge = format!(r#"{{"error":{{"message":"{}"}}}}"#, "x".repeat(200_000));
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    for body in [
        r#"[{"error":{"type":"budget_exceeded"}}]"#,
        r#"{"error":["budget_exceeded"]}"#,
        r#"{"error":{"type":402,"message":null}}"#,
        r#"{"error":{"type":{"nested":"budget_exceeded"}}}"#,
        r#"{"error":"{\"error\":{\"type\":\"rate_limit_error\"}}"}"#,
        "\u{0}\u{1}\u{7f}",
        huge.as_str(),
        deep.as_str(),
    ] {
        for status in [400, 403, 422, 429, 500] {
            let _ = judge(status, &[], body);
        }
        let fields = ErrorFields::parse(body.as_bytes());
        assert!(!fields.is("budget_exceeded"), "{body}");
    }
    let invalid_utf8: &[u8] = b"{\"error\":{\"message\":\"budget \xff\xfe exceeded\"}}";
    let _ = ErrorFields::parse(invalid_utf8);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn the_classifier_never_panics(
            status in 0u16..1000,
            body in ".{0,300}",
            retry in ".{0,40}",
            reset in ".{0,40}",
        ) {
            let headers = [("retry-after", retry.as_str()), ("x-ratelimit-reset", reset.as_str()),
                ("x-ai-ratelimit-reset", retry.as_str()), ("reset_at", reset.as_str()),
                ("anthropic-ratelimit-tokens-reset", reset.as_str())];
            let _ = judge(status, &headers, &body);
        }

        #[test]
        fn reset_words_never_panic_and_stay_within_a_month(
            prefix in ".{0,40}",
            lead in prop::sample::select(vec!["resets at:", "RESETS AT", "regain access on", "reset at", "Reset At:"]),
            date in ".{0,40}",
            n in 0i64..400_000_000_000,
        ) {
            let message = format!("{prefix}{lead}{date}");
            let _ = reset::reset_in_words(&message);
            let header = |name: &str| (name == "x-ratelimit-reset").then(|| n.to_string());
            if let Some(r) = reset::reset_time(&header, Some(&message), now()) {
                prop_assert!(r.at > now());
                prop_assert!(r.at <= now().checked_add(reset::LONGEST_RESET).unwrap());
            }
        }

        #[test]
        fn error_fields_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = ErrorFields::parse(&bytes);
        }
    }
}

/// A validation error quotes the request (pydantic's `'input'`): the user's own words "exceeded
/// budget" in it do not spend the key.
#[test]
fn a_validation_error_echoing_the_users_words_is_not_a_spent_budget() {
    let echo = r#"{"error":{"message":"[{'type': 'string_type', 'loc': ('body', 'system'), 'msg': 'Input should be a valid string', 'input': 'Explain why team Alpha exceeded budget last month'}]","type":"None","param":"None","code":"422"}}"#;
    assert_eq!(meaning(&judge(422, &[], echo)).0, "not_the_key");
}

#[test]
fn a_networks_html_rate_limit_page_marks_no_key() {
    // Cloudflare's rate limit of the machine's address: every key meets it alike.
    let page = "<html><head><title>Error 1015</title></head><body>You are being rate limited</body></html>";
    assert_eq!(
        judge(429, &[("content-type", "text/html")], page),
        Failure::NotTheKey
    );
    assert_eq!(
        judge(
            429,
            &[("content-type", "text/html"), ("retry-after", "30")],
            page
        ),
        Failure::NotTheKey
    );
    // An API's own 429 still cools the key.
    assert_eq!(
        meaning(&judge(429, &[], r#"{"error":{"message":"<slow down>"}}"#)).0,
        "rate_limited"
    );
}
