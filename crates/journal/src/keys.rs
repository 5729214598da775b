//! Master keys and the per-file keys derived from them.
//!
//! The master key never encrypts anything directly: every segment and snapshot file gets its
//! own AES-256 key, `HMAC-SHA256(master, label ‖ purpose ‖ prefix ‖ salt ‖ number)`, where the
//! salt is 32 fresh random bytes written in the file's header. A file key therefore encrypts
//! one file only, which is what makes the deterministic nonces of the segment format safe (see
//! the crate documentation), and a master key shared with the vault and with other logs is
//! never used with the same nonce twice.

use aes_gcm::{Aes256Gcm, KeyInit};
use hmac::{Hmac, Mac};
use portcullis_auth::MasterKeyring;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{JournalError, Result};

/// Length of the key check value stored in headers.
pub(crate) const KEY_CHECK_LEN: usize = 8;
const KEY_CHECK_LABEL: &[u8] = b"portcullis sealed log key check v1";
const DERIVE_LABEL: &[u8] = b"portcullis sealed log file key v1\0";

/// What a derived key encrypts (kept apart so a segment key can never equal a snapshot key).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purpose {
    Segment,
    Snapshot,
}

/// The master keys, copied out of a [`MasterKeyring`] (whose key bytes are private to the auth
/// crate; its text form is the one public way to read them). Zeroized on drop.
#[derive(Clone)]
pub(crate) struct KeySet {
    /// (id, bytes); the first is current.
    keys: Vec<(String, Zeroizing<[u8; 32]>)>,
}

/// One master key of a [`KeySet`].
#[derive(Clone, Copy)]
pub(crate) struct MasterRef<'a> {
    pub(crate) id: &'a str,
    key: &'a [u8; 32],
}

impl KeySet {
    pub(crate) fn from_keyring(keyring: &MasterKeyring) -> Result<KeySet> {
        let text = keyring.to_text();
        let mut keys = Vec::new();
        for entry in text.split(',') {
            let Some((id, hex_text)) = entry.split_once(':') else {
                return Err(JournalError::Keyring("unexpected keyring text".into()));
            };
            let mut key = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(hex_text, &mut *key)
                .map_err(|_| JournalError::Keyring(format!("key {id:?} is not 64 hex digits")))?;
            keys.push((id.to_owned(), key));
        }
        match keys.first() {
            Some((id, _)) if id == keyring.current().id() => Ok(KeySet { keys }),
            _ => Err(JournalError::Keyring(
                "the keyring's current key is not its first".into(),
            )),
        }
    }

    /// The current key: new files are encrypted under it.
    pub(crate) fn current(&self) -> MasterRef<'_> {
        let (id, key) = &self.keys[0];
        MasterRef { id, key }
    }

    /// The key `id`, if present.
    pub(crate) fn get(&self, id: &str) -> Option<MasterRef<'_>> {
        self.keys
            .iter()
            .find(|(i, _)| i == id)
            .map(|(id, key)| MasterRef { id, key })
    }

    /// Checks a file header's key id and key check against the keyring.
    pub(crate) fn for_file(
        &self,
        path: &std::path::Path,
        key_id: &str,
        check: &[u8; KEY_CHECK_LEN],
    ) -> Result<MasterRef<'_>> {
        use subtle::ConstantTimeEq;
        let Some(mk) = self.get(key_id) else {
            return Err(JournalError::WrongKey {
                segment: path.to_path_buf(),
                key_id: key_id.to_owned(),
                in_keyring: false,
            });
        };
        if !bool::from(mk.check().ct_eq(check)) {
            return Err(JournalError::WrongKey {
                segment: path.to_path_buf(),
                key_id: key_id.to_owned(),
                in_keyring: true,
            });
        }
        Ok(mk)
    }
}

impl MasterRef<'_> {
    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(self.key).expect("HMAC accepts keys of any length")
    }

    /// A public value telling the right key from a wrong one without decrypting anything:
    /// the first 8 bytes of HMAC-SHA256(master, label). It reveals nothing usable about the key.
    pub(crate) fn check(&self) -> [u8; KEY_CHECK_LEN] {
        let mut mac = self.mac();
        mac.update(KEY_CHECK_LABEL);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; KEY_CHECK_LEN];
        out.copy_from_slice(&full[..KEY_CHECK_LEN]);
        out
    }

    /// The AES-256-GCM cipher of one file.
    pub(crate) fn file_cipher(
        &self,
        purpose: Purpose,
        prefix: &str,
        salt: &[u8; 32],
        number: u64,
    ) -> Aes256Gcm {
        let mut mac = self.mac();
        mac.update(DERIVE_LABEL);
        mac.update(match purpose {
            Purpose::Segment => b"segment\0",
            Purpose::Snapshot => b"snapshot",
        });
        mac.update(&[prefix.len() as u8]);
        mac.update(prefix.as_bytes());
        mac.update(salt);
        mac.update(&number.to_le_bytes());
        let mut okm = mac.finalize().into_bytes();
        let cipher = Aes256Gcm::new(&okm);
        okm.as_mut_slice().zeroize();
        cipher
    }
}

/// Fills `buf` with random bytes from the operating system.
pub(crate) fn random(buf: &mut [u8]) -> Result<()> {
    getrandom::getrandom(buf).map_err(|e| JournalError::Random(e.to_string()))
}
