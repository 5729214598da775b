//! The OAuth token signing key (Ed25519), kept across restarts so that access tokens issued
//! before a restart still validate: `<data_dir>/oauth_signing_key.sealed`, encrypted with
//! AES-256-GCM under a key derived from the master key (never the master key itself).
//!
//! File: `PCOSK1` ‖ id length (1 byte) ‖ master key id ‖ nonce (12 bytes) ‖ AES-256-GCM of the
//! 32-byte seed, with the magic and the key id as associated data. A file sealed under an
//! older master key of the keyring is re-sealed under the current one at start. One that no
//! key of the keyring opens (its master key was retired) is replaced by a new signing key,
//! with a warning: tokens signed by the old one stop validating, which costs clients at most
//! one token request each.

use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use anyhow::{anyhow, bail, Context, Result};
use hmac::{Hmac, Mac};
use portcullis_auth::{MasterKeyring, TokenSigningKey};
use sha2::Sha256;
use tracing::{info, warn};
use zeroize::Zeroizing;

const MAGIC: &[u8] = b"PCOSK1";
const DERIVE_LABEL: &[u8] = b"portcullis oauth token signing key v1";

/// The sealed signing key of a data dir.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("oauth_signing_key.sealed")
}

/// The signing key stored at `file`, or a new one stored there (see the module doc).
pub fn load_or_create(file: &Path, ring: &MasterKeyring) -> Result<TokenSigningKey> {
    match std::fs::read(file) {
        Ok(bytes) => match open(&bytes, ring) {
            Ok((key, sealed_with)) => {
                if sealed_with != ring.current().id() {
                    store(file, &key, ring)?;
                    info!(file = %file.display(), "OAuth signing key re-sealed under the current master key");
                }
                Ok(key)
            }
            Err(e) => {
                warn!(file = %file.display(), error = %format!("{e:#}"), "cannot open the OAuth signing key: a new one replaces it (earlier access tokens stop validating)");
                let key = TokenSigningKey::generate();
                store(file, &key, ring)?;
                Ok(key)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = TokenSigningKey::generate();
            store(file, &key, ring)?;
            info!(file = %file.display(), kid = key.kid(), "OAuth signing key generated");
            Ok(key)
        }
        Err(e) => Err(anyhow!(e).context(format!("cannot read {}", file.display()))),
    }
}

/// The 32 bytes of each master key, by id (their text form is the one public way to read
/// them out of the keyring).
fn master_bytes(ring: &MasterKeyring, id: &str) -> Result<Zeroizing<[u8; 32]>> {
    let text = ring.to_text();
    for entry in text.split(',') {
        if let Some((kid, hex_text)) = entry.split_once(':') {
            if kid == id {
                let mut key = Zeroizing::new([0u8; 32]);
                hex::decode_to_slice(hex_text, &mut *key)
                    .map_err(|_| anyhow!("master key {id:?} is not 64 hex digits"))?;
                return Ok(key);
            }
        }
    }
    bail!("the keyring has no master key {id:?}")
}

fn cipher(ring: &MasterKeyring, id: &str) -> Result<Aes256Gcm> {
    let master = master_bytes(ring, id)?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&master[..])
        .map_err(|_| anyhow!("bad master key length"))?;
    mac.update(DERIVE_LABEL);
    let mut derived = Zeroizing::new([0u8; 32]);
    derived.copy_from_slice(&mac.finalize().into_bytes());
    Aes256Gcm::new_from_slice(&derived[..]).map_err(|_| anyhow!("bad derived key length"))
}

fn aad(id: &str) -> Vec<u8> {
    let mut a = MAGIC.to_vec();
    a.extend_from_slice(id.as_bytes());
    a
}

fn seal(key: &TokenSigningKey, ring: &MasterKeyring) -> Result<Vec<u8>> {
    let id = ring.current().id();
    let id_len = u8::try_from(id.len()).map_err(|_| anyhow!("master key id too long"))?;
    let mut nonce = [0u8; 12];
    getrandom::getrandom(&mut nonce).map_err(|e| anyhow!("no randomness: {e}"))?;
    let seed = key.to_bytes();
    let ct = cipher(ring, id)?
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &seed,
                aad: &aad(id),
            },
        )
        .map_err(|_| anyhow!("cannot encrypt the signing key"))?;
    let mut out = MAGIC.to_vec();
    out.push(id_len);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// The key in `bytes` and the id of the master key it was sealed under.
fn open(bytes: &[u8], ring: &MasterKeyring) -> Result<(TokenSigningKey, String)> {
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| anyhow!("not a sealed signing key"))?;
    let (&id_len, rest) = rest.split_first().ok_or_else(|| anyhow!("truncated"))?;
    let id_len = usize::from(id_len);
    if rest.len() < id_len + 12 {
        bail!("truncated");
    }
    let (id, rest) = rest.split_at(id_len);
    let id = std::str::from_utf8(id).map_err(|_| anyhow!("bad master key id"))?;
    let (nonce, ct) = rest.split_at(12);
    let seed = Zeroizing::new(
        cipher(ring, id)?
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: &aad(id),
                },
            )
            .map_err(|_| anyhow!("the file does not decrypt under master key {id:?}"))?,
    );
    let key = TokenSigningKey::from_bytes(&seed).map_err(|e| anyhow!("{e}"))?;
    Ok((key, id.to_owned()))
}

/// Writes the sealed key atomically (temp file, fsync, rename), mode 0600.
fn store(file: &Path, key: &TokenSigningKey, ring: &MasterKeyring) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let sealed = seal(key, ring)?;
    let tmp = file.with_extension("sealed.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(&sealed)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("cannot create {}", file.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_auth::MasterKey;

    #[test]
    fn the_key_survives_reloads_and_rotations_and_is_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path());
        let ring = MasterKeyring::generate("1").unwrap();
        let first = load_or_create(&file, &ring).unwrap();
        let again = load_or_create(&file, &ring).unwrap();
        assert_eq!(first.kid(), again.kid());
        let bytes = std::fs::read(&file).unwrap();
        let seed = first.to_bytes();
        assert!(!bytes.windows(seed.len()).any(|w| w == &seed[..]));
        // A rotated keyring opens it with the old key and re-seals it under the new one.
        let rotated = ring.with_current(MasterKey::generate("2").unwrap());
        assert_eq!(load_or_create(&file, &rotated).unwrap().kid(), first.kid());
        let (_, id) = open(&std::fs::read(&file).unwrap(), &rotated).unwrap();
        assert_eq!(id, "2");
        // Without the key it was sealed under, a new signing key replaces it.
        let other = MasterKeyring::generate("9").unwrap();
        assert_ne!(load_or_create(&file, &other).unwrap().kid(), first.kid());
        // Tampering is detected.
        let mut bad = std::fs::read(&file).unwrap();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(open(&bad, &other).is_err());
        assert!(open(b"PCOSK1", &other).is_err());
    }
}
