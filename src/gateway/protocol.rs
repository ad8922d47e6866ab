//! The little of PostgreSQL's wire protocol the gateway reads: a client's untyped startup packets, how the
//! typed messages after them divide, the two statements of sqlx's test support it may rewrite, and the
//! messages a server opens a session with. Everything else passes through byte for byte.

/// Startup packet codes that are followed by another startup packet rather than by typed messages.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// A startup packet longer than this is not PostgreSQL (libpq's own limit is 10,000 bytes).
pub const MAX_STARTUP_PACKET: usize = 10_000;
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
    let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    (plain && name.starts_with(SQLX_TEST_PREFIX) && name.len() <= 63).then(|| name.to_owned())
}

/// A typed message: its type byte, its length, its body.
pub fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(5 + body.len());
    message.push(kind);
    message.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    message.extend_from_slice(body);
    message
}

/// A simple-query message (`Q`) carrying `sql`.
pub fn simple_query(sql: &str) -> Vec<u8> {
    message(b'Q', &[sql.as_bytes(), b"\0"].concat())
}

/// A startup message for protocol 3.0 with these parameters (name, value pairs).
pub fn startup_message(parameters: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (name, value) in parameters {
        for text in [name, value] {
            body.extend_from_slice(text.as_bytes());
            body.push(0);
        }
    }
    body.push(0);
    [((body.len() + 4) as u32).to_be_bytes().as_slice(), &body].concat()
}

/// What a client's untyped packet (length included) asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// An SSL or GSSAPI encryption request: the answer `N` (not here) lets the client go on in the clear.
    Encryption,
    /// A cancel request for another session: passed to the server as it is.
    Cancel,
    /// The startup message proper, naming the database the session is for.
    Session { database: String },
}

impl Startup {
    /// Reads a whole untyped packet; `None` when it is none PostgreSQL knows.
    pub fn parse(packet: &[u8]) -> Option<Startup> {
        let length = read_u32(packet, 0)? as usize;
        if length != packet.len() || !(8..=MAX_STARTUP_PACKET).contains(&length) {
            return None;
        }
        match read_u32(packet, 4)? {
            SSL_REQUEST | GSSENC_REQUEST => Some(Startup::Encryption),
            CANCEL_REQUEST => Some(Startup::Cancel),
            version if version >> 16 == 3 => {
                let mut fields = packet[8..].split(|b| *b == 0);
                let mut database = None;
                let mut user = None;
                while let (Some(key), Some(value)) = (fields.next(), fields.next()) {
                    let value = String::from_utf8_lossy(value).into_owned();
                    match key {
                        b"database" => database = Some(value),
                        b"user" => user = Some(value),
                        _ => {}
                    }
                }
                // PostgreSQL's default database is the user's name.
                let database = database.filter(|d| !d.is_empty()).or(user)?;
                Some(Startup::Session { database })
            }
            _ => None,
        }
    }
}

/// How a server answers a startup message, one message at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greeting {
    /// Part of a session that opened (authentication done, parameters, key data, notices): go on.
    Opening,
    /// The session is ready for queries: the greeting is complete.
    Ready,
    /// The server wants a password or other exchange, or refused the session: the client must deal with
    /// the server itself.
    ClientsBusiness,
}

/// Classifies one message of a server's greeting from its type byte and body.
pub fn greeting_message(kind: u8, body: &[u8]) -> Greeting {
    match kind {
        b'R' if read_u32(body, 0) == Some(0) => Greeting::Opening,
        b'S' | b'K' | b'N' => Greeting::Opening,
        b'Z' => Greeting::Ready,
        _ => Greeting::ClientsBusiness,
    }
}

/// The length, type byte included, of the typed message whose first five bytes are `header`.
pub fn message_length(header: &[u8; 5]) -> usize {
    1 + u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize
}

/// The Terminate message.
pub fn terminate() -> Vec<u8> {
    message(b'X', b"")
}

/// Where the client's stream of typed messages is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// At the start of a message.
    #[default]
    Typed,
    /// Inside a message that passes through unread, with this many bytes of it still to come.
    Passing(usize),
    /// Something this reader does not follow (a malformed message): the rest passes through untouched,
    /// and the server judges it.
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
    /// The client's Terminate message: it is done with the session.
    Terminate,
}

/// Reads the typed messages a client sends after its startup message, in whatever pieces they arrive, and
/// cuts them into bytes to pass on, sqlx's test statements and the end of the session.
#[derive(Debug, Default)]
pub struct ClientStream {
    state: State,
    /// The start of a packet or message that is not whole yet.
    held: Vec<u8>,
}

impl ClientStream {
    /// Whether everything fed so far was whole messages.
    pub fn at_boundary(&self) -> bool {
        self.state == State::Typed && self.held.is_empty()
    }

