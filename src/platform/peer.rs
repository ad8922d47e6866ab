//! Who is on the other end of a Unix socket. tokio asks the kernel the platform's way: `SO_PEERCRED` on
//! Linux, `getpeereid` on macOS and the BSDs; this module is the one place that decides whom to let in.

use std::io;

use tokio::net::UnixStream;

/// The user id of the process that connected `stream`.
pub(crate) fn uid(stream: &UnixStream) -> io::Result<u32> {
    stream.peer_cred().map(|cred| cred.uid())
}

/// The id of the process that connected `stream`, where the platform says (Linux does).
pub(crate) fn pid(stream: &UnixStream) -> Option<u32> {
    let pid = stream.peer_cred().ok()?.pid()?;
    u32::try_from(pid).ok()
}

/// Whether a peer running as `peer` may use a socket that serves `owner`: the owner itself, or root.
pub(crate) fn may_connect(peer: u32, owner: u32) -> bool {
    peer == owner || peer == 0
}

/// Whether `stream`'s peer may use a socket that serves `owner`; a peer whose credentials cannot be read
/// is refused.
pub(crate) fn is_allowed(stream: &UnixStream, owner: u32) -> bool {
    uid(stream).is_ok_and(|peer| may_connect(peer, owner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_and_root_may_connect_and_nobody_else() {
        assert!(may_connect(1000, 1000));
        assert!(may_connect(0, 1000));
        assert!(!may_connect(1001, 1000));
    }

    #[tokio::test]
    async fn the_peer_of_a_socket_pair_is_this_process_s_user() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(uid(&ours).unwrap(), me);
        assert!(is_allowed(&ours, me));
        assert_eq!(is_allowed(&ours, me + 1), me == 0);
    }
}
