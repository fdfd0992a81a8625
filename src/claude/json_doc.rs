//! A JSON document that keeps what keyswitch does not change exactly as written.
//!
//! Claude Code parses its settings with JavaScript's `JSON.parse`, which accepts numbers beyond
//! any Rust type (`1e400`, 30-digit integers) and strings with lone UTF-16 surrogates
//! (`"\ud800"`). A serde_json `Value` cannot hold those, and re-encoding a whole file would also
//! rewrite every number and escape. So the file is kept as a tree of source spans: keyswitch
//! reads and edits a `Value` *view* of it, and only the parts whose view changed are written
//! anew; every untouched member, element or subtree is copied byte-for-byte.
//!
//! Syntax is checked by serde_json first (it skips over surrogates and number ranges when it
//! only has to validate), so errors keep its line and column; the scanner below then only ever
//! sees valid JSON.

use serde_json::{Map, Value};

/// One value of the document and the exact text it came from.
#[derive(Debug, Clone)]
pub struct Node {
    raw: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// Members in file order: the key as written (with its quotes) and its value.
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    /// A string, number, `true`, `false` or `null`.
    Scalar,
}

impl Node {
    /// Parses a document; `Err` carries serde_json's message with line and column.
    pub fn parse(text: &str) -> Result<Node, serde_json::Error> {
        serde_json::from_str::<serde::de::IgnoredAny>(text)?;
        let mut scanner = Scanner { text, pos: 0 };
        Ok(scanner.value())
    }

    /// The value as serde_json sees it. Scalars it cannot represent (`1e400`, a lone
    /// surrogate) appear as a string holding [`RAW_MARK`] and their source text: never equal
    /// to anything keyswitch writes, and written back exactly as they were wherever they go
    /// (an `apiKeyHelper` put back on uninstall, say).
    pub fn view(&self) -> Value {
        match &self.kind {
            Kind::Object(members) => {
                let mut map = Map::new();
                for (key, node) in members {
                    map.insert(decode_key(key), node.view());
                }
                Value::Object(map)
            }
            Kind::Array(items) => Value::Array(items.iter().map(Node::view).collect()),
            Kind::Scalar => {
                serde_json::from_str(&self.raw).unwrap_or_else(|_| Value::String(marked(&self.raw)))
            }
        }
    }

    /// The text of `new`, which was edited from this node's view `old`: untouched parts are
    /// this node's own text, changed containers are laid out like Claude Code writes them
    /// (two-space indentation) at `depth`.
    pub fn render_edit(&self, old: &Value, new: &Value, depth: usize) -> String {
        if old == new {
            return self.raw.clone();
        }
        match (&self.kind, old, new) {
            (Kind::Object(members), Value::Object(old_map), Value::Object(new_map)) => {
                let mut out: Vec<(String, String)> = Vec::new();
                let mut kept = std::collections::HashSet::new();
                for (key, node) in members {
                    let name = decode_key(key);
                    let (Some(old_child), Some(new_child)) =
                        (old_map.get(&name), new_map.get(&name))
                    else {
                        continue;
                    };
                    kept.insert(name);
                    out.push((
                        key.clone(),
                        node.render_edit(old_child, new_child, depth + 1),
                    ));
                }
                for (name, value) in new_map {
                    if !kept.contains(name) {
                        out.push((
                            encode(&Value::String(name.clone())),
                            fresh(value, depth + 1),
                        ));
                    }
                }
                layout_object(&out, depth)
            }
            (Kind::Array(items), Value::Array(old_items), Value::Array(new_items)) => {
                // Each element that is still there, unchanged, keeps its text.
                let mut used = vec![false; items.len()];
                let out: Vec<String> = new_items
                    .iter()
                    .map(|value| {
                        let reuse = (0..items.len().min(old_items.len()))
                            .find(|&i| !used[i] && &old_items[i] == value);
                        match reuse {
                            Some(i) => {
                                used[i] = true;
                                items[i].raw.clone()
                            }
                            None => fresh(value, depth + 1),
                        }
                    })
                    .collect();
                layout_array(&out, depth)
            }
            _ => fresh(new, depth),
        }
    }
}

/// A value keyswitch wrote, laid out at `depth`.
pub fn fresh(value: &Value, depth: usize) -> String {
    match value {
        Value::Object(map) => {
            let members: Vec<(String, String)> = map
                .iter()
                .map(|(k, v)| (encode(&Value::String(k.clone())), fresh(v, depth + 1)))
                .collect();
            layout_object(&members, depth)
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|v| fresh(v, depth + 1)).collect();
            layout_array(&items, depth)
        }
        scalar => encode(scalar),
    }
}

/// Marks, in a view, a scalar or key serde_json cannot decode; what follows is its source text.
/// (A settings string cannot start with a NUL character unless escaped, and then decodes.)
pub const RAW_MARK: &str = "\u{0}keyswitch-raw:";

fn marked(raw: &str) -> String {
    format!("{RAW_MARK}{raw}")
}