    /// Appends to `out` what `input` (the next bytes from the client) lets through now.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<Piece>) {
        // Usually nothing is held and `input` is whole messages: read it where it is, keeping only an
        // unfinished tail.
        let mut joined = std::mem::take(&mut self.held);
        let data: &[u8] = if joined.is_empty() {
            input
        } else {
            joined.extend_from_slice(input);
            &joined
        };
        let mut passed = Vec::new();
        let mut at = 0;
        loop {
            let rest = &data[at..];
            match self.state {
                State::Opaque => {
                    passed.extend_from_slice(rest);
                    at = data.len();
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
                State::Typed => {
                    let Some(length) = read_u32(rest, 1).map(|l| l as usize) else {
                        break;
                    };
                    if length < 4 {
                        self.state = State::Opaque;
                        continue;
                    }
                    let total = 1 + length;
                    if rest[0] == b'X' && total == 5 {
                        if !passed.is_empty() {
                            out.push(Piece::Bytes(std::mem::take(&mut passed)));
                        }
                        out.push(Piece::Terminate);
                        at += total;
                    } else if rest[0] == b'Q' && total <= MAX_INSPECTED_QUERY + 6 {
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
        self.held = data[at..].to_vec();
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

    fn session(database: &str) -> Vec<u8> {
        startup_message(&[("user", "postgres"), ("database", database)])
    }

    fn request(code: u32, extra: usize) -> Vec<u8> {
        let mut packet = ((8 + extra) as u32).to_be_bytes().to_vec();
        packet.extend_from_slice(&code.to_be_bytes());
        packet.extend(vec![0; extra]);
        packet
    }

    #[test]
    fn startup_packets_are_told_apart() {
        assert_eq!(
            Startup::parse(&session("app")),
            Some(Startup::Session {
                database: "app".into()
            })
        );
        assert_eq!(
            Startup::parse(&session("")),
            Some(Startup::Session {
                database: "postgres".into()
            }),
            "no database: the user's name"
        );
        assert_eq!(
            Startup::parse(&request(SSL_REQUEST, 0)),
            Some(Startup::Encryption)
        );
        assert_eq!(
            Startup::parse(&request(GSSENC_REQUEST, 0)),
            Some(Startup::Encryption)
        );
        assert_eq!(
            Startup::parse(&request(CANCEL_REQUEST, 8)),
            Some(Startup::Cancel)
        );
        assert_eq!(Startup::parse(&request(1234, 0)), None);
        let mut short = session("app");
        short.pop();
        assert_eq!(Startup::parse(&short), None, "length and bytes disagree");
    }

    #[test]
    fn a_greeting_ends_at_ready_unless_the_client_must_answer() {
        assert_eq!(greeting_message(b'R', &[0, 0, 0, 0]), Greeting::Opening);
        assert_eq!(
            greeting_message(b'S', b"TimeZone\0UTC\0"),
            Greeting::Opening
        );
        assert_eq!(greeting_message(b'K', &[0; 8]), Greeting::Opening);
        assert_eq!(greeting_message(b'Z', b"I"), Greeting::Ready);
        assert_eq!(
            greeting_message(b'R', &[0, 0, 0, 10]),
            Greeting::ClientsBusiness,
            "SASL"
        );
        assert_eq!(
            greeting_message(b'E', b"SFATAL\0"),
            Greeting::ClientsBusiness
        );
        assert_eq!(message_length(&[b'Z', 0, 0, 0, 5]), 6);
    }

    /// What the server receives when `input` arrives in pieces of `chunk` bytes and every sqlx statement
    /// is answered with `select 'rewritten'`; the statements seen; whether the client terminated.
    fn relayed(input: &[u8], chunk: usize) -> (Vec<u8>, Vec<TestStatement>, bool) {
        let mut stream = ClientStream::default();
        let mut pieces = Vec::new();
        for piece in input.chunks(chunk) {
            stream.feed(piece, &mut pieces);
        }
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let mut terminated = false;
        for piece in pieces {
            match piece {
                Piece::Bytes(bytes) => out.extend(bytes),
                Piece::Statement(statement) => {
                    out.extend(simple_query("select 'rewritten'"));
                    seen.push(statement);
                }
                Piece::Terminate => terminated = true,
            }
        }
        (out, seen, terminated)
    }

    #[test]
    fn only_sqlx_statements_change_however_the_stream_is_cut() {
        let parse = message(b'P', b"\0select $1\0\0\0");
        let mut input = simple_query("select 1");
        input.extend(&parse);
        input.extend(simple_query(&format!("create database \"{NAME}\"")));
        input.extend(message(b'S', b""));
        input.extend(message(b'X', b""));

        let mut expected = simple_query("select 1");
        expected.extend(&parse);
        expected.extend(simple_query("select 'rewritten'"));
        expected.extend(message(b'S', b""));
        for chunk in [1, 2, 3, 7, 64, input.len()] {
            let (out, seen, terminated) = relayed(&input, chunk);
            assert_eq!(out, expected, "pieces of {chunk} bytes");
            assert_eq!(seen, vec![TestStatement::Create(NAME.to_owned())]);
            assert!(
                terminated,
                "the Terminate message is the gateway's, not the server's"
            );
        }
    }

    #[test]
    fn long_queries_and_other_messages_stream_through_unread() {
        let long = format!("select '{}'", "x".repeat(MAX_INSPECTED_QUERY + 10));
        let copy_data = message(b'd', &vec![7u8; 100_000]);
        let mut input = simple_query(&long);
        input.extend(&copy_data);
        let (out, seen, terminated) = relayed(&input, 1000);
        assert_eq!(out, input);
        assert!(seen.is_empty());
        assert!(!terminated);
    }

    #[test]
    fn the_stream_knows_when_it_stands_between_messages() {
        let mut stream = ClientStream::default();
        let mut pieces = Vec::new();
        assert!(stream.at_boundary());
        let query = simple_query("select 1");
        stream.feed(&query[..3], &mut pieces);
        assert!(!stream.at_boundary(), "half a simple query");
        stream.feed(&query[3..], &mut pieces);
        assert!(stream.at_boundary());
        let copy_data = message(b'd', &[1; 64]);
        stream.feed(&copy_data[..10], &mut pieces);
        assert!(!stream.at_boundary(), "half of a message passing through");
        stream.feed(&copy_data[10..], &mut pieces);
        assert!(stream.at_boundary());
    }

    #[test]
    fn what_it_cannot_follow_passes_through_untouched() {
        let mut malformed = vec![b'Q', 0, 0, 0, 2];
        malformed.extend(simple_query("create database \"_sqlx_test_1\""));
        let (out, seen, _) = relayed(&malformed, 3);
        assert_eq!(out, malformed);
        assert!(seen.is_empty());
    }
}
