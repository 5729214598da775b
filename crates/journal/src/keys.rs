//! Master keys and the per-file keys derived from them.
//!
//! The master key never encrypts anything directly: every segment and snapshot file gets its
//! own AES-256 key, `HMAC-SHA256(master, label ‖ purpose ‖ prefix ‖ salt ‖ number)`, where the
//! salt is 32 fresh random bytes written in the file's header. A file key therefore encrypts
//! one file only, which is what makes the deterministic nonces of the segment format safe (see
//! the crate documentation), and a master key shared with the vault and with other logs is
//! never used with the same nonce twice.

use hmac::{Hmac, Mac};
use portcullis_auth::MasterKeyring;
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
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
    ) -> FileCipher {
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
        let cipher = FileCipher::new(&okm);
        okm.as_mut_slice().zeroize();
        cipher
    }
}

/// AES-256-GCM under one file's key: seals batches and snapshots, opens them again.
///
/// ring's implementation (the one rustls already brings in): its AES-NI/CLMUL code seals a
/// 256-byte batch 3× and a 4 KiB one 6× faster than the RustCrypto `aes-gcm` crate on the
/// reference machine, and sealing is on every session's commit. The ciphertext is the same
/// standard AES-256-GCM, so files written before the switch read unchanged. Its key schedule
/// is not wiped when dropped (ring offers no hook); the derived key bytes and the master keys
/// themselves are.
pub(crate) struct FileCipher(LessSafeKey);

/// The cipher could not seal: the input is longer than AES-GCM allows for one nonce.
#[derive(Debug)]
pub(crate) struct SealError;

/// Authentication failed: the ciphertext, its tag or the associated data was changed (or the
/// key is not the one it was sealed with).
#[derive(Debug)]
pub(crate) struct OpenError;

impl FileCipher {
    fn new(key: &[u8]) -> Self {
        let key = UnboundKey::new(&AES_256_GCM, key).expect("a derived key is 32 bytes");
        FileCipher(LessSafeKey::new(key))
    }

    /// Encrypts `in_out` in place under `nonce`, authenticating it with `aad`; returns the tag.
    pub(crate) fn seal(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> std::result::Result<[u8; 16], SealError> {
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
            .map_err(|_| SealError)?;
        let mut out = [0u8; 16];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Checks `tag` over `in_out` and `aad` and decrypts `in_out` in place.
    pub(crate) fn open(
        &self,
        nonce: [u8; 12],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8],
    ) -> std::result::Result<(), OpenError> {
        let tag: [u8; 16] = tag.try_into().map_err(|_| OpenError)?;
        self.0
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                Tag::from(tag),
                in_out,
                0..,
            )
            .map(|_| ())
            .map_err(|_| OpenError)
    }
}

/// Fills `buf` with random bytes from the operating system.
pub(crate) fn random(buf: &mut [u8]) -> Result<()> {
    getrandom::getrandom(buf).map_err(|e| JournalError::Random(e.to_string()))
}
