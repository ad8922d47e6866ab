//! The little of PostgreSQL's wire protocol the gateway reads: a client's untyped startup packets, how the
//! typed messages after them divide (both ways), the statements it reads in them (see `statements`)
//! and the messages a server opens a session with. Everything else passes through byte for byte.
//!
//! Written by hand, though crates can frame these messages without owning a connection: `pgwire`'s codec
//! decodes the messages in a buffer into typed values (`PgWireFrontendMessage::decode` on a `BytesMut`).
//! The gateway acts on a handful (the startup packets, a client's Query, Parse and Terminate, a server's
//! greeting and its answer to a reset) and must pass every other message on untouched, so what it needs is
//! each message's frame (type byte and length) and the SQL of Query and Parse, holding no more of any
//! message than a bound (longer ones, a COPY's data say, stream through unread). That subset is small,
//! bounded and tested here, and it adds no dependency; decoding every message into values only to encode
//! it again would do more, not less.

use super::statements::{databases_named, recognise, TestStatement};

/// Type bytes of the messages a client sends that the gateway reads or writes (PostgreSQL's "Message
/// Formats"; sqlx-postgres's `FrontendMessageFormat`). The same byte means another message the other way
/// (`S` is Sync here, ParameterStatus from a server), hence two sets.
pub(crate) mod frontend {
    pub(crate) const QUERY: u8 = b'Q';
    pub(crate) const PARSE: u8 = b'P';
    pub(crate) const TERMINATE: u8 = b'X';
    #[cfg(test)]
    pub(crate) const SYNC: u8 = b'S';
    #[cfg(test)]
    pub(crate) const COPY_DATA: u8 = b'd';
}

/// Type bytes of the messages a server sends that the gateway reads (sqlx-postgres's
/// `BackendMessageFormat`), and ReadyForQuery's status byte.
pub(crate) mod backend {
    pub(crate) const AUTHENTICATION: u8 = b'R';
    pub(crate) const PARAMETER_STATUS: u8 = b'S';
    pub(crate) const BACKEND_KEY_DATA: u8 = b'K';
    pub(crate) const NOTICE_RESPONSE: u8 = b'N';
    pub(crate) const READY_FOR_QUERY: u8 = b'Z';
    pub(crate) const COMMAND_COMPLETE: u8 = b'C';
    pub(crate) const ERROR_RESPONSE: u8 = b'E';
    #[cfg(test)]
    pub(crate) const DATA_ROW: u8 = b'D';
    /// ReadyForQuery's status: idle, in no transaction.
    pub(crate) const IDLE: u8 = b'I';
}

/// The one-byte answer to an SSL or GSSAPI encryption request that refuses it.
pub(crate) const ENCRYPTION_REFUSED: u8 = b'N';

/// Startup packet codes that are followed by another startup packet rather than by typed messages.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
/// A startup packet longer than this is not PostgreSQL (libpq's own limit is 10,000 bytes).
pub(crate) const MAX_STARTUP_PACKET: usize = 10_000;
/// Simple queries and Parse messages longer than this (type byte and length included) stream through
/// unread: sqlx's statements, and any statement that drops, renames or copies a database, are far shorter.
const MAX_INSPECTED_MESSAGE: usize = 8_192;
/// The longest message the gateway reads whole (a server's greeting, its answer to a reset): theirs are
/// a few hundred bytes; anything longer ends the session rather than the gateway's memory.
pub(crate) const MAX_READ_MESSAGE: usize = 1 << 20;

/// A typed message: its type byte, its length, its body.
pub(crate) fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(5 + body.len());
    message.push(kind);
    message.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    message.extend_from_slice(body);
    message
}

/// A simple-query message carrying `sql`.
pub(crate) fn simple_query(sql: &str) -> Vec<u8> {
    message(frontend::QUERY, &[sql.as_bytes(), b"\0"].concat())
}

