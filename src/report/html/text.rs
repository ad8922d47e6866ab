//! Text as the page writes it: escaped, without terminal colour codes, cut to its end, and times and sizes
//! as the terminal's summary writes them.

/// HTML-escapes text for element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// JSON inside a `<script>` element: `</` could end it early, `<!--` could open a comment.
pub(crate) fn script_safe(json: &str) -> String {
    json.replace("</", "<\\/").replace("<!--", "<\\u0021--")
}

/// A test's output without terminal colour codes (a test may print them; a page cannot show them).
pub(crate) fn clean_output(output: &str) -> String {
    let mut clean = String::with_capacity(output.len());
    let mut chars = output.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameters and intermediates, then one final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
            continue;
        }
        clean.push(c);
    }
    clean.trim_end().to_owned()
}

/// The last `limit` bytes of `text` (whole lines where it can), saying what was cut.
pub(crate) fn tail(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut cut = text.len() - limit;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    if let Some(newline) = text[cut..].find('\n') {
        cut += newline + 1;
    }
    format!(
        "[… {} bytes cut: the whole output is in the --json file]\n{}",
        cut,
        &text[cut..]
    )
}

/// A time as the terminal shows it: `0.042s`, `12.3s`, `2m 05s`.
pub(crate) fn seconds(seconds: f64) -> String {
    let seconds = seconds.max(0.0);
    if seconds < 10.0 {
        format!("{seconds:.3}s")
    } else if seconds < 120.0 {
        format!("{seconds:.1}s")
    } else {
        let whole = seconds.round() as u64;
        format!("{}m {:02}s", whole / 60, whole % 60)
    }
}

pub(crate) fn bytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    #[test]
    fn text_is_escaped_and_script_data_cannot_end_its_element() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        let data = json!({ "out": "</script><!-- x" }).to_string();
        let safe = script_safe(&data);
        assert!(!safe.contains("</") && !safe.contains("<!--"), "{safe}");
        let back: Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["out"], "</script><!-- x");
    }

    #[test]
    fn outputs_lose_colour_codes_and_keep_their_end() {
        assert_eq!(
            clean_output("\u{1b}[1;31mred\u{1b}[0m text\n\n"),
            "red text"
        );
        let long = (0..100).map(|n| format!("line {n}\n")).collect::<String>();
        let kept = tail(&long, 40);
        assert!(kept.starts_with("[… "), "{kept}");
        assert!(kept.ends_with("line 99\n"), "{kept}");
        assert!(
            kept.lines().nth(1).unwrap().starts_with("line 9"),
            "whole lines: {kept}"
        );
        assert_eq!(tail("short", 40), "short");
        // Never in the middle of a character.
        assert!(tail(&"é".repeat(50), 41).ends_with('é'));
    }

    #[test]
    fn times_and_sizes_read_as_the_terminal_writes_them() {
        assert_eq!(seconds(0.0421), "0.042s");
        assert_eq!(seconds(12.34), "12.3s");
        assert_eq!(seconds(125.0), "2m 05s");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }
}
