//! Text wasmig did not write, shown as data: what a guest logs or prints, what it returns
//! as an error, and what the server says in an error. Such text may hold terminal escape
//! sequences, carriage returns or newlines that forge lines of wasmig's own output
//! ("applied 3 revision(s)"), bidirectional overrides that reorder what a reader sees, or
//! megabytes in one line. [`shown`] makes it one bounded line of visible characters.
//!
//! Not here: wasmig's own messages (which may span lines on purpose).

/// The most characters of one piece of untrusted text that wasmig prints or stores.
pub const MAX_CHARS: usize = 4096;

/// `text` as one line of at most [`MAX_CHARS`] visible characters: control characters
/// (newlines included) and Unicode bidirectional controls are escaped as Rust escapes
/// (`\n`, `\u{1b}`), and the rest is cut with a marker saying how much was left out.
pub fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_CHARS) + 32);
    for (count, (at, c)) in text.char_indices().enumerate() {
        if count == MAX_CHARS {
            out.push_str(&format!("… [{} more bytes not shown]", text.len() - at));
            break;
        }
        if c == '\t' {
            out.push(c);
        } else if c.is_control() || is_bidi_control(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The Unicode characters that reorder displayed text (CVE-2021-42574, "Trojan Source").
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_lines_and_escape_sequences_are_shown_as_data() {
        assert_eq!(shown("plain text"), "plain text");
        assert_eq!(
            shown("done\napplied 3 revision(s)"),
            "done\\napplied 3 revision(s)"
        );
        assert_eq!(shown("\u{1b}[2K\rok"), "\\u{1b}[2K\\rok");
        assert_eq!(shown("a\u{202E}b"), "a\\u{202e}b");
        assert_eq!(shown("tab\tkept"), "tab\tkept");
    }

    #[test]
    fn long_text_is_cut_with_a_marker() {
        let long = "x".repeat(MAX_CHARS + 10);
        let cut = shown(&long);
        assert!(cut.starts_with(&"x".repeat(MAX_CHARS)));
        assert!(cut.ends_with("… [10 more bytes not shown]"), "{cut}");
    }
}
