//! The lexer: quoting, escapes, continuation, comments, lines.

use super::*;

fn words(text: &str) -> Vec<Vec<String>> {
    let (stmts, errs) = lex(text);
    assert!(errs.is_empty(), "{text:?}: {errs:?}");
    stmts
        .iter()
        .map(|s| s.words.iter().map(|w| w.text.clone()).collect())
        .collect()
}

fn one(text: &str) -> Vec<String> {
    let mut all = words(text);
    assert_eq!(all.len(), 1, "{text:?}");
    all.remove(0)
}

#[test]
fn words_statements_and_lines() {
    let (stmts, _) = lex("global\n    maxconn 100\n\n  frontend  web\t# a comment\n");
    let lines: Vec<u32> = stmts.iter().map(|s| s.line).collect();
    assert_eq!(lines, [1, 2, 4]);
    assert_eq!(stmts[2].arg(0), Some("frontend"));
    assert_eq!(stmts[2].arg(1), Some("web"));
    assert_eq!(stmts[2].words.len(), 2);
}

#[test]
fn comments() {
    assert!(words("# only a comment\n   # another\n").is_empty());
    assert_eq!(one("a b#c d"), ["a", "b"]);
    assert_eq!(one("a \"b#c\" 'd#e' f\\#g"), ["a", "b#c", "d#e", "f#g"]);
}

#[test]
fn double_quotes_group_and_escape() {
    assert_eq!(one(r#"a "b c" d"#), ["a", "b c", "d"]);
    assert_eq!(one(r#"a "x\"y\\z""#), ["a", "x\"y\\z"]);
    assert_eq!(one(r#""" x"#), ["", "x"], "an empty word");
    assert_eq!(one(r#"pre"mid"post"#), ["premidpost"]);
    assert_eq!(one(r#""\t\n\r\x41""#), ["\t\n\rA"]);
}

#[test]
fn single_quotes_are_literal() {
    assert_eq!(one(r"a 'b \\ c' d"), ["a", r"b \\ c", "d"]);
    assert_eq!(one(r#"'say "hi"'"#), [r#"say "hi""#]);
    assert_eq!(one("'${HOME}'"), ["${HOME}"]);
}

#[test]
fn backslash_outside_quotes() {
    assert_eq!(one(r"a\ b c"), ["a b", "c"]);
    assert_eq!(one(r"\\ \' \$x"), ["\\", "'", "$x"]);
    assert_eq!(
        one(r"^/img/.*\.png$"),
        [r"^/img/.*\.png$"],
        "kept before other characters"
    );
}

#[test]
fn continuation_joins_lines_and_keeps_the_first_line() {
    let (stmts, errs) = lex("a\nserver s1 127.0.0.1:1 \\\n    check \\\r\n  inter 2s\nb\n");
    assert!(errs.is_empty(), "{errs:?}");
    let texts: Vec<&str> = stmts[1].words.iter().map(|w| w.text.as_str()).collect();
    assert_eq!(
        texts,
        ["server", "s1", "127.0.0.1:1", "check", "inter", "2s"]
    );
    assert_eq!(stmts[1].line, 2);
    assert_eq!(stmts[2].line, 5, "lines after it keep their numbers");
    assert_eq!(one("a\\"), ["a"], "at the end of the text");
}

#[test]
fn raw_text_keeps_quotes() {
    let (stmts, _) = lex(r#"acl a hdr(host) -i "x y" 'z'"#);
    assert_eq!(stmts[0].raw_from(2), r#"hdr(host) -i "x y" 'z'"#);
}

#[test]
fn mistakes_have_lines() {
    let (_, errs) = lex("a\nb \"open\nc 'open\nd \\x4\ne \"${HOME}\"\n");
    let lines: Vec<Option<u32>> = errs.iter().map(|e| e.line).collect();
    assert_eq!(lines, [Some(2), Some(3), Some(4), Some(5)], "{errs:?}");
    assert!(errs[0].message.contains("unterminated double quote"));
    assert!(errs[1].message.contains("unterminated single quote"));
    assert!(errs[2].message.contains("\\x"));
    assert!(errs[3].message.contains("environment variable"));
}

#[test]
fn never_panics_on_odd_input() {
    for t in [
        "\\",
        "\"",
        "'",
        "\\x",
        "\\x4",
        "\"\\",
        "#",
        "\r\n\\\r",
        "é\\xé",
        "\0\"\\\n'",
    ] {
        let _ = lex(t);
    }
}
