//! The statements the gateway reads in what a client sends: the two with which sqlx's test support makes
//! and removes each test's database (answered by the pool), and any statement that needs a database
//! without sessions on it (dropping, renaming or copying it), before which the gateway closes the idle
//! sessions it keeps there. Written by hand: a full SQL parser would be far more than these few
//! statements need, and anything misread only costs a kept session.

/// sqlx names every test database with this prefix (`_sqlx_test_<n>` in 0.7, `_sqlx_test_<hash>` in 0.8).
pub(crate) const SQLX_TEST_PREFIX: &str = "_sqlx_test";

/// A statement with which sqlx's `#[sqlx::test]` support makes or removes a test's database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TestStatement {
    /// `create database "_sqlx_test_…"`
    Create(String),
    /// `drop database if exists "_sqlx_test_…";`
    DropIfExists(String),
}

/// Recognises sqlx's own statements (keywords in any case, any spacing, an optional `;`) for databases
/// named as sqlx names them; anything else, `None`.
pub(crate) fn recognise(sql: &str) -> Option<TestStatement> {
    let sql = sql.trim().strip_suffix(';').unwrap_or(sql.trim());
    let words: Vec<&str> = sql.split_whitespace().collect();
    let keywords = |expected: &[&str]| {
        words.len() == expected.len() + 1
            && words
                .iter()
                .zip(expected)
                .all(|(word, keyword)| word.eq_ignore_ascii_case(keyword))
    };
    let name = sqlx_test_name(words.last()?)?;
    if keywords(&["create", "database"]) {
        Some(TestStatement::Create(name))
    } else if keywords(&["drop", "database", "if", "exists"]) {
        Some(TestStatement::DropIfExists(name))
    } else {
        None
    }
}

/// `"_sqlx_test_…"` (quoted, plain characters only) → the name inside the quotes.
fn sqlx_test_name(word: &str) -> Option<String> {
    let name = word.strip_prefix('"')?.strip_suffix('"')?;
    let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    (plain && name.starts_with(SQLX_TEST_PREFIX) && name.len() <= 63).then(|| name.to_owned())
}

/// The databases a statement (or several, `;`-separated) needs free of other sessions: the one dropped
/// (`DROP DATABASE`), altered (`ALTER DATABASE … RENAME`, `SET TABLESPACE`, …) or copied (`CREATE
/// DATABASE … TEMPLATE`, template1 when none is named). Identifiers fold as PostgreSQL folds them.
pub(crate) fn databases_named(sql: &str) -> Vec<String> {
    let mentions_database = sql
        .as_bytes()
        .windows(8)
        .any(|window| window.eq_ignore_ascii_case(b"database"));
    if !mentions_database {
        return Vec::new();
    }
    let tokens = tokens(sql);
    let mut named = Vec::new();
    for statement in tokens.split(|token| *token == Token::Semicolon) {
        if let Some(name) = database_of(statement) {
            if !named.contains(&name) {
                named.push(name);
            }
        }
    }
    named
}

/// The database one statement needs free, if it is one that does.
fn database_of(statement: &[Token]) -> Option<String> {
    let word = |at: usize, keyword: &str| matches!(statement.get(at), Some(Token::Word(word)) if word == keyword);
    let name = |at: usize| match statement.get(at) {
        Some(Token::Word(name) | Token::Quoted(name)) => Some(name.clone()),
        _ => None,
    };
    if !word(1, "database") {
        return None;
    }
    if word(0, "drop") {
        let at = if word(2, "if") && word(3, "exists") {
            4
        } else {
            2
        };
        name(at)
    } else if word(0, "alter") {
        name(2)
    } else if word(0, "create") {
        let template = (3..statement.len()).find(|&at| word(at, "template"));
        let Some(at) = template else {
            return Some("template1".to_owned());
        };
        let at = if statement.get(at + 1) == Some(&Token::Equals) {
            at + 2
        } else {
            at + 1
        };
        name(at)
    } else {
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An unquoted word, folded to lower case.
    Word(String),
    /// A double-quoted identifier, as written inside the quotes.
    Quoted(String),
    Semicolon,
    Equals,
    /// Anything else (punctuation, numbers, string literals).
    Other,
}

/// Splits SQL into tokens, past comments, string literals and dollar quotes.
fn tokens(sql: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = sql.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let rest = &sql[at..];
        let skip_to = |end: usize| sql.len().min(at + end);
        let token = match c {
            _ if c.is_whitespace() => continue,
            '-' if rest.starts_with("--") => {
                let end = skip_to(rest.find('\n').unwrap_or(rest.len()));
                advance(&mut chars, end);
                continue;
            }
            '/' if rest.starts_with("/*") => {
                let end = skip_to(rest.find("*/").map_or(rest.len(), |end| end + 2));
                advance(&mut chars, end);
                continue;
            }
            '\'' => {
                advance(&mut chars, skip_to(quoted_end(rest, '\'')));
                Token::Other
            }
            '"' => {
                let end = quoted_end(rest, '"');
                advance(&mut chars, skip_to(end));
                let inner = &rest[1..end];
                let inner = inner.strip_suffix('"').unwrap_or(inner);
                Token::Quoted(inner.replace("\"\"", "\""))
            }
            '$' => match dollar_quote_end(rest) {
                Some(end) => {
                    advance(&mut chars, skip_to(end));
                    Token::Other
                }
                None => Token::Other,
            },
            ';' => Token::Semicolon,
            '=' => Token::Equals,
            _ if c.is_alphabetic() || c == '_' => {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
                    .unwrap_or(rest.len());
                advance(&mut chars, at + end);
                Token::Word(rest[..end].to_lowercase())
            }
            _ => Token::Other,
        };
        tokens.push(token);
    }
    tokens
}

