//! Issue 14, items 1 and 5: a stolen board cannot mint members, a revoked
//! node is cut off, and a stranger's challenges cannot fail a user's
//! command. Real `meshnode start` processes and the real CLI, as in
//! `mesh.rs`.

use std::path::Path;

use crate::mesh::User;
use ed25519_dalek::SigningKey;

/// A 32-byte secret key written as 64 hex digits (node.key, user.key).
fn read_key(path: &Path) -> SigningKey {
    let text = std::fs::read_to_string(path).unwrap();
    let hex = text.trim();
    let secret: [u8; 32] = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    SigningKey::from_bytes(&secret)
}

/// Issue 14, item 5: one global FIFO of 1024 nonces let anyone push a
/// user's outstanding nonce out with unauthenticated `Challenge`s.
#[test]
fn a_flood_of_challenges_does_not_fail_a_users_command() {
    let _cpu = crate::support::shared_cpu();
    use meshnode::control::client::Session;
    use protocol::control::{Command, ControlRequest, ControlResponse};

    /// Over the old pool's 1024, from one stranger's connection.
    const FLOOD_CHALLENGES: usize = 1100;
    let user = User::new();
    let mut a = user.start("a", &[], &[]);
    let a_addr: libp2p::Multiaddr = a.wait_ready().parse().unwrap();
    let key = read_key(&user.user_key_file());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut s1 = Session::connect(std::slice::from_ref(&a_addr))
            .await
            .unwrap();
        let req = s1.sign(&key, Command::TrustList).await.unwrap();
        let mut stranger = Session::connect(std::slice::from_ref(&a_addr))
            .await
            .unwrap();
        for _ in 0..FLOOD_CHALLENGES {
            let r = stranger.request(ControlRequest::Challenge).await.unwrap();
            assert!(matches!(r, ControlResponse::Challenge { .. }), "{r:?}");
        }
        let answer = s1
            .request(ControlRequest::Signed(Box::new(req)))
            .await
            .unwrap();
        assert!(
            matches!(answer, ControlResponse::Trust(ref k) if k.len() == 1),
            "the user's command failed after the flood: {answer:?}"
        );
    });
}