fn encode(value: &Value) -> String {
    if let Value::String(text) = value
        && let Some(raw) = text.strip_prefix(RAW_MARK)
    {
        return raw.to_string();
    }
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

fn indent(depth: usize) -> String {
    "  ".repeat(depth)
}

fn layout_object(members: &[(String, String)], depth: usize) -> String {
    if members.is_empty() {
        return "{}".to_string();
    }
    let inner = indent(depth + 1);
    let body: Vec<String> = members
        .iter()
        .map(|(key, value)| format!("{inner}{key}: {value}"))
        .collect();
    format!("{{\n{}\n{}}}", body.join(",\n"), indent(depth))
}

fn layout_array(items: &[String], depth: usize) -> String {
    if items.is_empty() {
        return "[]".to_string();
    }
    let inner = indent(depth + 1);
    let body: Vec<String> = items.iter().map(|item| format!("{inner}{item}")).collect();
    format!("[\n{}\n{}]", body.join(",\n"), indent(depth))
}

/// A key as keyswitch compares it; one serde_json cannot decode keeps its source text.
fn decode_key(raw: &str) -> String {
    serde_json::from_str(raw).unwrap_or_else(|_| marked(raw))
}

/// Walks text that serde_json has already validated, recording the span of every value.
struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> u8 {
        self.text.as_bytes().get(self.pos).copied().unwrap_or(b'\0')
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Node {
        self.skip_ws();
        let start = self.pos;
        let kind = match self.peek() {
            b'{' => {
                self.pos += 1;
                let mut members = Vec::new();
                loop {
                    self.skip_ws();
                    match self.peek() {
                        b'}' | b'\0' => break,
                        b',' => self.pos += 1,
                        _ => {
                            let key_start = self.pos;
                            self.string();
                            let key = self.text[key_start..self.pos].to_string();
                            self.skip_ws();
                            self.pos += 1; // ':'
                            members.push((key, self.value()));
                        }
                    }
                }
                self.pos += 1;
                Kind::Object(members)
            }
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    match self.peek() {
                        b']' | b'\0' => break,
                        b',' => self.pos += 1,
                        _ => items.push(self.value()),
                    }
                }
                self.pos += 1;
                Kind::Array(items)
            }
            b'"' => {
                self.string();
                Kind::Scalar
            }
            _ => {
                while !matches!(
                    self.peek(),
                    b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' | b'\0'
                ) {
                    self.pos += 1;
                }
                Kind::Scalar
            }
        };
        let end = self.pos.min(self.text.len());
        Node {
            raw: self.text[start..end].to_string(),
            kind,
        }
    }

    /// Moves past a string literal, opening quote included.
    fn string(&mut self) {
        self.pos += 1;
        while self.pos < self.text.len() {
            match self.peek() {
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    return;
                }
                _ => self.pos += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn edit(text: &str, change: impl FnOnce(&mut Value)) -> String {
        let node = Node::parse(text).unwrap();
        let old = node.view();
        let mut new = old.clone();
        change(&mut new);
        node.render_edit(&old, &new, 0)
    }

    #[test]
    fn untouched_parts_keep_their_exact_text() {
        let text = r#"{"big": 123456789012345678901234567890, "huge": 1e400, "f": 1.50,
 "lone": "\ud800", "esc": "caf\u00e9", "nested": {"a" : [1,2]}}"#;
        let out = edit(text, |v| {
            v["apiKeyHelper"] = json!("/bin/keyswitch get");
        });
        for part in [
            "123456789012345678901234567890",
            "1e400",
            "1.50",
            r#""\ud800""#,
            r#""caf\u00e9""#,
            r#"{"a" : [1,2]}"#,
        ] {
            assert!(out.contains(part), "{part} lost in {out}");
        }
        assert!(out.ends_with("  \"apiKeyHelper\": \"/bin/keyswitch get\"\n}"));
    }

    #[test]
    fn a_value_serde_json_cannot_hold_moves_intact() {
        let text = r#"{"h": "my\ud800helper", "n": 1e400}"#;
        let out = edit(text, |v| {
            let map = v.as_object_mut().unwrap();
            let h = map.shift_remove("h").unwrap();
            let n = map.shift_remove("n").unwrap();
            map.insert("moved".into(), json!({"h": h, "n": n}));
        });
        assert!(out.contains(r#""h": "my\ud800helper""#), "{out}");
        assert!(out.contains(r#""n": 1e400"#), "{out}");
    }

    #[test]
    fn removing_a_member_keeps_the_order_of_the_others() {
        let text = "{\n  \"A\": 1,\n  \"k\": 2,\n  \"B\": 3,\n  \"C\": 4\n}";
        let out = edit(text, |v| {
            v.as_object_mut().unwrap().shift_remove("k");
        });
        assert_eq!(out, "{\n  \"A\": 1,\n  \"B\": 3,\n  \"C\": 4\n}");
    }

    #[test]
    fn a_document_written_like_claude_code_round_trips_byte_for_byte() {
        let value =
            json!({"env": {"X": "1"}, "hooks": {"Stop": [{"matcher": "", "hooks": []}]}, "e": {}});
        let text = serde_json::to_string_pretty(&value).unwrap();
        let out = edit(&text, |v| {
            v["env"]["Y"] = json!("2");
        });
        let mut expected = value.clone();
        expected["env"]["Y"] = json!("2");
        assert_eq!(out, serde_json::to_string_pretty(&expected).unwrap());
    }

    #[test]
    fn invalid_json_is_refused_with_a_position() {
        let err = Node::parse("{\n  \"a\": 1,\n}").unwrap_err();
        assert_eq!(err.line(), 3);
    }
}
