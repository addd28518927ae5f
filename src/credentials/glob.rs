//! Go's `path/filepath.Match`, as the kubelet applies it to each host label of a
//! credential key (`pkg/credentialprovider/keyring.go` `URLsMatch`, Kubernetes 1.3x):
//! `*` any run of characters, `?` one character, `[...]` a class (`^` negates, `a-z`
//! ranges, `\` escapes), `\c` the character c. A malformed pattern matches nothing, as
//! the kubelet treats Go's `ErrBadPattern`. Written by hand: the maintained Rust glob
//! crates use other syntaxes (`[!..]`, no `\` escapes). Characters, not bytes, as Go's
//! runes. Must not allocate per character or recurse without bound.

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Star,
    AnyChar,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Char(char),
}

/// A malformed pattern (Go's `ErrBadPattern`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadPattern;

/// True when `name` matches `pattern`; false too when the pattern is malformed.
pub(crate) fn go_match(pattern: &str, name: &str) -> bool {
    match compile(pattern) {
        Ok(tokens) => {
            let name: Vec<char> = name.chars().collect();
            matches(&tokens, &name)
        }
        Err(BadPattern) => false,
    }
}

fn compile(pattern: &str) -> Result<Vec<Token>, BadPattern> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (token, used) = match chars[i] {
            '*' => (Token::Star, 1),
            '?' => (Token::AnyChar, 1),
            '[' => {
                let (token, used) = class(&chars[i + 1..])?;
                (token, used + 1)
            }
            '\\' => (Token::Char(*chars.get(i + 1).ok_or(BadPattern)?), 2),
            c => (Token::Char(c), 1),
        };
        tokens.push(token);
        i += used;
    }
    Ok(tokens)
}

/// A class after its `[`: the token and how many characters it used (with the `]`).
fn class(chars: &[char]) -> Result<(Token, usize), BadPattern> {
    let negated = chars.first() == Some(&'^');
    let mut i = usize::from(negated);
    let mut ranges = Vec::new();
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            return Ok((Token::Class { negated, ranges }, i + 1));
        }
        let (lo, used) = class_char(&chars[i..])?;
        i += used;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            let (end, used) = class_char(&chars[i + 1..])?;
            hi = end;
            i += 1 + used;
        }
        ranges.push((lo, hi));
    }
}

/// One class character (Go's `getEsc`): `-` and `]` must be escaped.
fn class_char(chars: &[char]) -> Result<(char, usize), BadPattern> {
    match chars.first() {
        None | Some('-') | Some(']') => Err(BadPattern),
        Some('\\') => chars.get(1).map(|c| (*c, 2)).ok_or(BadPattern),
        Some(c) => Ok((*c, 1)),
    }
}

/// Matching with one backtrack point per `*` (the classic linear-space algorithm).
fn matches(tokens: &[Token], name: &[char]) -> bool {
    let (mut t, mut n) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match tokens.get(t) {
            Some(Token::Star) => {
                backtrack = Some((t, n));
                t += 1;
                continue;
            }
            Some(Token::AnyChar) => true,
            Some(Token::Char(c)) => *c == name[n],
            Some(Token::Class { negated, ranges }) => {
                ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&name[n])) != *negated
            }
            None => false,
        };
        if step {
            t += 1;
            n += 1;
        } else if let Some((star, at)) = backtrack {
            t = star + 1;
            n = at + 1;
            backtrack = Some((star, at + 1));
        } else {
            return false;
        }
    }
    tokens[t..].iter().all(|token| *token == Token::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's own table for `filepath.Match` (path/filepath/match_test.go), without the
    /// cases about separators (a host label has none).
    #[test]
    fn go_match_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*b*c*d*e*", "axbxcxdxe", true),
            ("a*b*c*d*e*", "axbxcxdxexxx", true),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("a[^a][^a][^a]b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "x", true),
            ("[\\-x]", "-", true),
            ("[\\-x]", "a", false),
            ("*x", "xxx", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(go_match(pattern, name), *expected, "{pattern:?} {name:?}");
        }
    }

    #[test]
    fn bad_patterns_match_nothing() {
        for pattern in [
            "[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[",
        ] {
            assert_eq!(compile(pattern), Err(BadPattern), "{pattern:?}");
            for name in ["a", "ab", "x", "-", "]", "z"] {
                assert!(!go_match(pattern, name), "{pattern:?} {name:?}");
            }
        }
    }

    #[test]
    fn many_stars_stay_linear() {
        let pattern = "*a".repeat(40) + "b";
        assert!(!go_match(&pattern, &"a".repeat(5000)));
    }
}
