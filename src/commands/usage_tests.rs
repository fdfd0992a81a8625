use super::*;
use crate::headroom::store::Seen;
use crate::headroom::{Reported, Window};

fn date(text: &str) -> Date {
    text.parse().unwrap()
}

/// A fixed book: a key behind LiteLLM with a budget, one with an Anthropic window and tokens
/// on a few days, one never used.
fn book() -> Book {
    let mut book = Book::default();
    let mut primary = KeyFigures {
        reported: Some(Seen {
            at: "2026-12-01T09:58:00Z".parse().unwrap(),
            reported: Reported {
                spend: Some(4.02),
                max_budget: Some(5.0),
                windows: Vec::new(),
            },
        }),
        ..KeyFigures::default()
    };
    for (day, input, cache_read, requests) in [
        ("2026-11-18", 50_000, 0, 10),
        ("2026-11-25", 120_000, 880_000, 41),
        ("2026-11-30", 300_000, 1_700_000, 77),
        ("2026-12-01", 100_000, 1_100_000, 52),
        // Older than the chart: not shown, not in the total.
        ("2026-11-01", 9_000_000, 0, 900),
    ] {
        primary.days.insert(
            date(day),
            Tally {
                input,
                output: input / 10,
                cache_read,
                requests,
                ..Tally::default()
            },
        );
    }
    let mut fallback = KeyFigures {
        reported: Some(Seen {
            at: "2026-11-29T08:00:00Z".parse().unwrap(),
            reported: Reported {
                windows: vec![Window {
                    name: "tokens".into(),
                    limit: Some(400_000),
                    remaining: Some(12_000),
                    reset: None,
                }],
                ..Reported::default()
            },
        }),
        ..KeyFigures::default()
    };
    fallback.days.insert(
        date("2026-11-29"),
        Tally {
            input: 40_000,
            output: 2_000,
            requests: 3,
            failovers: 1,
            ..Tally::default()
        },
    );
    book.keys.insert("primary".into(), primary);
    book.keys.insert("fallback".into(), fallback);
    book
}

#[test]
fn the_chart_of_a_fixed_book() {
    let now: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
    let lines = chart(
        &book(),
        &["primary", "fallback", "spare"],
        date("2026-12-01"),
        now,
        false,
    );
    let text = lines.join("\n") + "\n";
    let want = include_str!("usage_snapshot.txt");
    assert_eq!(text, want, "the chart changed:\n{text}");
}

#[test]
fn the_json_has_every_day_for_every_key() {
    let value = to_json(&book(), &["primary", "spare"], date("2026-12-01"));
    assert_eq!(value["today"], "2026-12-01");
    let primary = &value["keys"][0];
    assert_eq!(primary["reported"]["spend"], 4.02);
    assert_eq!(primary["reported"]["max_budget"], 5.0);
    let days = primary["days"].as_array().unwrap();
    assert_eq!(days.len() as i64, DAYS);
    assert_eq!(days[0]["date"], "2026-11-18");
    assert_eq!(days[0]["input"], 50_000);
    assert_eq!(days[13]["tokens"], 100_000 + 10_000 + 1_100_000);
    assert_eq!(value["keys"][1]["reported"], Value::Null);
    assert_eq!(value["keys"][1]["days"][13]["requests"], 0);
}
