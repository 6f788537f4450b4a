//! Signed connection tokens: who a client is, as the application that embeds the chat says.
//!
//! The application signs a JWT for its user; the client presents it on the upgrade request
//! (`?token=JWT`, or `Authorization: Bearer JWT`); wschat verifies it with the `jsonwebtoken`
//! crate (ring, the crypto library rustls already uses here) against the keys it was given:
//! `--jwt-secret FILE` (HS256) and/or `--jwt-public-key FILE` (PEM: RS256, ES256 or EdDSA by
//! the key's type). The algorithm is pinned to the key kind: a token is checked only with the
//! key its header's `alg` belongs to, so `alg: none`, an HS256 token against a public key (the
//! classic key-confusion attack) and the reverse are refused. `exp` and `sub` are required;
//! `nbf`, and `aud` and `iss` when `--jwt-audience` / `--jwt-issuer` are given, are checked.
//!
//! Both checks a token meets are decided here: the handshake's ([`Auth::admission`]: who the
//! client is, or the 401) and `/token`'s ([`Auth::renewal`]: whether a new token extends the
//! session); the connection and the hub only carry out the answer.
//!
//! A token is a secret: [`Token`] never prints its text, and refusals say why without
//! repeating it.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::chat::names::{fold, validate_nick};

/// A token as presented by a client; its text is never shown.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(pub String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

/// Who a valid token says the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user: its nick in the chat.
    pub sub: String,
    /// When the token expires, in seconds since the Unix epoch.
    pub exp: u64,
    /// Private rooms (names starting with `+`) the user may enter.
    pub rooms: Vec<String>,
    /// `role: "admin"`: a moderator.
    pub admin: bool,
}

#[derive(Deserialize)]
struct Claims {
    // Optional here so that a missing one is told as missing, not as malformed.
    sub: Option<String>,
    exp: Option<u64>,
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    role: Option<String>,
    // Read only so that one of the wrong type (a string, an object) is refused as malformed, as
    // such an `exp` is: jsonwebtoken checks `nbf` only when it is a number and lets any other
    // type through unchecked. (RFC 7519 dates are numbers, whole or not.)
    #[serde(default, rename = "nbf")]
    _nbf: Option<f64>,
    #[serde(default, rename = "iat")]
    _iat: Option<f64>,
}

impl Identity {
    /// When the token expires on the monotonic clock, given `now` on it and `now_unix` on the
    /// wall clock; None for an expiry too far away to represent (a signer's choice, never a
    /// reason to panic).
    pub fn expires_at(&self, now: std::time::Instant, now_unix: u64) -> Option<std::time::Instant> {
        now.checked_add(std::time::Duration::from_secs(self.exp.saturating_sub(now_unix)))
    }
}

/// Why a token was refused, or a session not renewed: the short reason the client is told
/// (the 401's body, or the error `/token` answers). It never repeats the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub Cow<'static, str>);

impl Refusal {
    /// `/token` where there is nothing to renew: the server has no keys.
    pub const NO_KEYS: Self = Self::new("this server does not use sign-in tokens");

    const fn new(why: &'static str) -> Self {
        Self(Cow::Borrowed(why))
    }
}

/// The wall clock in seconds since the Unix epoch: what a token's `exp` counts in.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key files and claims to check, as given on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthFiles {
    pub secret: Option<PathBuf>,
    pub public_key: Option<PathBuf>,
    pub audience: Option<String>,
    pub issuer: Option<String>,
}

/// Loaded keys, ready to verify tokens. Reloaded as a whole on SIGHUP.
pub struct Auth {
    files: AuthFiles,
    secret: Option<DecodingKey>,
    /// The public key and the one algorithm it verifies.
    public: Option<(DecodingKey, Algorithm)>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("files", &self.files)
            .field("public_algorithm", &self.public.as_ref().map(|(_, alg)| alg))
            .finish_non_exhaustive()
    }
}

/// The HS256 secret in a `--jwt-secret` file: the file's bytes without one trailing newline
/// (`\n` or `\r\n`: the one `echo`, `base64` or an editor ends it with), used as they are
/// (text in base64 is not decoded), at least 32 bytes. Nothing else is trimmed: a raw binary
/// secret may begin or end with any byte. The one reading of the file, for the server and for
/// `wschat-token` alike, so a token made with one verifies with the other.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read the JWT key file {}: {e}", path.display()))?;
    let secret = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
    if secret.len() < 32 {
        return Err(format!(
            "the JWT secret in {} is {} bytes; HS256 needs at least 32 (256 bits)",
            path.display(),
            secret.len()
        ));
    }
    Ok(secret.to_vec())
}

