//! TCP ports for the tests that need one, without the race of a port found free and let go before use:
//! either the port stays held while it is used, or the start is tried again on another port when another
//! process took it in between.

use std::net::SocketAddr;

/// How many ports a start is tried on before the test gives up.
const ATTEMPTS: usize = 5;

/// A port on 127.0.0.1 where nothing listens, and held (bound, not listening) for as long as the returned
/// socket lives: no other process can take it, and a connection to it is refused at once.
pub fn closed_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(any).expect("a port on 127.0.0.1");
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// Runs `start` on a port that was free a moment ago, for a process that binds it itself (a server): when
/// another process took it in between, `start` says so with `Err(why)`, and it is tried again on another.
pub fn on_a_free_port<T>(mut start: impl FnMut(u16) -> Result<T, String>) -> T {
    let mut taken = Vec::new();
    for _ in 0..ATTEMPTS {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port on 127.0.0.1")
            .port();
        match start(port) {
            Ok(started) => return started,
            Err(why) => taken.push(format!("port {port}: {why}")),
        }
    }
    panic!(
        "every port tried was taken before it could be used:\n{}",
        taken.join("\n")
    );
}

/// Whether a server's output says its port was taken: PostgreSQL's `could not bind ... Address already in
/// use`.
pub fn says_port_taken(output: &str) -> bool {
    output.contains("Address already in use")
}
