//! Text that reaches terminals, logs and worker command lines: what may not be in it and how
//! to show it safely.
//!
//! A prompt or a TODO may not contain C0 control characters other than `\n` and `\t` (a NUL
//! cannot even be passed to a worker; ESC sequences rewrite a terminal), DEL, C1 controls, or the
//! bidirectional overrides and isolates U+202A–U+202E, U+2066–U+2069 (text that reads differently
//! than it is stored). Requests carrying them are refused, naming the character and its
//! position; text from the model is [`neutralise`]d; the CLI shows everything through
//! [`escape_for_terminal`].

use std::borrow::Cow;

/// Characters that must not be stored or printed raw.
pub fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c)
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `Err(why)` naming the first unsafe character of `text` (`field` says whose it is).
pub fn check(field: &str, text: &str) -> Result<(), String> {
    match text.chars().enumerate().find(|(_, c)| is_unsafe(*c)) {
        None => Ok(()),
        Some((at, c)) => Err(format!(
            "{field} contains {} at character {at}: control characters (other than newline and tab) and bidirectional overrides are not allowed",
            describe(c)
        )),
    }
}

fn describe(c: char) -> String {
    let kind = if is_bidi_control(c) {
        "a bidirectional override"
    } else if c == '\0' {
        "a NUL"
    } else if c == '\u{1b}' {
        "an escape (ESC)"
    } else {
        "a control character"
    };
    format!("{kind} (U+{:04X})", c as u32)
}

/// `text` with every unsafe character replaced by U+FFFD.
pub fn neutralise(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| if is_unsafe(c) { '\u{FFFD}' } else { c })
            .collect(),
    )
}

/// `text` as it may be printed: unsafe characters become visible escapes (`\u001B`), which are
/// also valid JSON escapes of the same character (all unsafe characters are below U+10000).
pub fn escape_for_terminal(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            out.push_str(&format!("\\u{:04X}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_are_named_and_neutralised() {
        assert!(check("prompt", "plan a trip\n\twith tabs ✓ — ünïcode").is_ok());
        for (text, named) in [
            ("a\0b", "NUL (U+0000)"),
            ("\u{1b}[2Jx", "escape (ESC) (U+001B)"),
            ("a\rb", "control character (U+000D)"),
            ("x\u{202E}cod.exe", "bidirectional override (U+202E)"),
            ("\u{2066}", "U+2066"),
            ("\u{9b}", "U+009B"),
        ] {
            let e = check("prompt", text).unwrap_err();
            assert!(e.starts_with("prompt contains") && e.contains(named), "{e}");
        }
        assert_eq!(neutralise("a\u{1b}b\u{202E}c\n"), "a\u{FFFD}b\u{FFFD}c\n");
        assert!(matches!(neutralise("fine"), Cow::Borrowed(_)));
        assert_eq!(escape_for_terminal("a\u{1b}[31m\0"), "a\\u001B[31m\\u0000");
        let json = serde_json::to_string(&serde_json::json!({"t": "x\u{202E}y\u{7f}"})).unwrap();
        let shown = escape_for_terminal(&json);
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(
            back["t"], "x\u{202E}y\u{7f}",
            "escaped JSON stays valid and faithful"
        );
    }
}