/// Moves `chars` on to byte offset `end`.
fn advance(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>, end: usize) {
    while chars.next_if(|(at, _)| *at < end).is_some() {}
}

/// Where a literal quoted with `quote` that opens `text` ends (after its closing quote; a doubled quote
/// stands for one), or the end of `text`.
fn quoted_end(text: &str, quote: char) -> usize {
    let mut chars = text.char_indices().skip(1).peekable();
    while let Some((at, c)) = chars.next() {
        if c == quote && chars.next_if(|(_, next)| *next == quote).is_none() {
            return at + 1;
        }
    }
    text.len()
}

/// Where a dollar-quoted string that opens `text` (`$tag$ … $tag$`) ends; `None` when `text` does not
/// open one (a parameter such as `$1`).
fn dollar_quote_end(text: &str) -> Option<usize> {
    let tag_end = text[1..].find('$')? + 2;
    let tag = &text[..tag_end];
    if !tag[1..tag_end - 1]
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_')
        || tag[1..].starts_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    let end = text[tag_end..]
        .find(tag)
        .map_or(text.len(), |at| tag_end + at + tag.len());
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "_sqlx_test_KIlKaB2BPWgoSLJReyOJGxe79Y5CxSX4it7xhweKc2z23joUiHtq";

    #[test]
    fn sqlx_statements_are_recognised_as_sqlx_writes_them() {
        assert_eq!(
            recognise(&format!("create database \"{NAME}\"")),
            Some(TestStatement::Create(NAME.to_owned()))
        );
        assert_eq!(
            recognise(&format!("drop database if exists \"{NAME}\";")),
            Some(TestStatement::DropIfExists(NAME.to_owned()))
        );
        // sqlx 0.7's names, its cleanup's trailing newline, other spellings of the same statement.
        assert_eq!(
            recognise("drop database if exists \"_sqlx_test_17\";\n"),
            Some(TestStatement::DropIfExists("_sqlx_test_17".to_owned()))
        );
        assert_eq!(
            recognise("CREATE  DATABASE\n\"_sqlx_test_3\";"),
            Some(TestStatement::Create("_sqlx_test_3".to_owned()))
        );
    }

    #[test]
    fn other_statements_are_left_alone() {
        for sql in [
            "create database \"app\"",
            "create database _sqlx_test_1",
            "create database \"_sqlx_test_1\" template template0",
            "drop database \"_sqlx_test_1\"",
            "drop database if exists \"_sqlx_test_1\" with (force)",
            "create database \"_sqlx_test_1\"\"; drop table users; --\"",
            "select 'create database \"_sqlx_test_1\"'",
            "",
        ] {
            assert_eq!(recognise(sql), None, "{sql}");
        }
    }

    #[test]
    fn statements_that_need_a_database_free_name_it() {
        let cases: &[(&str, &[&str])] = &[
            ("DROP DATABASE app", &["app"]),
            (
                "drop database if exists \"My App\" with (force);",
                &["My App"],
            ),
            ("ALTER DATABASE App RENAME TO other", &["app"]),
            ("create database copy template = \"source\"", &["source"]),
            (
                "CREATE DATABASE copy WITH OWNER postgres TEMPLATE source",
                &["source"],
            ),
            ("create database copy", &["template1"]),
            (
                "select 1; drop database a; /* drop database b */ drop database c",
                &["a", "c"],
            ),
            (
                "-- drop database x\nselect 'drop database y', $q$drop database z$q$",
                &[],
            ),
            ("select $1::text as database", &[]),
            ("select \"database\" from t", &[]),
            ("", &[]),
        ];
        for (sql, expected) in cases {
            assert_eq!(databases_named(sql), *expected, "{sql}");
        }
    }

    #[test]
    fn unfinished_quotes_and_comments_are_read_to_the_end() {
        for sql in [
            "drop database \"x",
            "drop database 'x",
            "drop database /* x",
            "drop database $a$ x",
            "drop database $",
            "\"",
            "drop database é\"ü",
        ] {
            let _ = databases_named(sql);
        }
        assert_eq!(databases_named("drop database \"x"), ["x"]);
    }
}
