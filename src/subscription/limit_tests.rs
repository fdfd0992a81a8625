use super::*;
use serde_json::json;

fn now() -> ZonedDateTime {
    "2026-12-01T19:00:00Z"
        .parse::<Timestamp>()
        .unwrap()
        .to_zoned_datetime(TimeZone::UTC)
}

fn at(text: &str) -> Option<Timestamp> {
    Some(text.parse().unwrap())
}

#[test]
fn every_claim_reads_back_and_is_said_in_words() {
    for (word, said) in [
        ("five_hour", "5-hour limit"),
        ("seven_day", "weekly limit"),
        ("seven_day_opus", "weekly Opus limit"),
        ("seven_day_sonnet", "weekly Sonnet limit"),
        (
            "seven_day_overage_included",
            "weekly limit (extra usage included)",
        ),
        ("overage", "extra-usage limit"),
        ("brand_new", "brand_new limit"),
    ] {
        let claim = Claim::from(word.to_string());
        assert_eq!(claim.as_str(), word);
        assert_eq!(claim.describe(), said);
        assert_eq!(
            serde_json::to_value(&claim).unwrap(),
            json!(word),
            "{claim:?}"
        );
    }
    assert_eq!(
        Claim::from("seven_day_opus".to_string()),
        Claim::SevenDayOpus
    );
}

#[test]
fn the_transcripts_usage_limit_entry_gives_the_claim_and_reset() {
    let entry = json!({"type": "assistant", "apiError": "usage_limit_reached",
        "quotaLimits": {"status": "rejected", "resetsAt": 1_796_238_360, "rateLimitType": "seven_day_opus"}});
    let limit = from_entry(&entry).unwrap();
    assert_eq!(limit.claim, Some(Claim::SevenDayOpus));
    assert_eq!(
        limit.resets,
        Some(Timestamp::from_second(1_796_238_360).unwrap())
    );
    // Missing fields: still the limit, without what is missing.
    let bare =
        from_entry(&json!({"type": "assistant", "apiError": "usage_limit_reached"})).unwrap();
    assert_eq!(
        bare,
        Limit {
            claim: None,
            resets: None
        }
    );
    let odd = json!({"apiError": "usage_limit_reached", "quotaLimits": {"resetsAt": "soon", "rateLimitType": 5}});
    assert_eq!(
        from_entry(&odd).unwrap(),
        Limit {
            claim: None,
            resets: None
        }
    );
    // Another error is not the limit.
    assert!(from_entry(&json!({"type": "assistant", "apiError": "rate_limit"})).is_none());
    assert!(from_entry(&json!({"type": "assistant"})).is_none());
}

#[test]
fn only_the_last_assistant_entry_of_the_transcript_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    let limited = json!({"type": "assistant", "apiError": "usage_limit_reached",
        "quotaLimits": {"resetsAt": 1_796_238_360, "rateLimitType": "five_hour"}});
    let fine = json!({"type": "assistant", "message": {"content": []}});
    let user = json!({"type": "user"});
    std::fs::write(
        &path,
        format!("{fine}\n{limited}\n{user}\nnot json at all\n"),
    )
    .unwrap();
    assert_eq!(from_transcript(&path).unwrap().claim, Some(Claim::FiveHour));
    std::fs::write(&path, format!("{limited}\n{fine}\n")).unwrap();
    assert!(from_transcript(&path).is_none(), "an older limit is over");
    std::fs::write(&path, [0xff, 0xfe, b'\n', b'{']).unwrap();
    assert!(from_transcript(&path).is_none());
    assert!(from_transcript(&dir.path().join("missing.jsonl")).is_none());
}

#[test]
fn the_message_claude_code_shows_gives_the_claim_and_the_next_reset() {
    let limit = from_message("You've hit your 5-hour limit · resets 8:25pm (UTC)", &now()).unwrap();
    assert_eq!(limit.claim, Some(Claim::FiveHour));
    assert_eq!(limit.resets, at("2026-12-01T20:25:00Z"));
    // Earlier than now today: tomorrow.
    let early = from_message("You've hit your 5-hour limit · resets 6am (UTC)", &now()).unwrap();
    assert_eq!(early.resets, at("2026-12-02T06:00:00Z"));
    // Shown to the minute: one just passed is today's, not tomorrow's.
    let passed =
        from_message("You've hit your 5-hour limit · resets 6:30pm (UTC)", &now()).unwrap();
    assert_eq!(passed.resets, at("2026-12-01T18:30:00Z"));
    let berlin = from_message(
        "You’ve hit your weekly limit · resets 9:30pm (Europe/Berlin)",
        &now(),
    )
    .unwrap();
    assert_eq!(berlin.claim, Some(Claim::SevenDay));
    assert_eq!(berlin.resets, at("2026-12-01T20:30:00Z"));
    let dated = from_message(
        "You've hit your Opus limit · resets Dec 8, 8pm (UTC)",
        &now(),
    )
    .unwrap();
    assert_eq!(dated.claim, Some(Claim::SevenDayOpus));
    assert_eq!(dated.resets, at("2026-12-08T20:00:00Z"));
    let sonnet = from_message("You've hit your Sonnet limit", &now()).unwrap();
    assert_eq!(
        sonnet,
        Limit {
            claim: Some(Claim::SevenDaySonnet),
            resets: None
        }
    );
}

#[test]
fn garbage_and_other_errors_are_not_the_limit() {
    for text in [
        "",
        "API Error: Request rejected (429) · Budget exhausted for this key",
        "API Error: 429 rate limit exceeded",
        "You've hit your",
        "hit your 5-hour limit",
    ] {
        assert!(from_message(text, &now()).is_none(), "{text}");
    }
    // The limit with a reset that cannot be read: the limit, no reset.
    for text in [
        "You've hit your 5-hour limit · resets 25:99pm (UTC)",
        "You've hit your 5-hour limit · resets 8:25pm (Mars/Olympus)",
        "You've hit your 5-hour limit · resets whenever",
        "You've hit your 5-hour limit · resets 13pm (UTC)",
    ] {
        let limit = from_message(text, &now()).unwrap();
        assert_eq!(limit.resets, None, "{text}");
    }
}
