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

    mod properties {
        use super::super::*;
        use proptest::prelude::*;
        use std::collections::HashSet;

        /// Whitespace as people and tools write it between tokens.
        fn ws() -> impl Strategy<Value = &'static str> {
            prop::sample::select(vec![
                "", " ", "  ", "\n", "\n  ", "\n    ", "\t", "\r\n", " \n\t ",
            ])
        }

        /// A scalar's source text, including what serde_json cannot hold (`1e400`, a lone
        /// surrogate) and spellings it would write otherwise (`1.50`, `\u00e9`).
        fn scalar() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "null",
                    "true",
                    "false",
                    "0",
                    "-0.0",
                    "1.50",
                    "1e5",
                    "2E-3",
                    "1e400",
                    "123456789012345678901234567890",
                    r#""caf\u00e9""#,
                    r#""\ud800""#,
                    r#""a\nb""#,
                    r#""\"q\"""#,
                    r#""\/""#,
                    r#""""#,
                ])
                .prop_map(str::to_string),
                any::<i64>().prop_map(|n| n.to_string()),
                "[a-zA-Z0-9 _./:-]{0,10}".prop_map(|t| serde_json::to_string(&t).unwrap()),
            ]
        }

        /// A JSON value's text with varied whitespace; object keys are unique.
        fn value_text() -> impl Strategy<Value = String> {
            scalar().prop_recursive(4, 48, 5, |inner| {
                let member = ("[a-zA-Z_]{1,6}", ws(), ws(), inner.clone(), ws());
                prop_oneof![
                    (ws(), prop::collection::vec(member, 0..5)).prop_map(|(open, members)| {
                        let mut seen = HashSet::new();
                        let body: Vec<String> = members
                            .into_iter()
                            .filter(|(k, ..)| seen.insert(k.clone()))
                            .map(|(k, a, b, v, c)| format!("{a}\"{k}\"{b}:{c}{v}{a}"))
                            .collect();
                        format!("{{{open}{}}}", body.join(","))
                    }),
                    (ws(), prop::collection::vec((ws(), inner, ws()), 0..5)).prop_map(
                        |(open, items)| {
                            let body: Vec<String> = items
                                .into_iter()
                                .map(|(a, v, b)| format!("{a}{v}{b}"))
                                .collect();
                            format!("[{open}{}]", body.join(","))
                        }
                    ),
                ]
            })
        }

        /// A settings-like document: an object at the top.
        fn document() -> impl Strategy<Value = String> {
            (
                prop::collection::vec(("[a-zA-Z_]{1,6}", ws(), value_text(), ws()), 0..6),
                ws(),
            )
                .prop_map(|(members, open)| {
                    let mut seen = HashSet::new();
                    let body: Vec<String> = members
                        .into_iter()
                        .filter(|(k, ..)| seen.insert(k.clone()))
                        .map(|(k, a, v, b)| format!("{a}\"{k}\":{b}{v}{a}"))
                        .collect();
                    format!("{{{open}{}}}", body.join(","))
                })
        }

        /// A value keyswitch could write.
        fn new_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i32>().prop_map(Value::from),
                "[a-z /.-]{0,8}".prop_map(Value::String),
            ];
            leaf.prop_recursive(3, 16, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::vec(("[a-z]{1,4}", inner), 0..4)
                        .prop_map(|members| Value::Object(members.into_iter().collect())),
                ]
            })
        }

        #[derive(Debug, Clone)]
        enum Edit {
            /// Sets a member, at the top or in the first object-valued member.
            Set {
                key: String,
                value: Value,
                nested: bool,
            },
            Remove {
                index: usize,
                nested: bool,
            },
            /// Appends to the first array-valued member.
            Push(Value),
        }

        fn edit() -> impl Strategy<Value = Edit> {
            prop_oneof![
                ("[a-zA-Z_]{1,6}", new_value(), any::<bool>())
                    .prop_map(|(key, value, nested)| Edit::Set { key, value, nested }),
                (any::<usize>(), any::<bool>())
                    .prop_map(|(index, nested)| Edit::Remove { index, nested }),
                new_value().prop_map(Edit::Push),
            ]
        }

        fn target(root: &mut Map<String, Value>, nested: bool) -> &mut Map<String, Value> {
            let first_object = root.values().position(Value::is_object);
            match first_object {
                Some(i) if nested => root
                    .values_mut()
                    .nth(i)
                    .and_then(Value::as_object_mut)
                    .unwrap(),
                _ => root,
            }
        }

        fn apply(value: &mut Value, edit: Edit) {
            let root = value.as_object_mut().unwrap();
            match edit {
                Edit::Set { key, value, nested } => {
                    target(root, nested).insert(key, value);
                }
                Edit::Remove { index, nested } => {
                    let map = target(root, nested);
                    if let Some(key) = map.keys().nth(index % map.len().max(1)).cloned() {
                        map.shift_remove(&key);
                    }
                }
                Edit::Push(value) => {
                    if let Some(items) = root.values_mut().find_map(Value::as_array_mut) {
                        items.push(value);
                    }
                }
            }
        }

        /// `new` in the order an edit writes it: a member `old` has too stays where the text
        /// has it (rewritten in place if its value changed), so removing a member and setting
        /// it again leaves it where it was written; new members follow, in their order.
        fn in_written_order(old: &Value, new: &Value) -> Value {
            let (Value::Object(old), Value::Object(new)) = (old, new) else {
                return new.clone();
            };
            let mut ordered = Map::new();
            let kept = old.iter().filter(|(key, _)| new.contains_key(*key));
            for (key, before) in kept {
                ordered.insert(key.clone(), in_written_order(before, &new[key]));
            }
            for (key, value) in new {
                if !old.contains_key(key) {
                    ordered.insert(key.clone(), value.clone());
                }
            }
            ordered.into()
        }

        proptest! {
            #[test]
            fn an_untouched_document_renders_as_written(text in document()) {
                let node = Node::parse(&text).unwrap();
                let view = node.view();
                prop_assert_eq!(node.render_edit(&view, &view, 0), text);
            }

            #[test]
            fn an_edit_then_a_parse_gives_the_edit(
                text in document(),
                edits in prop::collection::vec(edit(), 1..4),
            ) {
                let node = Node::parse(&text).unwrap();
                let old = node.view();
                let mut new = old.clone();
                for e in edits {
                    apply(&mut new, e);
                }
                let rendered = node.render_edit(&old, &new, 0);
                let again = Node::parse(&rendered)
                    .unwrap_or_else(|e| panic!("{e}: not JSON:\n{rendered}"))
                    .view();
                // Order too: `Map`'s equality ignores it.
                prop_assert_eq!(
                    serde_json::to_string(&again).unwrap(),
                    serde_json::to_string(&in_written_order(&old, &new)).unwrap()
                );
            }
        }
    }
}
