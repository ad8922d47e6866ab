//! The little of PostgreSQL's wire protocol the gateway reads: how a client's byte stream divides into
//! messages (untyped startup packets, then typed messages), and the two statements of sqlx's test support it
//! may rewrite. Everything else passes through byte for byte; the server's side is never parsed.

/// Startup packet codes that are followed by another startup packet rather than by typed messages.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// A startup packet longer than this is not PostgreSQL (libpq's own limit is 10,000 bytes).
const MAX_STARTUP_PACKET: usize = 10_000;
/// Simple queries longer than this are never one of sqlx's statements: they stream through unread.
const MAX_INSPECTED_QUERY: usize = 4_096;
/// sqlx names every test database with this prefix (`_sqlx_test_<n>` in 0.7, `_sqlx_test_<hash>` in 0.8).
const SQLX_TEST_PREFIX: &str = "_sqlx_test";

/// A statement with which sqlx's `#[sqlx::test]` support makes or removes a test's database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestStatement {
    /// `create database "_sqlx_test_…"`
    Create(String),
    /// `drop database if exists "_sqlx_test_…";`
    DropIfExists(String),
}

/// Recognises sqlx's own statements (keywords in any case, any spacing, an optional `;`) for databases
/// named as sqlx names them; anything else, `None`.
pub fn recognise(sql: &str) -> Option<TestStatement> {
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
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    (plain && name.starts_with(SQLX_TEST_PREFIX) && name.len() <= 63).then(|| name.to_owned())
}

/// A simple-query message (`Q`) carrying `sql`.
pub fn simple_query(sql: &str) -> Vec<u8> {
    let length = 4 + sql.len() + 1;
    let mut message = Vec::with_capacity(1 + length);
    message.push(b'Q');
    message.extend_from_slice(&(length as u32).to_be_bytes());
    message.extend_from_slice(sql.as_bytes());
    message.push(0);
    message
}

/// Where the client's stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Before the startup message: untyped packets (SSL and GSS requests, cancel requests, startup).
    #[default]
    Startup,
    /// At the start of a typed message.
    Typed,
    /// Inside a message that passes through unread, with this many bytes of it still to come.
    Passing(usize),
    /// Something this reader does not follow (a cancel request, an encrypted stream, a malformed packet):
    /// the rest passes through untouched, and the server judges it.
    Opaque,
}

/// What the client sent, cut where a statement of sqlx's test support stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Bytes to pass on as they are.
    Bytes(Vec<u8>),
    /// A simple query holding one of sqlx's test statements, to be answered by [`simple_query`] of what
    /// it becomes.
    Statement(TestStatement),
}

/// Reads what a client sends, in whatever pieces it arrives, and cuts it into bytes to pass on and sqlx's
/// test statements.
#[derive(Debug, Default)]
pub struct ClientStream {
    state: State,
    /// The start of a packet or message that is not whole yet.
    held: Vec<u8>,
}