/// A startup message for protocol 3.0 with these parameters (name, value pairs); clients write these, so
/// only the tests need to.
#[cfg(test)]
pub(crate) fn startup_message(parameters: &[(&str, &str)]) -> Vec<u8> {
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
pub(crate) enum Startup {
    /// An SSL or GSSAPI encryption request: the answer `N` (not here) lets the client go on in the clear.
    Encryption,
    /// A cancel request for another session: passed to the server as it is.
    Cancel,
    /// The startup message proper, naming the database the session is for.
    Session { database: String },
}

impl Startup {
    /// Reads a whole untyped packet; `None` when it is none PostgreSQL knows.
    pub(crate) fn parse(packet: &[u8]) -> Option<Startup> {
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
pub(crate) enum Greeting {
    /// Part of a session that opened (authentication done, parameters, key data, notices): go on.
    Opening,
    /// The session is ready for queries: the greeting is complete.
    Ready,
    /// The server wants a password or other exchange, or refused the session: the client must deal with
    /// the server itself.
    ClientsBusiness,
}

/// Classifies one message of a server's greeting from its type byte and body.
pub(crate) fn greeting_message(kind: u8, body: &[u8]) -> Greeting {
    match kind {
        backend::AUTHENTICATION if read_u32(body, 0) == Some(0) => Greeting::Opening,
        backend::PARAMETER_STATUS | backend::BACKEND_KEY_DATA | backend::NOTICE_RESPONSE => {
            Greeting::Opening
        }
        backend::READY_FOR_QUERY => Greeting::Ready,
        _ => Greeting::ClientsBusiness,
    }
}

/// The length, type byte included, of the typed message whose first five bytes are `header`.
pub(crate) fn message_length(header: &[u8; 5]) -> usize {
    1 + u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize
}

/// The Terminate message.
pub(crate) fn terminate() -> Vec<u8> {
    message(frontend::TERMINATE, b"")
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
pub(crate) enum Piece {
    /// Bytes to pass on as they are.
    Bytes(Vec<u8>),
    /// A simple query holding one of sqlx's test statements, to be answered by [`simple_query`] of what
    /// it becomes.
    Statement(TestStatement),
    /// The client's Terminate message: it is done with the session.
    Terminate,
    /// The next message drops, renames or copies these databases: the sessions kept idle on them must
    /// end first.
    Closing(Vec<String>),
}

/// Reads the typed messages a client sends after its startup message, in whatever pieces they arrive, and
/// cuts them into bytes to pass on, sqlx's test statements and the end of the session.
#[derive(Debug, Default)]
pub(crate) struct ClientStream {
    state: State,
    /// The start of a packet or message that is not whole yet.
    held: Vec<u8>,
}

impl ClientStream {
    /// Whether everything fed so far was whole messages.
    pub(crate) fn at_boundary(&self) -> bool {
        self.state == State::Typed && self.held.is_empty()
    }

    /// Appends to `out` what `input` (the next bytes from the client) lets through now.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<Piece>) {
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
                    if rest[0] == frontend::TERMINATE && total == 5 {
                        flush(&mut passed, out);
                        out.push(Piece::Terminate);
                        at += total;
                    } else if matches!(rest[0], frontend::QUERY | frontend::PARSE)
                        && total <= MAX_INSPECTED_MESSAGE
                    {
                        if rest.len() < total {
                            break;
                        }
                        let message = &rest[..total];
                        match inspect(message) {
                            Inspected::Statement(statement) => {
                                flush(&mut passed, out);
                                out.push(Piece::Statement(statement));
                            }
                            Inspected::Closing(names) => {
                                flush(&mut passed, out);
                                out.push(Piece::Closing(names));
                                passed.extend_from_slice(message);
                            }
                            Inspected::Nothing => passed.extend_from_slice(message),
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

/// Ends the run of bytes to pass on before a piece of another kind.
fn flush(passed: &mut Vec<u8>, out: &mut Vec<Piece>) {
    if !passed.is_empty() {
        out.push(Piece::Bytes(std::mem::take(passed)));
    }
}

/// What a whole simple query or Parse message holds.
enum Inspected {
    Statement(TestStatement),
    Closing(Vec<String>),
    Nothing,
}

/// Reads the SQL of a whole `Q` or `P` message (type byte and length included). A message too short
/// to hold it, or not NUL-terminated where it should be, is left to the server to refuse.
fn inspect(message: &[u8]) -> Inspected {
    let body = message.get(5..).unwrap_or_default();
    let sql = match message[0] {
        frontend::QUERY => body.strip_suffix(&[0]),
        // Parse: the statement's name, then its SQL, each NUL-terminated.
        _ => body
            .iter()
            .position(|b| *b == 0)
            .and_then(|name_end| body[name_end + 1..].split(|b| *b == 0).next()),
    };
    let Some(sql) = sql.and_then(|sql| std::str::from_utf8(sql).ok()) else {
        return Inspected::Nothing;
    };
    if message[0] == frontend::QUERY {
        if let Some(statement) = recognise(sql) {
            return Inspected::Statement(statement);
        }
    }
    let names = databases_named(sql);
    if names.is_empty() {
        Inspected::Nothing
    } else {
        Inspected::Closing(names)
    }
}

/// Follows where the messages of a stream (the server's, relayed to the client) begin and end, without
/// holding them: a session may be reset only when the relay stopped between two.
#[derive(Debug, Clone, Default)]
pub(crate) struct Framing {
    /// Bytes of the next message's header seen so far.
    header: Vec<u8>,
    /// Bytes of the current message's body still to come.
    remaining: usize,
    /// A length no message can have was seen: the stream is not followed any more.
    lost: bool,
}

impl Framing {
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.lost {
            if self.remaining > 0 {
                let take = self.remaining.min(bytes.len());
                self.remaining -= take;
                bytes = &bytes[take..];
                continue;
            }
            let take = (5 - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if let Ok(header) = <[u8; 5]>::try_from(self.header.as_slice()) {
                self.header.clear();
                match message_length(&header).checked_sub(5) {
                    Some(body) => self.remaining = body,
                    None => self.lost = true,
                }
            }
        }
    }

    /// Whether everything fed so far was whole messages.
    pub(crate) fn at_boundary(&self) -> bool {
        !self.lost && self.remaining == 0 && self.header.is_empty()
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
        assert_eq!(
            greeting_message(backend::AUTHENTICATION, &[0, 0, 0, 0]),
            Greeting::Opening
        );
        assert_eq!(
            greeting_message(backend::PARAMETER_STATUS, b"TimeZone\0UTC\0"),
            Greeting::Opening
        );
        assert_eq!(
            greeting_message(backend::BACKEND_KEY_DATA, &[0; 8]),
            Greeting::Opening
        );
        assert_eq!(
            greeting_message(backend::READY_FOR_QUERY, &[backend::IDLE]),
            Greeting::Ready
        );
        assert_eq!(
            greeting_message(backend::AUTHENTICATION, &[0, 0, 0, 10]),
            Greeting::ClientsBusiness,
            "SASL"
        );
        assert_eq!(
            greeting_message(backend::ERROR_RESPONSE, b"SFATAL\0"),
            Greeting::ClientsBusiness
        );
        assert_eq!(message_length(&[backend::READY_FOR_QUERY, 0, 0, 0, 5]), 6);
    }

    /// What the server receives when `input` arrives in pieces of `chunk` bytes and every sqlx statement
    /// is answered with `select 'rewritten'`.
    #[derive(Debug, Default)]
    struct Relayed {
        out: Vec<u8>,
        /// The sqlx statements seen.
        seen: Vec<TestStatement>,
        terminated: bool,
        /// The databases whose sessions were to end, and how many bytes had passed by then.
        closing: Vec<(Vec<String>, usize)>,
    }

    fn relayed(input: &[u8], chunk: usize) -> Relayed {
        let mut stream = ClientStream::default();
        let mut pieces = Vec::new();
        for piece in input.chunks(chunk) {
            stream.feed(piece, &mut pieces);
        }
        let mut relayed = Relayed::default();
        for piece in pieces {
            match piece {
                Piece::Bytes(bytes) => relayed.out.extend(bytes),
                Piece::Statement(statement) => {
                    relayed.out.extend(simple_query("select 'rewritten'"));
                    relayed.seen.push(statement);
                }
                Piece::Terminate => relayed.terminated = true,
                Piece::Closing(names) => relayed.closing.push((names, relayed.out.len())),
            }
        }
        relayed
    }

    #[test]
    fn only_sqlx_statements_change_however_the_stream_is_cut() {
        let parse = message(frontend::PARSE, b"\0select $1\0\0\0");
        let mut input = simple_query("select 1");
        input.extend(&parse);
        input.extend(simple_query(&format!("create database \"{NAME}\"")));
        input.extend(message(frontend::SYNC, b""));
        input.extend(message(frontend::TERMINATE, b""));

        let mut expected = simple_query("select 1");
        expected.extend(&parse);
        expected.extend(simple_query("select 'rewritten'"));
        expected.extend(message(frontend::SYNC, b""));
        for chunk in [1, 2, 3, 7, 64, input.len()] {
            let relayed = relayed(&input, chunk);
            assert_eq!(relayed.out, expected, "pieces of {chunk} bytes");
            assert_eq!(relayed.seen, vec![TestStatement::Create(NAME.to_owned())]);
            assert!(
                relayed.terminated,
                "the Terminate message is the gateway's, not the server's"
            );
        }
    }

    #[test]
    fn long_queries_and_other_messages_stream_through_unread() {
        let long = format!("select '{}'", "x".repeat(MAX_INSPECTED_MESSAGE));
        let copy_data = message(frontend::COPY_DATA, &vec![7u8; 100_000]);
        let mut input = simple_query(&long);
        input.extend(&copy_data);
        let relayed = relayed(&input, 1000);
        assert_eq!(relayed.out, input);
        assert!(relayed.seen.is_empty());
        assert!(!relayed.terminated);
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
        let copy_data = message(frontend::COPY_DATA, &[1; 64]);
        stream.feed(&copy_data[..10], &mut pieces);
        assert!(!stream.at_boundary(), "half of a message passing through");
        stream.feed(&copy_data[10..], &mut pieces);
        assert!(stream.at_boundary());
    }

    #[test]
    fn what_it_cannot_follow_passes_through_untouched() {
        let mut malformed = vec![frontend::QUERY, 0, 0, 0, 2];
        malformed.extend(simple_query("create database \"_sqlx_test_1\""));
        let relayed = relayed(&malformed, 3);
        assert_eq!(relayed.out, malformed);
        assert!(relayed.seen.is_empty());
    }

    /// A `Q` or `P` message too short to hold its SQL (a length field of 4 once panicked the relay) is
    /// passed on for the server to refuse, and what follows it is still read as messages.
    #[test]
    fn messages_too_short_for_their_sql_pass_on_unread() {
        let parse_without_sql = message(frontend::PARSE, b"name\0");
        let query_without_nul = message(frontend::QUERY, b"select 1");
        for short in [
            vec![frontend::QUERY, 0, 0, 0, 4],
            parse_without_sql,
            query_without_nul,
        ] {
            let mut input = short.clone();
            input.extend(simple_query("drop database if exists \"_sqlx_test_1\";"));
            for chunk in [1, 5, input.len()] {
                let relayed = relayed(&input, chunk);
                assert_eq!(&relayed.out[..short.len()], short.as_slice(), "{short:?}");
                assert_eq!(relayed.seen.len(), 1, "{short:?} in pieces of {chunk}");
            }
        }
    }

    #[test]
    fn statements_that_drop_rename_or_copy_a_database_end_its_sessions_first() {
        let drop = simple_query("select 1; DROP DATABASE app");
        let parse = message(
            frontend::PARSE,
            b"s1\0alter database \"app\" rename to old\0\0\0",
        );
        let mut input = simple_query("select 1");
        input.extend(&drop);
        input.extend(&parse);
        let relayed = relayed(&input, 3);
        assert_eq!(relayed.out, input, "the statements themselves pass on");
        let first = simple_query("select 1").len();
        assert_eq!(
            relayed.closing,
            [
                (vec!["app".to_owned()], first),
                (vec!["app".to_owned()], first + drop.len())
            ]
        );
    }

    #[test]
    fn the_server_side_is_between_messages_only_after_whole_ones() {
        let mut answer = message(backend::COMMAND_COMPLETE, b"SELECT 1\0");
        answer.extend(message(backend::DATA_ROW, &[0; 300]));
        answer.extend(message(backend::READY_FOR_QUERY, &[backend::IDLE]));
        for chunk in [1, 4, 5, 6, 100] {
            let mut framing = Framing::default();
            let mut fed = 0;
            for piece in answer.chunks(chunk) {
                framing.feed(piece);
                fed += piece.len();
                let whole = [0, 14, 14 + 305, answer.len()].contains(&fed);
                assert_eq!(framing.at_boundary(), whole, "after {fed} bytes");
            }
        }
        let mut garbage = Framing::default();
        garbage.feed(&[backend::READY_FOR_QUERY, 0, 0, 0, 1]);
        garbage.feed(&message(backend::READY_FOR_QUERY, &[backend::IDLE]));
        assert!(
            !garbage.at_boundary(),
            "a length below 4 is never followed again"
        );
    }
}
