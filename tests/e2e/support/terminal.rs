//! Running cargo-pgtest as a person does, on a pseudo-terminal, for what it shows only there (colour, the
//! progress line).

use std::fs::File;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `command` run with its stdout and stderr on a pseudo-terminal, as a person runs it: its exit code and
/// everything it printed.
pub fn run_in_terminal(mut command: Command) -> (Option<i32>, String) {
    let pty = nix::pty::openpty(None, None).expect("a pseudo-terminal");
    command
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave));
    let mut child = command.spawn().expect("cargo-pgtest runs");
    // The command holds the terminal's other end: dropped, the reader sees the end once the run is over.
    drop(command);
    let (send, printed) = mpsc::channel();
    std::thread::spawn(move || {
        let mut master = File::from(pty.master);
        let mut text = Vec::new();
        let mut chunk = [0; 8192];
        // Linux reports EIO once no process holds the terminal any more.
        while let Ok(read @ 1..) = master.read(&mut chunk) {
            text.extend_from_slice(&chunk[..read]);
        }
        let _ = send.send(text);
    });
    let status = child.wait().unwrap();
    let text = printed
        .recv_timeout(Duration::from_secs(30))
        .expect("the terminal is let go of once the run is over");
    (status.code(), String::from_utf8_lossy(&text).into_owned())
}
