//! A small XML writer for Open311 answers: the same `serde_json::Value` the JSON format sends,
//! written with the spec's element names (`<services><service>…`, `<service_requests><request>…`,
//! `<errors><error>…`). Text is escaped; characters XML 1.0 cannot carry are dropped.

use serde_json::Value;

/// The element name of one item of a list element.
fn item_name(list: &str) -> &'static str {
    match list {
        "services" => "service",
        "service_requests" => "request",
        "attributes" => "attribute",
        "values" => "value",
        "endpoints" => "endpoint",
        "formats" => "format",
        "errors" => "error",
        "service_request_updates" => "request_update",
        _ => "item",
    }
}

/// Escape text for element content and attribute values.
pub fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 allows only these below U+0020, and no U+FFFE / U+FFFF.
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

fn element(name: &str, v: &Value, out: &mut String) {
    match v {
        Value::Null => {
            out.push('<');
            out.push_str(name);
            out.push_str("/>");
        }
        Value::Array(items) => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            let item = item_name(name);
            for i in items {
                element(item, i, out);
            }
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
        Value::Object(fields) => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            for (k, v) in fields {
                element(k, v, out);
            }
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
        Value::String(s) => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            escape(s, out);
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
        Value::Bool(_) | Value::Number(_) => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            out.push_str(&v.to_string());
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
    }
}

/// A whole document: `root` wraps the value (a list's items are named after the root).
pub fn document(root: &str, v: &Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    element(root, v, &mut out);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_are_named_after_the_spec() {
        let x = document(
            "services",
            &json!([{ "service_code": "water", "metadata": true }]),
        );
        assert_eq!(
            x,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<services><service><metadata>true</metadata><service_code>water</service_code></service></services>\n"
        );
        let x = document("errors", &json!([{ "code": 400, "description": "x" }]));
        assert!(x.contains(
            "<errors><error><code>400</code><description>x</description></error></errors>"
        ));
    }

    #[test]
    fn text_is_escaped_and_illegal_characters_dropped() {
        let x = document(
            "service_requests",
            &json!([{ "description": "a<b & \"c\" 'd'\u{1}\u{7} 漏水", "media_url": null }]),
        );
        assert!(
            x.contains("<description>a&lt;b &amp; &quot;c&quot; &apos;d&apos; 漏水</description>")
        );
        assert!(x.contains("<media_url/>"));
        assert!(x.contains("<service_requests><request>"));
    }
}