impl ClientStream {
    /// Appends to `out` what `input` (the next bytes from the client) lets through now.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<Piece>) {
        self.held.extend_from_slice(input);
        let mut passed = Vec::new();
        let mut at = 0;
        loop {
            let rest = &self.held[at..];
            match self.state {
                State::Opaque => {
                    passed.extend_from_slice(rest);
                    at = self.held.len();
                    break;
                }
                State::Passing(remaining) => {
                    let take = remaining.min(rest.len());
                    passed.extend_from_slice(&rest[..take]);
                    at += take;
                    if take < remaining {
                        self.state = State::Passing(remaining - take);
                        break;
                    }
                    self.state = State::Typed;
                }
                State::Startup => {
                    let Some(length) = read_u32(rest, 0).map(|l| l as usize) else {
                        break;
                    };
                    if !(8..=MAX_STARTUP_PACKET).contains(&length) {
                        self.state = State::Opaque;
                        continue;
                    }
                    if rest.len() < length {
                        break;
                    }
                    let code = read_u32(rest, 4).unwrap_or_default();
                    passed.extend_from_slice(&rest[..length]);
                    at += length;
                    self.state = match code {
                        SSL_REQUEST | GSSENC_REQUEST => State::Startup,
                        CANCEL_REQUEST => State::Opaque,
                        _ => State::Typed,
                    };
                }
                State::Typed => {
                    let Some(length) = read_u32(rest, 1).map(|l| l as usize) else {
                        break;
                    };
                    if length < 4 {
                        self.state = State::Opaque;
                        continue;
                    }
                    let total = 1 + length;
                    if rest[0] == b'Q' && total <= MAX_INSPECTED_QUERY + 6 {
                        if rest.len() < total {
                            break;
                        }
                        let sql = std::str::from_utf8(&rest[5..total - 1]).ok();
                        match sql.and_then(recognise) {
                            Some(statement) => {
                                if !passed.is_empty() {
                                    out.push(Piece::Bytes(std::mem::take(&mut passed)));
                                }
                                out.push(Piece::Statement(statement));
                            }
                            None => passed.extend_from_slice(&rest[..total]),
                        }
                        at += total;
                    } else {
                        self.state = State::Passing(total);
                    }
                }
            }
        }
        if !passed.is_empty() {
            out.push(Piece::Bytes(passed));
        }
        self.held.drain(..at);
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let slice = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes(slice.try_into().ok()?))
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

    fn startup_message(database: &str) -> Vec<u8> {
        let mut body = 196_608u32.to_be_bytes().to_vec();
        for part in ["user", "postgres", "database", database, ""] {
            body.extend_from_slice(part.as_bytes());
            body.push(0);
        }
        let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        packet.extend_from_slice(&body);
        packet
    }

    fn ssl_request() -> Vec<u8> {
        let mut packet = 8u32.to_be_bytes().to_vec();
        packet.extend_from_slice(&SSL_REQUEST.to_be_bytes());
        packet
    }

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut message = vec![kind];
        message.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        message.extend_from_slice(body);
        message
    }

    /// What the server receives when `input` arrives in pieces of `chunk` bytes and every sqlx statement
    /// is answered with `select 'rewritten'`; and the statements seen.
    fn relayed(input: &[u8], chunk: usize) -> (Vec<u8>, Vec<TestStatement>) {
        let mut stream = ClientStream::default();
        let mut pieces = Vec::new();
        for piece in input.chunks(chunk) {
            stream.feed(piece, &mut pieces);
        }
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Bytes(bytes) => out.extend(bytes),
                Piece::Statement(statement) => {
                    out.extend(simple_query("select 'rewritten'"));
                    seen.push(statement);
                }
            }
        }
        (out, seen)
    }

    #[test]
    fn only_sqlx_statements_change_however_the_stream_is_cut() {
        let parse = message(b'P', b"\0select $1\0\0\0");
        let mut input = ssl_request();
        input.extend(startup_message("postgres"));
        input.extend(simple_query("select 1"));
        input.extend(&parse);
        input.extend(simple_query(&format!("create database \"{NAME}\"")));
        input.extend(message(b'X', b""));

        let mut expected = ssl_request();
        expected.extend(startup_message("postgres"));
        expected.extend(simple_query("select 1"));
        expected.extend(&parse);
        expected.extend(simple_query("select 'rewritten'"));
        expected.extend(message(b'X', b""));
        for chunk in [1, 2, 3, 7, 64, input.len()] {
            let (out, seen) = relayed(&input, chunk);
            assert_eq!(out, expected, "pieces of {chunk} bytes");
            assert_eq!(seen, vec![TestStatement::Create(NAME.to_owned())]);
        }
    }

    #[test]
    fn long_queries_and_other_messages_stream_through_unread() {
        let long = format!("select '{}'", "x".repeat(MAX_INSPECTED_QUERY + 10));
        let copy_data = message(b'd', &vec![7u8; 100_000]);
        let mut input = startup_message("db");
        input.extend(simple_query(&long));
        input.extend(&copy_data);
        let (out, seen) = relayed(&input, 1000);
        assert_eq!(out, input);
        assert!(seen.is_empty());
    }

    #[test]
    fn what_it_cannot_follow_passes_through_untouched() {
        // A cancel request ends the protocol: the rest is the server's to judge.
        let mut cancel = 16u32.to_be_bytes().to_vec();
        cancel.extend_from_slice(&CANCEL_REQUEST.to_be_bytes());
        cancel.extend_from_slice(&[0; 8]);
        cancel.extend(simple_query("create database \"_sqlx_test_1\""));
        assert_eq!(relayed(&cancel, 5).0, cancel);
        // Bytes that are no startup packet (a TLS record, say).
        let tls = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
        assert_eq!(relayed(&tls, 2).0, tls);
    }
}