impl Auth {
    /// Reads the key files; an error names the file and says what is wrong with it.
    pub fn load(files: &AuthFiles) -> Result<Self, String> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| format!("cannot read the JWT key file {}: {e}", path.display()))
        };
        let secret = match &files.secret {
            Some(path) => Some(DecodingKey::from_secret(&read_secret(path)?)),
            None => None,
        };
        let public = match &files.public_key {
            Some(path) => {
                let pem = read(path)?;
                let key = DecodingKey::from_rsa_pem(&pem)
                    .map(|key| (key, Algorithm::RS256))
                    .or_else(|_| DecodingKey::from_ec_pem(&pem).map(|key| (key, Algorithm::ES256)))
                    .or_else(|_| DecodingKey::from_ed_pem(&pem).map(|key| (key, Algorithm::EdDSA)))
                    .map_err(|_| {
                        format!(
                            "{} is not a PEM public key of a kind wschat verifies (RSA, EC P-256 or Ed25519)",
                            path.display()
                        )
                    })?;
                Some(key)
            }
            None => None,
        };
        if secret.is_none() && public.is_none() {
            return Err("no JWT key: give --jwt-secret or --jwt-public-key".into());
        }
        Ok(Self { files: files.clone(), secret, public })
    }

    /// Reads the key files again (SIGHUP).
    pub fn reload(&self) -> Result<Self, String> {
        Self::load(&self.files)
    }

    /// The handshake's check: who a client is, from the token it presented (`?token=JWT` or
    /// `Authorization: Bearer JWT`), or why it is refused (401). Without a token the client is
    /// a guest, unless `require_auth` (`--require-auth`). The token's `sub` becomes the nick,
    /// so it must be a valid one, and not a guest's: a user named `guest-N` could be taken for
    /// a guest, or find the nick held by one.
    pub fn admission(
        &self,
        token: Option<&Token>,
        require_auth: bool,
        now_unix: u64,
    ) -> Result<Option<Identity>, Refusal> {
        let Some(token) = token else {
            return match require_auth {
                true => Err(Refusal::new("a token is required: ?token=JWT or Authorization: Bearer JWT")),
                false => Ok(None),
            };
        };
        let identity = self.verify(token, now_unix)?;
        validate_nick(&identity.sub)
            .map_err(|e| Refusal(format!("the token's sub is not a valid nick: {}", e.0).into()))?;
        if fold(&identity.sub).starts_with(&fold("guest-")) {
            return Err(Refusal::new("the token's sub is not a valid nick: guest- names are for guests"));
        }
        Ok(Some(identity))
    }

    /// `/token JWT`: a new token extends a signed-in client's session if it is valid and names
    /// the same user; its identity then brings the user's rights as they are now. `held_sub`
    /// is the nick the client holds from its token, None for a guest (who has no session to
    /// extend).
    pub fn renewal(&self, token: &Token, held_sub: Option<&str>, now_unix: u64) -> Result<Identity, Refusal> {
        let Some(held_sub) = held_sub else {
            return Err(Refusal::new("guests cannot renew a session: connect with a token"));
        };
        match self.verify(token, now_unix) {
            Ok(identity) if identity.sub == held_sub => Ok(identity),
            Ok(_) => Err(Refusal::new("that token is for another user")),
            Err(refusal) => Err(Refusal(format!("token refused: {refusal}").into())),
        }
    }

    /// The identity a token proves, at `now` (seconds since the Unix epoch), or why not.
    pub fn verify(&self, token: &Token, now: u64) -> Result<Identity, Refusal> {
        let header = jsonwebtoken::decode_header(&token.0).map_err(|_| Refusal::new("malformed token"))?;
        // The key is chosen by the header's algorithm, and only the algorithm of its kind.
        let key = match header.alg {
            Algorithm::HS256 => self.secret.as_ref(),
            alg => self.public.as_ref().filter(|(_, pinned)| *pinned == alg).map(|(key, _)| key),
        }
        .ok_or(Refusal::new("token algorithm not accepted"))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = 0;
        validation.validate_nbf = true;
        // A configured audience or issuer must be present, not only right when present
        // (jsonwebtoken lets a missing one through otherwise).
        let mut required = vec!["exp", "sub"];
        match &self.files.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &self.files.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let claims = jsonwebtoken::decode::<Claims>(&token.0, key, &validation)
            .map_err(|e| {
                Refusal::new(match e.kind() {
                    ErrorKind::ExpiredSignature => "token expired",
                    ErrorKind::ImmatureSignature => "token not yet valid",
                    ErrorKind::InvalidAudience => "wrong token audience",
                    ErrorKind::InvalidIssuer => "wrong token issuer",
                    ErrorKind::InvalidSignature => "bad token signature",
                    ErrorKind::InvalidAlgorithm => "token algorithm not accepted",
                    ErrorKind::MissingRequiredClaim(_) => {
                        "token lacks a required claim (sub, exp, or the aud or iss this server checks)"
                    }
                    _ => "malformed token",
                })
            })?
            .claims;
        let (Some(sub), Some(exp)) = (claims.sub, claims.exp) else {
            return Err(Refusal::new(
                "token lacks a required claim (sub, exp, or the aud or iss this server checks)",
            ));
        };
        // jsonwebtoken reads the clock itself; `now` makes the check exact for the caller's
        // clock too (and testable).
        if exp <= now {
            return Err(Refusal::new("token expired"));
        }
        Ok(Identity { sub, exp, rooms: claims.rooms, admin: claims.role.as_deref() == Some("admin") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        unix_now()
    }

    /// Key files written for one test, with the `AuthFiles` naming them; the directory is
    /// removed when this is dropped (`Auth::load` has read them by then).
    struct KeyFiles {
        files: AuthFiles,
        _dir: crate::scratch::ScratchDir,
    }

    impl std::ops::Deref for KeyFiles {
        type Target = AuthFiles;
        fn deref(&self) -> &AuthFiles {
            &self.files
        }
    }

    impl std::ops::DerefMut for KeyFiles {
        fn deref_mut(&mut self) -> &mut AuthFiles {
            &mut self.files
        }
    }

    fn files(name: &str, secret: Option<&[u8]>, public_pem: Option<&str>) -> KeyFiles {
        let dir = crate::scratch::ScratchDir::new(&format!("auth-{name}"));
        let mut files = AuthFiles::default();
        if let Some(secret) = secret {
            let path = dir.path().join("secret");
            std::fs::write(&path, secret).unwrap();
            files.secret = Some(path);
        }
        if let Some(pem) = public_pem {
            let path = dir.path().join("public.pem");
            std::fs::write(&path, pem).unwrap();
            files.public_key = Some(path);
        }
        KeyFiles { files, _dir: dir }
    }

    fn hs256(claims: serde_json::Value) -> Token {
        Token(
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET))
                .unwrap(),
        )
    }

    #[test]
    fn a_valid_hs256_token_gives_its_identity() {
        let auth = Auth::load(&files("hs", Some(SECRET), None)).unwrap();
        let token = hs256(json!({"sub": "alice", "exp": now() + 60, "rooms": ["+ops"], "role": "admin"}));
        let identity = auth.verify(&token, now()).unwrap();
        assert_eq!(identity.sub, "alice");
        assert_eq!(identity.rooms, ["+ops"]);
        assert!(identity.admin);
        assert_eq!(format!("{token:?}"), "Token(…)", "a token never prints");
    }

    #[test]
    fn bad_tokens_are_refused_with_a_short_reason() {
        let mut files = files("bad", Some(SECRET), None);
        files.audience = Some("chat".into());
        files.issuer = Some("app".into());
        let auth = Auth::load(&files).unwrap();
        let good = json!({"sub": "a", "exp": now() + 60, "aud": "chat", "iss": "app"});
        assert!(auth.verify(&hs256(good.clone()), now()).is_ok());
        let with = |key: &str, value: serde_json::Value| {
            let mut claims = good.clone();
            claims[key] = value;
            auth.verify(&hs256(claims), now()).unwrap_err().0
        };
        assert_eq!(with("exp", json!(now() - 1)), "token expired");
        assert_eq!(with("nbf", json!(now() + 600)), "token not yet valid");
        for claim in ["exp", "nbf", "iat"] {
            for wrong in [json!("1700000000"), json!({"at": 1}), json!([1])] {
                assert_eq!(with(claim, wrong.clone()), "malformed token", "{claim}: {wrong}");
            }
        }
        let mut dated = good.clone();
        dated["iat"] = json!(now() - 5);
        dated["nbf"] = json!(now() as f64 - 4.5);
        assert!(auth.verify(&hs256(dated), now()).is_ok(), "numeric dates, whole or not, are fine");
        assert_eq!(with("aud", json!("other")), "wrong token audience");
        assert_eq!(with("iss", json!("other")), "wrong token issuer");
        let lacking = "token lacks a required claim (sub, exp, or the aud or iss this server checks)";
        for claims in [
            json!({"exp": now() + 60, "aud": "chat", "iss": "app"}),
            json!({"sub": "a", "exp": now() + 60, "iss": "app"}),
            json!({"sub": "a", "exp": now() + 60, "aud": "chat"}),
        ] {
            assert_eq!(auth.verify(&hs256(claims.clone()), now()).unwrap_err().0, lacking, "{claims}");
        }
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &good,
            &EncodingKey::from_secret(b"another secret, also 32 bytes long!"),
        )
        .unwrap();
        assert_eq!(auth.verify(&Token(forged), now()).unwrap_err().0, "bad token signature");
        // alg: none, by hand (no library will make one).
        let b64 = |v: &serde_json::Value| {
            use std::fmt::Write;
            let text = v.to_string();
            let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let bytes = text.as_bytes();
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
                for i in 0..=chunk.len() {
                    let _ = out.write_char(table[(n >> (18 - 6 * i) & 63) as usize] as char);
                }
            }
            out
        };
        let none = Token(format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&good)));
        assert_eq!(auth.verify(&none, now()).unwrap_err().0, "malformed token");
        assert_eq!(auth.verify(&Token("not a token".into()), now()).unwrap_err().0, "malformed token");
    }

    #[test]
    fn a_public_key_accepts_only_its_own_algorithm() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        // The public key's PEM is also an HMAC secret anyone can read: the key-confusion attack.
        let public_pem = key.public_key_pem();
        let auth = Auth::load(&files("es", None, Some(&public_pem))).unwrap();
        let claims = json!({"sub": "bob", "exp": now() + 60});
        let es256 = jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            &claims,
            &EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(auth.verify(&Token(es256), now()).unwrap().sub, "bob");
        let confused = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(public_pem.as_bytes()),
        )
        .unwrap();
        assert_eq!(auth.verify(&Token(confused), now()).unwrap_err().0, "token algorithm not accepted");
        // And an HS256-only server refuses an ES256 token.
        let hs_only = Auth::load(&files("hs-only", Some(SECRET), None)).unwrap();
        let es256 = jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            &claims,
            &EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(hs_only.verify(&Token(es256), now()).unwrap_err().0, "token algorithm not accepted");
    }

    #[test]
    fn an_ed25519_key_verifies_eddsa_tokens() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let auth = Auth::load(&files("ed", None, Some(&key.public_key_pem()))).unwrap();
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &json!({"sub": "eve", "exp": now() + 60}),
            &EncodingKey::from_ed_pem(key.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(auth.verify(&Token(token), now()).unwrap().sub, "eve");
    }

    #[test]
    fn the_handshake_admits_guests_and_valid_nicks_only() {
        let auth = Auth::load(&files("admission", Some(SECRET), None)).unwrap();
        let admit = |claims: Option<serde_json::Value>, require_auth| {
            auth.admission(claims.map(hs256).as_ref(), require_auth, now()).map_err(|refusal| refusal.0)
        };
        assert_eq!(admit(None, false), Ok(None), "no token: a guest");
        let required = "a token is required: ?token=JWT or Authorization: Bearer JWT";
        assert_eq!(admit(None, true).unwrap_err(), required);
        let alice = admit(Some(json!({"sub": "alice", "exp": now() + 60})), true).unwrap();
        assert_eq!(alice.map(|identity| identity.sub).as_deref(), Some("alice"));
        let refusal = |sub: &str| admit(Some(json!({"sub": sub, "exp": now() + 60})), false).unwrap_err();
        assert_eq!(refusal("Guest-7"), "the token's sub is not a valid nick: guest- names are for guests");
        assert_eq!(refusal("a:b"), "the token's sub is not a valid nick: must not contain ':'");
        assert_eq!(
            admit(Some(json!({"sub": "alice", "exp": now() - 1})), false).unwrap_err(),
            "token expired"
        );
    }

    #[test]
    fn a_session_is_renewed_only_by_its_own_users_valid_token() {
        let auth = Auth::load(&files("renewal", Some(SECRET), None)).unwrap();
        let token = |sub: &str, exp: u64| hs256(json!({"sub": sub, "exp": exp}));
        let renew = |token: &Token, held: Option<&str>| auth.renewal(token, held, now()).map_err(|r| r.0);
        let exp = now() + 600;
        let fresh = token("alice", exp);
        assert_eq!(renew(&fresh, Some("alice")).map(|identity| identity.exp), Ok(exp));
        assert_eq!(renew(&fresh, Some("bob")).unwrap_err(), "that token is for another user");
        assert_eq!(renew(&fresh, None).unwrap_err(), "guests cannot renew a session: connect with a token");
        let stale = token("alice", now() - 1);
        assert_eq!(renew(&stale, Some("alice")).unwrap_err(), "token refused: token expired");
    }

    #[test]
    fn key_files_that_cannot_be_used_are_named() {
        let missing = AuthFiles { secret: Some("/nonexistent/secret".into()), ..AuthFiles::default() };
        assert!(Auth::load(&missing).unwrap_err().contains("/nonexistent/secret"));
        let short = files("short", Some(b"short"), None);
        assert!(Auth::load(&short).unwrap_err().contains("at least 32"));
        let junk = files("junk", None, Some("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"));
        let error = Auth::load(&junk).unwrap_err();
        assert!(error.contains("public.pem") && error.contains("not a PEM public key"), "{error}");
    }
}
