//! A key's headroom from a real LiteLLM (1.108.7, tests/common/litellm.rs): its
//! `x-litellm-key-spend` and `x-litellm-key-max-budget` on each answer reach `list`, `status`
//! and `keyswitch usage` through the proxy, with the tokens of the stand-in's `usage` (JSON
//! and streamed). Skipped
//! (with the reason printed) without `KEYSWITCH_LITELLM_BIN`, except under CI.

mod common;

use common::litellm::{BudgetStatus, MODEL, fallback_key, shared};
use common::proxy_box::ProxyBox;
use serde_json::{Value, json};

#[test]
fn litellm_spend_and_budget_show_in_list_and_the_status_line() {
    let Some(gw) = shared(BudgetStatus::Default) else {
        return;
    };
    let p = ProxyBox::installed_with_secrets(
        &gw.url(),
        &[
            ("primary", "sk-litellm-headroom-list", &[]),
            ("fallback", &fallback_key("headroom"), &[]),
        ],
        &[],
    );
    let token = p.token();
    let body =
        json!({"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..2 {
        let answer = p.send(&token, body.to_string().as_bytes());
        assert_eq!(answer.status, 200, "{}", answer.text());
        // What LiteLLM said, as it said it: the key's spend with this request's cost.
        let spend: f64 = answer.headers["x-litellm-key-spend"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((4.02..4.03).contains(&spend), "{spend}");
    }
    // A streamed answer: LiteLLM re-streams the stand-in's events, usage and all.
    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let answer = p.send(&token, stream.to_string().as_bytes());
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(answer.text().contains("message_delta"), "{}", answer.text());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let row = loop {
        let row = p.s.list_json()[0].clone();
        if row["headroom"]["today"]["requests"] == 3 {
            break row;
        }
        assert!(std::time::Instant::now() < deadline, "{row:#}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let reported = &row["headroom"]["reported"];
    assert_eq!(reported["max_budget"], 5.0);
    let spend = reported["spend"].as_f64().unwrap();
    assert!((4.02..4.03).contains(&spend), "{reported}");
    // The stand-in's usage (1000 in, 100 out a reply) came through LiteLLM to the tally, the
    // streamed reply's too.
    assert_eq!(row["headroom"]["today"]["input"], 3000, "{row:#}");
    assert_eq!(row["headroom"]["today"]["output"], 300, "{row:#}");

    let out = p.s.cmd().arg("list").output().unwrap();
    let list = String::from_utf8(out.stdout).unwrap();
    let line = list.lines().find(|l| l.contains("primary")).unwrap();
    assert!(
        line.ends_with("████████░░ $4.02 of $5.00 · 3.3k tokens today"),
        "{list}"
    );
    let out = p.s.cmd().arg("status").output().unwrap();
    let status = String::from_utf8(out.stdout).unwrap();
    assert!(status.contains("$4.02/$5.00, 3.3k tok today"), "{status}");
    let out = p.s.cmd().args(["usage", "--json"]).output().unwrap();
    let usage: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(usage["keys"][0]["days"][13]["requests"], 3);
}
