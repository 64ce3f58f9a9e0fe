//! The dashboard's logins: a one-time URL from `meshnode dashboard`,
//! carrying a [`DashboardLogin`] that the user key signed for this node,
//! becomes a session cookie. Only a session sees vessels' logs and the
//! details beyond `/metrics` (any local user can reach 127.0.0.1).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use protocol::control::DashboardLogin;
use protocol::membership::{Nonce, PublicKey};

/// Longest a login URL may be valid: it is for opening a browser now, and
/// the bound keeps the spent-nonce book small. `meshnode dashboard` signs
/// for [`LOGIN_TTL`].
pub const MAX_LOGIN_TTL: Duration = Duration::from_secs(600);

/// How long a URL from `meshnode dashboard` is valid.
pub const LOGIN_TTL: Duration = Duration::from_secs(300);

/// A session lasts this long after its login: a working day.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// Sessions kept at once (the oldest goes): a few browsers per user.
pub const MAX_SESSIONS: usize = 32;

/// Spent login nonces kept: each is forgotten when its login expires (at
/// most [`MAX_LOGIN_TTL`]); past this many, new logins are refused until
/// some expire, so that nobody can push a spent one out.
pub const MAX_SPENT_LOGINS: usize = 1024;

/// Longest login token read, hex: a login is about 180 bytes of CBOR.
pub const MAX_LOGIN_TOKEN_CHARS: usize = 1024;

/// Why a login was refused (the page says it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("the login token is damaged: {0}")]
    Damaged(String),
    #[error("the login is not for this node, or forged: {0}")]
    Forged(String),
    #[error("the login's user key is not trusted by this node")]
    Untrusted,
    #[error("the login has expired (run `meshnode dashboard` again)")]
    Expired,
    #[error("the login is valid for more than {} s: refused", MAX_LOGIN_TTL.as_secs())]
    TooLong,
    #[error("this login URL was used already (run `meshnode dashboard` again)")]
    Used,
    #[error("too many logins in the last minutes; try again later")]
    Busy,
}

/// The spent logins and the live sessions.
#[derive(Default)]
pub struct Logins {
    spent: HashMap<Nonce, u64>,
    sessions: VecDeque<(String, Instant)>,
}

/// Decodes a login token from its hex form.
pub fn decode_token(hex: &str) -> Result<DashboardLogin, LoginError> {
    if hex.len() > MAX_LOGIN_TOKEN_CHARS || !hex.len().is_multiple_of(2) {
        return Err(LoginError::Damaged(format!(
            "{} characters, expected an even number up to {MAX_LOGIN_TOKEN_CHARS}",
            hex.len()
        )));
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    let bytes = bytes.ok_or_else(|| LoginError::Damaged("not hex".into()))?;
    protocol::cbor::decode(&bytes).map_err(|e| LoginError::Damaged(e.to_string()))
}

/// The hex form of a login token.
pub fn encode_token(login: &DashboardLogin) -> String {
    protocol::cbor::encode(login)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Logins {
    /// Checks a login for `node`, trusted by `trusted`, at `now_unix_ms`,
    /// and spends it: a session id on success.
    pub fn redeem(
        &mut self,
        login: &DashboardLogin,
        node: &PublicKey,
        trusted: &[PublicKey],
        now_unix_ms: u64,
    ) -> Result<String, LoginError> {
        login
            .verify_for(node)
            .map_err(|e| LoginError::Forged(e.to_string()))?;
        if !trusted.contains(&login.body.user_key) {
            return Err(LoginError::Untrusted);
        }
        let expires = login.body.expires_unix_ms;
        if expires <= now_unix_ms {
            return Err(LoginError::Expired);
        }
        if expires - now_unix_ms > MAX_LOGIN_TTL.as_millis() as u64 {
            return Err(LoginError::TooLong);
        }
        self.spent.retain(|_, until| *until > now_unix_ms);
        if self.spent.contains_key(&login.body.nonce) {
            return Err(LoginError::Used);
        }
        if self.spent.len() >= MAX_SPENT_LOGINS {
            return Err(LoginError::Busy);
        }
        self.spent.insert(login.body.nonce, expires);
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| LoginError::Damaged(e.to_string()))?;
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        if self.sessions.len() >= MAX_SESSIONS {
            self.sessions.pop_front();
        }
        self.sessions.push_back((id.clone(), Instant::now()));
        Ok(id)
    }

    /// Whether `session` is a live session.
    pub fn valid(&mut self, session: &str) -> bool {
        self.sessions.retain(|(_, at)| at.elapsed() < SESSION_TTL);
        !session.is_empty() && self.sessions.iter().any(|(s, _)| s == session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use protocol::control::DashboardLoginBody;

    fn login(user: &SigningKey, node: PublicKey, expires: u64, nonce: u8) -> DashboardLogin {
        DashboardLogin::sign(
            user,
            DashboardLoginBody {
                node,
                user_key: PublicKey::of(user),
                expires_unix_ms: expires,
                nonce: Nonce([nonce; 32]),
            },
        )
    }

    #[test]
    fn a_login_opens_one_session_once_and_only_on_its_node() {
        let user = SigningKey::from_bytes(&[1; 32]);
        let other = SigningKey::from_bytes(&[2; 32]);
        let node = PublicKey::of(&SigningKey::from_bytes(&[3; 32]));
        let elsewhere = PublicKey::of(&SigningKey::from_bytes(&[4; 32]));
        let trusted = [PublicKey::of(&user)];
        let mut l = Logins::default();
        let now = 1_000_000;
        let ok = login(&user, node, now + 1000, 1);
        let token = encode_token(&ok);
        let decoded = decode_token(&token).unwrap();
        let session = l.redeem(&decoded, &node, &trusted, now).unwrap();
        assert!(l.valid(&session));
        assert!(!l.valid("forged"));
        assert_eq!(l.redeem(&ok, &node, &trusted, now), Err(LoginError::Used));
        let e = l.redeem(
            &login(&user, node, now + 1000, 2),
            &elsewhere,
            &trusted,
            now,
        );
        assert!(matches!(e, Err(LoginError::Forged(_))), "{e:?}");
        let e = l.redeem(&login(&other, node, now + 1000, 3), &node, &trusted, now);
        assert_eq!(e, Err(LoginError::Untrusted));
        let e = l.redeem(&login(&user, node, now, 4), &node, &trusted, now);
        assert_eq!(e, Err(LoginError::Expired));
        let far = now + MAX_LOGIN_TTL.as_millis() as u64 + 1;
        let e = l.redeem(&login(&user, node, far, 5), &node, &trusted, now);
        assert_eq!(e, Err(LoginError::TooLong));
        let mut tampered = login(&user, node, now + 1000, 6);
        tampered.body.expires_unix_ms += 1;
        let e = l.redeem(&tampered, &node, &trusted, now);
        assert!(matches!(e, Err(LoginError::Forged(_))), "{e:?}");
        assert!(matches!(decode_token("zz"), Err(LoginError::Damaged(_))));
    }
}
