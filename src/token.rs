//! Making sign-in tokens with the project's own binaries: `wschat-token`, after Centrifugo's
//! `gentoken`. An application signs its users' tokens itself; this is for trying sign-in out,
//! for scripts and tests, and for operators who need a moderator's token now.
//!
//! The token is a JWT with the claims the server reads (see `crate::auth`): `sub` (the nick),
//! `exp` (now plus `--ttl`), `iat`, and where given `role`, `rooms`, `aud` and `iss`. It is
//! signed with the secret file the server reads with `--jwt-secret`, read the same way
//! ([`auth::read_secret`]), or with a PEM private key whose public half the server has
//! (`--jwt-public-key`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Parser};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::auth;
use crate::units::parse_duration;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "wschat-token",
    version,
    about = "Make a sign-in token (JWT) for wschat-server: wschat-token --jwt-secret FILE NICK",
    long_about = None,
    group(ArgGroup::new("key").required(true).args(["jwt_secret", "jwt_private_key"])),
    after_help = concat!(
        crate::units_help!(),
        "\n\nPrints the token on standard output. Exit status: 0 with a token, 1 when the key file \
         cannot be used, 2 for a bad command line."
    )
)]
pub struct TokenConfig {
    /// The user: the token's `sub`, which is the user's nick in the chat.
    pub sub: String,

    /// Sign with the HS256 secret in FILE, the file the server reads with --jwt-secret (its
    /// bytes without one trailing newline, used as they are).
    #[arg(long, value_name = "FILE")]
    pub jwt_secret: Option<PathBuf>,

    /// Sign with the PEM private key in FILE (RSA: RS256, EC P-256: ES256, Ed25519: EdDSA); the
    /// server verifies with its public half (--jwt-public-key).
    #[arg(long, value_name = "FILE")]
    pub jwt_private_key: Option<PathBuf>,

    /// How long the token is good for: its `exp` is now plus this.
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    pub ttl: Duration,

    /// The token's `role`: `admin` makes the user a moderator.
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,

    /// A private room (`+NAME`) the user may enter; repeat, or separate with commas.
    #[arg(long = "room", value_name = "ROOM", value_delimiter = ',')]
    pub rooms: Vec<String>,

    /// The token's `aud`, for a server started with --jwt-audience.
    #[arg(long, value_name = "AUD")]
    pub audience: Option<String>,

    /// The token's `iss`, for a server started with --jwt-issuer.
    #[arg(long, value_name = "ISS")]
    pub issuer: Option<String>,
}

/// The claims of a token for `config`, made at `now` (seconds since the Unix epoch).
pub fn claims(config: &TokenConfig, now: u64) -> Value {
    let mut claims = json!({"sub": config.sub, "iat": now, "exp": now.saturating_add(config.ttl.as_secs())});
    if let Some(role) = &config.role {
        claims["role"] = json!(role);
    }
    if !config.rooms.is_empty() {
        claims["rooms"] = json!(config.rooms);
    }
    if let Some(audience) = &config.audience {
        claims["aud"] = json!(audience);
    }
    if let Some(issuer) = &config.issuer {
        claims["iss"] = json!(issuer);
    }
    claims
}

/// The signed token, or why the key cannot sign it.
pub fn make(config: &TokenConfig, now: u64) -> Result<String, String> {
    let (key, algorithm) = match (&config.jwt_secret, &config.jwt_private_key) {
        (Some(path), _) => (EncodingKey::from_secret(&auth::read_secret(path)?), Algorithm::HS256),
        (None, Some(path)) => private_key(path)?,
        (None, None) => return Err("give --jwt-secret or --jwt-private-key".into()),
    };
    jsonwebtoken::encode(&Header::new(algorithm), &claims(config, now), &key)
        .map_err(|e| format!("cannot sign the token: {e}"))
}

/// A PEM private key and the algorithm its kind signs with, as the server pins it.
fn private_key(path: &PathBuf) -> Result<(EncodingKey, Algorithm), String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read the key file {}: {e}", path.display()))?;
    EncodingKey::from_rsa_pem(&pem)
        .map(|key| (key, Algorithm::RS256))
        .or_else(|_| EncodingKey::from_ec_pem(&pem).map(|key| (key, Algorithm::ES256)))
        .or_else(|_| EncodingKey::from_ed_pem(&pem).map(|key| (key, Algorithm::EdDSA)))
        .map_err(|_| {
            format!(
                "{} is not a PEM private key of a kind wschat verifies (RSA, EC P-256 or Ed25519)",
                path.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_carry_what_was_asked() {
        let config = TokenConfig::try_parse_from([
            "wschat-token",
            "--jwt-secret",
            "s",
            "ada",
            "--ttl",
            "10m",
            "--role",
            "admin",
            "--room",
            "+ops,+dev",
            "--room",
            "+hr",
        ])
        .unwrap();
        assert_eq!(
            claims(&config, 1000),
            json!({"sub": "ada", "iat": 1000, "exp": 1600, "role": "admin", "rooms": ["+ops", "+dev", "+hr"]})
        );
        assert!(TokenConfig::try_parse_from(["wschat-token", "ada"]).is_err(), "a key is required");
        assert!(TokenConfig::try_parse_from(["wschat-token", "--jwt-secret", "s"]).is_err(), "a user too");
    }
}
