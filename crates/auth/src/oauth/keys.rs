//! The Ed25519 keys that sign access tokens, and their public JWKS.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::jws::b64url;
use crate::key::fill_random;

/// Magic and version of [`TokenSigningKey::to_bytes`]: a recognisable, versioned blob, so a
/// sealed file or vault entry of another kind is refused instead of read as a seed.
const KEY_MAGIC: &[u8; 8] = b"PCLSTSK1";

/// Why stored signing-key bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningKeyError {
    /// Not the `PCLSTSK1` magic followed by a 32-byte seed.
    #[error("not a Portcullis token signing key (expected the PCLSTSK1 magic and a 32-byte seed)")]
    BadFormat,
}

/// The server's token signing key: an Ed25519 key pair and its key id. The key id is the
/// RFC 7638 JWK thumbprint of the public key, so it is derived, never stored, and the same key
/// always has the same `kid`. The private half is zeroized on drop; `Debug` shows the `kid`
/// only.
#[derive(Clone)]
pub struct TokenSigningKey {
    signing: SigningKey,
    public: TokenVerifyingKey,
}

impl TokenSigningKey {
    /// A fresh key from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        fill_random(&mut seed[..]);
        Self::from_seed(&seed)
    }

    /// The key whose RFC 8032 private key (seed) is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let public = TokenVerifyingKey::new(signing.verifying_key());
        Self { signing, public }
    }

    /// The key as bytes to store (in the vault or a sealed file): the `PCLSTSK1` magic and
    /// the 32-byte seed. Secret: keep it encrypted. Zeroized on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(KEY_MAGIC.len() + 32));
        out.extend_from_slice(KEY_MAGIC);
        out.extend_from_slice(self.signing.as_bytes());
        out
    }

    /// Reads [`TokenSigningKey::to_bytes`]'s output.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SigningKeyError> {
        let seed = bytes
            .strip_prefix(KEY_MAGIC.as_slice())
            .and_then(|s| <&[u8; 32]>::try_from(s).ok())
            .ok_or(SigningKeyError::BadFormat)?;
        Ok(Self::from_seed(seed))
    }

    /// The key id (`kid`): the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        self.public.kid()
    }

    /// The public half, for verification and the JWKS.
    pub fn verifying_key(&self) -> &TokenVerifyingKey {
        &self.public
    }

    /// The public key as a JWK (see [`TokenVerifyingKey::jwk`]).
    pub fn public_jwk(&self) -> serde_json::Value {
        self.public.jwk()
    }

    /// Signs `message` (Ed25519 is deterministic: the same input gives the same signature).
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

impl fmt::Debug for TokenSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenSigningKey(kid {}, [redacted])", self.kid())
    }
}

/// The public half of a token signing key, with its `kid`.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenVerifyingKey {
    key: VerifyingKey,
    kid: String,
}

impl TokenVerifyingKey {
    fn new(key: VerifyingKey) -> Self {
        let kid = jwk_thumbprint(&key);
        Self { key, kid }
    }

    /// The key id: the RFC 7638 JWK thumbprint (SHA-256, base64url).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw 32-byte public key.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The JWK (RFC 8037): `{"kty":"OKP","crv":"Ed25519","x":...,"kid":...,"use":"sig",
    /// "alg":"EdDSA"}`.
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url(self.key.as_bytes()),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        })
    }

    /// Verifies an Ed25519 signature with the strict rules (canonical `S`, no small-order
    /// keys); false for anything malformed.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.key.verify_strict(message, &sig).is_ok()
    }
}

impl fmt::Debug for TokenVerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenVerifyingKey(kid {})", self.kid)
    }
}

/// The JWK Set document of `keys`: `{"keys":[jwk, ...]}`, served at the `jwks_uri`.
pub fn jwks<'a>(keys: impl IntoIterator<Item = &'a TokenVerifyingKey>) -> serde_json::Value {
    let keys: Vec<serde_json::Value> = keys.into_iter().map(TokenVerifyingKey::jwk).collect();
    serde_json::json!({ "keys": keys })
}

/// RFC 7638 thumbprint of an Ed25519 JWK: SHA-256 of the required members in lexicographic
/// order without whitespace (`{"crv":"Ed25519","kty":"OKP","x":"..."}`, RFC 8037 §2), base64url.
fn jwk_thumbprint(key: &VerifyingKey) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        b64url(key.as_bytes())
    );
    b64url(&Sha256::digest(canonical.as_bytes()))
}
