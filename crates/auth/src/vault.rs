//! The key vault: one file, AES-256-GCM encrypted under a versioned, rotatable master key.
//!
//! # File format (version 1)
//!
//! All integers big-endian.
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `PCLSVLT\0` |
//! | 2 | format version, `1` |
//! | 1 | length `n` of the master-key id (1..=32) |
//! | n | master-key id (ASCII) |
//! | 8 | key check: the first 8 bytes of HMAC-SHA256(master key, `portcullis vault key check v1`) |
//! | 12 | nonce, random, fresh for every write |
//! | 4 | length `c` of the ciphertext (tag included) |
//! | c | AES-256-GCM ciphertext of the JSON contents, followed by the 16-byte tag |
//!
//! The associated data is every header byte before the ciphertext, so the version, the key id,
//! the key check and the length are all authenticated. The key check tells a wrong master key
//! (`WrongMasterKey`) from a modified file (`Tampered`) without decrypting; the declared length
//! tells a cut file (`Truncated`) from a modified one. Nothing the vault reads is trusted before
//! the GCM tag is checked, and no malformed file opens as an empty vault.
//!
//! The JSON contents are `{"keys": [...]}` plus, once an operator has enrolled a second factor,
//! `"totp": {"<operator>": {"secret": "<base32>", "enrolled_at": ms, "last_step": n}}`. The map
//! is left out while empty, so a vault without TOTP secrets is exactly what earlier builds
//! wrote, and their vaults open unchanged (the format version stays 1). A build older than the
//! TOTP map refuses a vault holding one (`BadContents`, unknown field) rather than dropping the
//! secrets on its next save.
//!
//! # Master keys
//!
//! From `PORTCULLIS_MASTER_KEY` or a key file, never from the config: either 64 hex characters
//! (key id `1`) or a keyring `ID:HEX,ID:HEX,...` whose first entry is the current key (used to
//! encrypt) and whose every entry can decrypt. Rotation: put the new key first, keep the old one
//! after it, run [`Vault::rotate_master`]; then drop the old one.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::key::{
    fill_random, validate_account, ApiKey, KeyError, KeyId, KeySpec, KeyStatus, NewKey, Secret,
};
use crate::totp::{self, TotpError, TotpSecret};

/// The environment variable holding the master key or keyring.
pub const MASTER_KEY_ENV: &str = "PORTCULLIS_MASTER_KEY";

const MAGIC: &[u8; 8] = b"PCLSVLT\0";
const FORMAT_VERSION: u16 = 1;
const KEY_CHECK_LEN: usize = 8;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const MAX_MASTER_ID_LEN: usize = 32;
/// Largest ciphertext accepted (a vault of millions of keys is far below it).
const MAX_CIPHERTEXT: usize = 256 * 1024 * 1024;
const KEY_CHECK_LABEL: &[u8] = b"portcullis vault key check v1";

// ---------------------------------------------------------------------------------------------
// Master keys

/// Why a master key or keyring was refused. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// `PORTCULLIS_MASTER_KEY` is not set.
    #[error("{MASTER_KEY_ENV} is not set")]
    EnvNotSet,
    /// `PORTCULLIS_MASTER_KEY` is not valid Unicode.
    #[error("{MASTER_KEY_ENV} is not valid UTF-8")]
    EnvNotUnicode,
    /// The key file could not be read.
    #[error("master key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// No key was given.
    #[error("{origin}: no master key (expected 64 hex characters, or ID:HEX,ID:HEX,...)")]
    Empty {
        /// Where the keyring came from.
        origin: String,
    },
    /// A key is not 64 hex characters.
    #[error("{origin}: master key #{index} (id {id:?}) is not 64 hex characters (32 bytes)")]
    BadKey {
        /// Where the keyring came from.
        origin: String,
        /// 1-based position in the keyring.
        index: usize,
        /// Its id.
        id: String,
    },
    /// An entry is not `ID:HEX`, or the id is not 1 to 32 characters of `A-Z a-z 0-9 _ . -`.
    #[error("{origin}: master key #{index} is not ID:HEX with an id of 1 to 32 characters of A-Z, a-z, 0-9, '_', '.', '-'")]
    BadEntry {
        /// Where the keyring came from.
        origin: String,
        /// 1-based position in the keyring.
        index: usize,
    },
    /// The same id appears twice.
    #[error("{origin}: master key id {id:?} appears more than once")]
    DuplicateId {
        /// Where the keyring came from.
        origin: String,
        /// The repeated id.
        id: String,
    },
}

/// One master key: an id (in clear in the vault header) and 32 secret bytes, zeroized on drop.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    key: [u8; 32],
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl ZeroizeOnDrop for MasterKey {}

impl MasterKey {
    /// A master key from its id and bytes.
    pub fn new(id: &str, key: [u8; 32]) -> Result<Self, KeyringError> {
        if !valid_master_id(id) {
            return Err(KeyringError::BadEntry {
                origin: "master key".into(),
                index: 1,
            });
        }
        Ok(Self {
            id: id.to_owned(),
            key,
        })
    }

    /// A fresh random master key with id `id`.
    pub fn generate(id: &str) -> Result<Self, KeyringError> {
        let mut key = [0u8; 32];
        fill_random(&mut key);
        let k = Self::new(id, key);
        key.zeroize();
        k
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn check_value(&self) -> [u8; KEY_CHECK_LEN] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC accepts keys of any length");
        mac.update(KEY_CHECK_LABEL);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; KEY_CHECK_LEN];
        out.copy_from_slice(&full[..KEY_CHECK_LEN]);
        out
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(&self.key))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({}, [redacted])", self.id)
    }
}

fn valid_master_id(id: &str) -> bool {
    (1..=MAX_MASTER_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The master keys: the first is current (encrypts); all decrypt.
#[derive(Clone)]
pub struct MasterKeyring {
    keys: Vec<MasterKey>,
}

impl MasterKeyring {
    /// Parses `64-hex` (one key, id `1`) or `ID:HEX,ID:HEX,...` (entries may also be separated
    /// by newlines; surrounding whitespace is ignored).
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        Self::parse_from(text, "master key")
    }

    fn parse_from(text: &str, origin: &str) -> Result<Self, KeyringError> {
        let entries: Vec<&str> = text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if entries.is_empty() {
            return Err(KeyringError::Empty {
                origin: origin.into(),
            });
        }
        let mut keys: Vec<MasterKey> = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let index = i + 1;
            let (id, hex_text) = match entry.split_once(':') {
                Some((id, h)) => (id.trim(), h.trim()),
                None if entries.len() == 1 => ("1", *entry),
                None => {
                    return Err(KeyringError::BadEntry {
                        origin: origin.into(),
                        index,
                    })
                }
            };
            if !valid_master_id(id) {
                return Err(KeyringError::BadEntry {
                    origin: origin.into(),
                    index,
                });
            }
            let mut key = [0u8; 32];
            if hex_text.len() != 64 || hex::decode_to_slice(hex_text, &mut key).is_err() {
                key.zeroize();
                return Err(KeyringError::BadKey {
                    origin: origin.into(),
                    index,
                    id: id.into(),
                });
            }
            if keys.iter().any(|k| k.id == id) {
                key.zeroize();
                return Err(KeyringError::DuplicateId {
                    origin: origin.into(),
                    id: id.into(),
                });
            }
            keys.push(MasterKey {
                id: id.to_owned(),
                key,
            });
            key.zeroize();
        }
        Ok(Self { keys })
    }

    /// Reads the keyring from `PORTCULLIS_MASTER_KEY`.
    pub fn from_env() -> Result<Self, KeyringError> {
        match std::env::var(MASTER_KEY_ENV) {
            Ok(v) => {
                let v = Zeroizing::new(v);
                Self::parse_from(&v, MASTER_KEY_ENV)
            }
            Err(std::env::VarError::NotPresent) => Err(KeyringError::EnvNotSet),
            Err(std::env::VarError::NotUnicode(_)) => Err(KeyringError::EnvNotUnicode),
        }
    }

    /// Reads the keyring from a key file (same syntax as the variable).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, KeyringError> {
        let path = path.as_ref();
        let text = fs::read_to_string(path)
            .map(Zeroizing::new)
            .map_err(|source| KeyringError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Self::parse_from(&text, &path.display().to_string())
    }

    /// A keyring of `keys`, the first being current. Ids must be unique.
    pub fn from_keys(keys: Vec<MasterKey>) -> Result<Self, KeyringError> {
        if keys.is_empty() {
            return Err(KeyringError::Empty {
                origin: "keyring".into(),
            });
        }
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|o| o.id == k.id) {
                return Err(KeyringError::DuplicateId {
                    origin: "keyring".into(),
                    id: k.id.clone(),
                });
            }
        }
        Ok(Self { keys })
    }

    /// A one-key keyring with a fresh random key `id`.
    pub fn generate(id: &str) -> Result<Self, KeyringError> {
        Self::from_keys(vec![MasterKey::generate(id)?])
    }

    /// This keyring with `key` put first (current), the others kept after it for decryption; a
    /// previous key with the same id is replaced.
    pub fn with_current(&self, key: MasterKey) -> Self {
        let others: Vec<MasterKey> = self
            .keys
            .iter()
            .filter(|k| k.id != key.id)
            .cloned()
            .collect();
        let mut keys = Vec::with_capacity(others.len() + 1);
        keys.push(key);
        keys.extend(others);
        Self { keys }
    }

    /// This keyring without the key `id` (`None` if that would leave it empty).
    pub fn without(&self, id: &str) -> Option<Self> {
        let keys: Vec<MasterKey> = self.keys.iter().filter(|k| k.id != id).cloned().collect();
        (!keys.is_empty()).then_some(Self { keys })
    }

    /// The current key (encrypts).
    pub fn current(&self) -> &MasterKey {
        &self.keys[0]
    }

    /// The key with id `id`.
    pub fn get(&self, id: &str) -> Option<&MasterKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// The ids, current first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// The keyring in the text form [`MasterKeyring::parse`] reads (`ID:HEX,...`), e.g. to
    /// write a key file. Zeroized on drop.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(self.keys.len() * 100));
        for (i, k) in self.keys.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&k.id);
            out.push(':');
            let hex_text = Zeroizing::new(hex::encode(k.key));
            out.push_str(&hex_text);
        }
        out
    }

    /// Writes the keyring to a new key file, mode 0600; fails if the file exists.
    pub fn write_new_key_file(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path)?;
        let text = self.to_text();
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    }
}

impl fmt::Debug for MasterKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.iter()).finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Why a vault operation failed. Each is distinct, names the file and never contains secrets.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The vault is encrypted under a master key that the keyring does not have (or has under
    /// the same id with different bytes).
    #[error("wrong master key for vault {path}: {}", wrong_key_text(key_id, *in_keyring))]
    WrongMasterKey {
        /// The vault file.
        path: PathBuf,
        /// The master-key id recorded in the file.
        key_id: String,
        /// True if the keyring has a key with that id, but not the one used.
        in_keyring: bool,
    },
    /// The file was modified: it fails authentication or its structure is inconsistent.
    #[error("vault {path} has been tampered with or corrupted: {detail}")]
    Tampered {
        /// The vault file.
        path: PathBuf,
        /// What was found.
        detail: &'static str,
    },
    /// The file is shorter than its header says.
    #[error("vault {path} is truncated ({len} bytes, expected {expected})")]
    Truncated {
        /// The vault file.
        path: PathBuf,
        /// Its length.
        len: usize,
        /// The length it needs (at least).
        expected: usize,
    },
    /// The file does not start with the vault magic.
    #[error("{path} is not a Portcullis key vault (bad magic)")]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// The file is a vault of a format version this build does not read.
    #[error(
        "vault {path} has format version {version}; this build reads version {FORMAT_VERSION}"
    )]
    UnsupportedVersion {
        /// The vault file.
        path: PathBuf,
        /// The version found.
        version: u16,
    },
    /// The vault file does not exist (and was not asked to be created).
    #[error("vault {path} does not exist")]
    NotFound {
        /// The vault file.
        path: PathBuf,
    },
    /// [`Vault::create`] found a file already there.
    #[error("vault {path} already exists")]
    AlreadyExists {
        /// The vault file.
        path: PathBuf,
    },
    /// The decrypted contents are not a key list (written by another program holding the key,
    /// or a bug).
    #[error("vault {path} decrypts but its contents are invalid: {detail}")]
    BadContents {
        /// The vault file.
        path: PathBuf,
        /// The parser's message (no key material).
        detail: String,
    },
    /// A file operation failed.
    #[error("vault {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// No key with this id.
    #[error("no key with id {key_id:?}")]
    KeyNotFound {
        /// The id asked for.
        key_id: String,
    },
    /// The new key's fields are invalid.
    #[error(transparent)]
    InvalidKey(#[from] KeyError),
    /// An operator name or TOTP secret is invalid.
    #[error(transparent)]
    Totp(#[from] TotpError),
}

fn wrong_key_text(key_id: &str, in_keyring: bool) -> String {
    if in_keyring {
        format!("the master key with id {key_id:?} is not the one the vault was encrypted with (wrong master key or tampered vault)")
    } else {
        format!(
            "it is encrypted under master key id {key_id:?}, which the keyring does not contain"
        )
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> VaultError + '_ {
    move |source| VaultError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// An operator's TOTP second factor, as the vault keeps it: the secret, and the last time step
/// accepted (so a code is accepted once, across restarts and processes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorTotp {
    /// The shared secret (stored as base32 inside the encrypted contents; zeroized on drop).
    pub secret: TotpSecret,
    /// Enrolment time, Unix milliseconds.
    pub enrolled_at: i64,
    /// The last time step accepted ([`totp::verify`]); none before the first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_step: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Contents {
    keys: Vec<ApiKey>,
    // Absent in vaults written before TOTP enrolment existed.
    #[serde(default)]
    totp: BTreeMap<String, OperatorTotp>,
}

/// Encrypts the keys and TOTP secrets into the vault file format under the keyring's current
/// key.
fn seal(
    keys: &[ApiKey],
    totp: &BTreeMap<String, OperatorTotp>,
    keyring: &MasterKeyring,
) -> Result<Vec<u8>, serde_json::Error> {
    #[derive(Serialize)]
    struct ContentsRef<'a> {
        keys: &'a [ApiKey],
        // Left out while empty: the file is then what builds without TOTP wrote and read.
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        totp: &'a BTreeMap<String, OperatorTotp>,
    }
    let contents = ContentsRef { keys, totp };
    // Size first, then serialize into a buffer of exactly that capacity: no reallocation leaves
    // a copy of a secret in freed memory.
    let mut counter = CountingWriter(0);
    serde_json::to_writer(&mut counter, &contents)?;
    let mut plain = Zeroizing::new(Vec::with_capacity(counter.0));
    serde_json::to_writer(&mut *plain, &contents)?;
    seal_plain(&plain, keyring)
}

/// Encrypts already serialized contents into the vault file format.
fn seal_plain(plain: &[u8], keyring: &MasterKeyring) -> Result<Vec<u8>, serde_json::Error> {
    if plain.len() + TAG_LEN > MAX_CIPHERTEXT {
        return Err(serde::ser::Error::custom(format!(
            "the key list is larger than the vault format's {MAX_CIPHERTEXT} bytes"
        )));
    }
    let mk = keyring.current();
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce);
    let ct_len = plain.len() + TAG_LEN;
    let mut out = Vec::with_capacity(MAGIC.len() + 2 + 1 + mk.id.len() + 24 + ct_len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.push(mk.id.len() as u8); // ≤ 32 by construction
    out.extend_from_slice(mk.id.as_bytes());
    out.extend_from_slice(&mk.check_value());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&(ct_len as u32).to_be_bytes());
    let ct = mk
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: &out,
            },
        )
        .expect("AES-GCM encryption of an in-memory buffer below 64 GiB cannot fail");
    out.extend_from_slice(&ct);
    Ok(out)
}

struct CountingWriter(usize);

impl Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A bounds-checked reader over the file bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], VaultError> {
        let end = self.pos.saturating_add(n);
        if end > self.bytes.len() {
            return Err(VaultError::Truncated {
                path: self.path.to_path_buf(),
                len: self.bytes.len(),
                expected: end,
            });
        }
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

/// Decrypts a vault file's bytes. Returns the contents and the id of the master key used.
fn open_bytes(
    bytes: &[u8],
    keyring: &MasterKeyring,
    path: &Path,
) -> Result<(Contents, String), VaultError> {
    let p = || path.to_path_buf();
    if bytes.len() < MAGIC.len() {
        return Err(if MAGIC.starts_with(bytes) {
            VaultError::Truncated {
                path: p(),
                len: bytes.len(),
                expected: MAGIC.len(),
            }
        } else {
            VaultError::BadMagic { path: p() }
        });
    }
    let mut r = Reader {
        bytes,
        pos: 0,
        path,
    };
    if r.take(MAGIC.len())? != MAGIC {
        return Err(VaultError::BadMagic { path: p() });
    }
    let v = r.take(2)?;
    let version = u16::from_be_bytes([v[0], v[1]]);
    if version != FORMAT_VERSION {
        return Err(VaultError::UnsupportedVersion { path: p(), version });
    }
    let id_len = usize::from(r.take(1)?[0]);
    if id_len == 0 || id_len > MAX_MASTER_ID_LEN {
        return Err(VaultError::Tampered {
            path: p(),
            detail: "invalid master key id length",
        });
    }
    let id_bytes = r.take(id_len)?;
    let key_id = match std::str::from_utf8(id_bytes) {
        Ok(s) if valid_master_id(s) => s.to_owned(),
        _ => {
            return Err(VaultError::Tampered {
                path: p(),
                detail: "invalid master key id",
            })
        }
    };
    let check = r.take(KEY_CHECK_LEN)?;
    let nonce = r.take(NONCE_LEN)?;
    let l = r.take(4)?;
    let ct_len = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
    if !(TAG_LEN..=MAX_CIPHERTEXT).contains(&ct_len) {
        return Err(VaultError::Tampered {
            path: p(),
            detail: "invalid ciphertext length",
        });
    }
    let aad_end = r.pos;
    let ct = r.take(ct_len)?;
    if r.pos != bytes.len() {
        return Err(VaultError::Tampered {
            path: p(),
            detail: "trailing bytes after the ciphertext",
        });
    }
    let Some(mk) = keyring.get(&key_id) else {
        return Err(VaultError::WrongMasterKey {
            path: p(),
            key_id,
            in_keyring: false,
        });
    };
    if !bool::from(mk.check_value().ct_eq(check)) {
        return Err(VaultError::WrongMasterKey {
            path: p(),
            key_id,
            in_keyring: true,
        });
    }
    let plain = mk
        .cipher()
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: &bytes[..aad_end],
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| VaultError::Tampered {
            path: p(),
            detail: "authentication tag mismatch",
        })?;
    let contents: Contents =
        serde_json::from_slice(&plain).map_err(|e| VaultError::BadContents {
            path: p(),
            detail: e.to_string(),
        })?;
    check_unique_ids(&contents.keys)
        .map_err(|detail| VaultError::BadContents { path: p(), detail })?;
    if let Some(bad) = contents
        .totp
        .keys()
        .find(|op| totp::validate_operator(op).is_err())
    {
        return Err(VaultError::BadContents {
            path: p(),
            detail: format!(
                "invalid TOTP operator name {:?}",
                bad.chars().take(80).collect::<String>()
            ),
        });
    }
    Ok((contents, key_id))
}

fn check_unique_ids(keys: &[ApiKey]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::with_capacity(keys.len());
    for k in keys {
        if !seen.insert(k.key_id.as_str()) {
            return Err(format!("key id {} appears twice", k.key_id));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The vault

/// The key vault, loaded in memory. Changes are in memory until [`Vault::save`]; to change the
/// file while others may too (the server and the CLI), use [`Vault::update`], which holds the
/// vault's lock across read, change and write.
pub struct Vault {
    path: PathBuf,
    keyring: MasterKeyring,
    keys: Vec<ApiKey>,
    totp: BTreeMap<String, OperatorTotp>,
    encrypted_with: String,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("keys", &self.keys.len())
            .field("totp_operators", &self.totp.len())
            .field("encrypted_with", &self.encrypted_with)
            .finish()
    }
}

impl Vault {
    /// Opens and decrypts the vault at `path`. A missing file is [`VaultError::NotFound`];
    /// any unreadable file is an error, never an empty vault.
    pub fn open(path: impl AsRef<Path>, keyring: &MasterKeyring) -> Result<Vault, VaultError> {
        let path = path.as_ref();
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(VaultError::NotFound {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => return Err(io_err(path)(e)),
        };
        Self::from_bytes(path, &bytes, keyring)
    }

    /// Decrypts vault file bytes as if read from `path` (for tests and tools).
    pub fn from_bytes(
        path: impl AsRef<Path>,
        bytes: &[u8],
        keyring: &MasterKeyring,
    ) -> Result<Vault, VaultError> {
        let path = path.as_ref();
        let (contents, encrypted_with) = open_bytes(bytes, keyring, path)?;
        Ok(Vault {
            path: path.to_path_buf(),
            keyring: keyring.clone(),
            keys: contents.keys,
            totp: contents.totp,
            encrypted_with,
        })
    }

    /// Creates a new, empty vault file at `path`; fails if a file is there.
    pub fn create(path: impl AsRef<Path>, keyring: &MasterKeyring) -> Result<Vault, VaultError> {
        let path = path.as_ref();
        if fs::symlink_metadata(path).is_ok() {
            return Err(VaultError::AlreadyExists {
                path: path.to_path_buf(),
            });
        }
        let v = Vault {
            path: path.to_path_buf(),
            keyring: keyring.clone(),
            keys: Vec::new(),
            totp: BTreeMap::new(),
            encrypted_with: keyring.current().id.clone(),
        };
        v.save()?;
        Ok(v)
    }

    /// Opens the vault at `path`, creating an empty one only if no file is there.
    pub fn open_or_create(
        path: impl AsRef<Path>,
        keyring: &MasterKeyring,
    ) -> Result<Vault, VaultError> {
        match Self::open(path.as_ref(), keyring) {
            Err(VaultError::NotFound { .. }) => Self::create(path, keyring),
            other => other,
        }
    }

    /// Locks the vault at `path` against other writers (an advisory `flock` on `<path>.lock`),
    /// until the returned guard is dropped.
    pub fn lock(path: impl AsRef<Path>) -> Result<VaultLock, VaultError> {
        VaultLock::acquire(path.as_ref())
    }

    /// Read-modify-write under the vault's lock: opens the vault (creating it if
    /// `create_if_missing`), applies `f`, saves if `f` succeeded, and returns `f`'s result.
    pub fn update<R>(
        path: impl AsRef<Path>,
        keyring: &MasterKeyring,
        create_if_missing: bool,
        f: impl FnOnce(&mut Vault) -> Result<R, VaultError>,
    ) -> Result<R, VaultError> {
        let path = path.as_ref();
        let _lock = Self::lock(path)?;
        let mut v = if create_if_missing {
            Self::open_or_create(path, keyring)?
        } else {
            Self::open(path, keyring)?
        };
        let r = f(&mut v)?;
        v.save()?;
        Ok(r)
    }

    /// The vault file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The id of the master key the file was last read or written with.
    pub fn encrypted_with(&self) -> &str {
        &self.encrypted_with
    }

    /// Encrypts the keys under the keyring's current master key and replaces the file
    /// atomically: a new temp file in the same directory, written, fsynced, renamed over the
    /// vault, and the directory fsynced. A crash at any point leaves the old or the new vault,
    /// never a mix; a stray temp file from an earlier crash is ignored.
    pub fn save(&self) -> Result<(), VaultError> {
        let bytes =
            seal(&self.keys, &self.totp, &self.keyring).map_err(|e| VaultError::BadContents {
                path: self.path.clone(),
                detail: e.to_string(),
            })?;
        write_atomically(&self.path, &bytes)
    }

    /// Re-encrypts the vault under `new_keyring`'s current key and saves it. Afterwards the
    /// vault opens with any keyring holding that key.
    pub fn rotate_master(&mut self, new_keyring: &MasterKeyring) -> Result<(), VaultError> {
        let old = std::mem::replace(&mut self.keyring, new_keyring.clone());
        if let Err(e) = self.save() {
            self.keyring = old;
            return Err(e);
        }
        self.encrypted_with = new_keyring.current().id.clone();
        Ok(())
    }

    /// Adds a new key (in memory; [`Vault::save`] it). An HMAC secret is generated unless the
    /// spec gives an Ed25519 public key; the secret is returned this once.
    pub fn create_key(&mut self, spec: KeySpec, now_ms: i64) -> Result<NewKey, VaultError> {
        validate_account(&spec.account)?;
        if spec.scopes.is_empty() {
            return Err(KeyError::NoScopes.into());
        }
        if let Some(e) = spec.expires_at {
            if e <= now_ms {
                return Err(KeyError::ExpiryInPast(crate::clock::format_rfc3339_ms(e)).into());
            }
        }
        let key_id = loop {
            let id = KeyId::generate();
            if self.get(id.as_str()).is_none() {
                break id;
            }
        };
        let secret = spec.ed25519_public_key.is_none().then(Secret::generate);
        self.keys.push(ApiKey {
            key_id: key_id.clone(),
            secret: secret.clone(),
            ed25519_public_key: spec.ed25519_public_key,
            account: spec.account,
            scopes: spec.scopes,
            ip_allowlist: spec.ip_allowlist,
            expires_at: spec.expires_at,
            status: KeyStatus::Active,
            created_at: now_ms,
            last_used_at: None,
            revoked_at: None,
        });
        Ok(NewKey { key_id, secret })
    }

    /// Adds a fully formed key (e.g. imported); fails if its id is taken.
    pub fn insert_key(&mut self, key: ApiKey) -> Result<(), VaultError> {
        validate_account(&key.account)?;
        if self.get(key.key_id.as_str()).is_some() {
            return Err(
                KeyError::BadKeyId(format!("{} (already in the vault)", key.key_id)).into(),
            );
        }
        self.keys.push(key);
        Ok(())
    }

    /// The keys, in creation order.
    pub fn list(&self) -> impl Iterator<Item = &ApiKey> {
        self.keys.iter()
    }

    /// The keys as a slice.
    pub fn keys(&self) -> &[ApiKey] {
        &self.keys
    }

    /// The key `key_id`.
    pub fn get(&self, key_id: &str) -> Option<&ApiKey> {
        self.keys.iter().find(|k| k.key_id.as_str() == key_id)
    }

    /// Revokes `key_id` at `now_ms` (in memory). Returns false if it was already revoked.
    pub fn revoke(&mut self, key_id: &str, now_ms: i64) -> Result<bool, VaultError> {
        let k = self.get_mut(key_id)?;
        if k.status == KeyStatus::Revoked {
            return Ok(false);
        }
        k.status = KeyStatus::Revoked;
        k.revoked_at = Some(now_ms);
        Ok(true)
    }

    /// Records a successful use of `key_id` at `now_ms` (in memory; never moves back in time).
    pub fn touch(&mut self, key_id: &str, now_ms: i64) -> Result<(), VaultError> {
        let k = self.get_mut(key_id)?;
        match k.last_used_at {
            Some(t) if t >= now_ms => {}
            _ => k.last_used_at = Some(now_ms),
        }
        Ok(())
    }

    /// Enrols `operator` for TOTP with a fresh secret (in memory; [`Vault::save`] it), replacing
    /// any earlier one. Returns the secret to show once (base32 or
    /// [`TotpSecret::otpauth_uri`]).
    pub fn enroll_totp(&mut self, operator: &str, now_ms: i64) -> Result<TotpSecret, VaultError> {
        let secret = TotpSecret::generate();
        self.set_totp(operator, secret.clone(), now_ms)?;
        Ok(secret)
    }

    /// Stores `secret` as `operator`'s TOTP secret (e.g. imported), replacing any earlier one
    /// and its replay state.
    pub fn set_totp(
        &mut self,
        operator: &str,
        secret: TotpSecret,
        now_ms: i64,
    ) -> Result<(), VaultError> {
        totp::validate_operator(operator)?;
        self.totp.insert(
            operator.to_owned(),
            OperatorTotp {
                secret,
                enrolled_at: now_ms,
                last_step: None,
            },
        );
        Ok(())
    }

    /// `operator`'s TOTP enrolment, if any.
    pub fn totp(&self, operator: &str) -> Option<&OperatorTotp> {
        self.totp.get(operator)
    }

    /// Removes `operator`'s TOTP secret (in memory). Returns false if there was none.
    pub fn remove_totp(&mut self, operator: &str) -> bool {
        self.totp.remove(operator).is_some()
    }

    /// The operators with a TOTP secret, in name order.
    pub fn totp_operators(&self) -> impl Iterator<Item = &str> {
        self.totp.keys().map(String::as_str)
    }

    /// Verifies `operator`'s TOTP `code` at `now_ms` and records the step accepted (in memory:
    /// save the vault, e.g. inside [`Vault::update`], so the code stays spent across processes
    /// and restarts). A code of that step or an earlier one is refused from then on.
    pub fn verify_totp(
        &mut self,
        operator: &str,
        code: &str,
        now_ms: i64,
    ) -> Result<u64, TotpError> {
        let entry = self
            .totp
            .get_mut(operator)
            .ok_or_else(|| TotpError::NotEnrolled(operator.chars().take(80).collect()))?;
        let step = totp::verify(&entry.secret, code, now_ms, entry.last_step)?;
        entry.last_step = Some(step);
        Ok(step)
    }

    fn get_mut(&mut self, key_id: &str) -> Result<&mut ApiKey, VaultError> {
        self.keys
            .iter_mut()
            .find(|k| k.key_id.as_str() == key_id)
            .ok_or_else(|| VaultError::KeyNotFound {
                key_id: key_id.chars().take(80).collect(),
            })
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), VaultError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| VaultError::Io {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
        })?
        .to_string_lossy()
        .into_owned();
    let mut rnd = [0u8; 6];
    fill_random(&mut rnd);
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        hex::encode(rnd)
    ));
    let result = (|| {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err(path))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// An exclusive advisory lock on a vault (`flock` on `<vault>.lock`), released on drop.
#[derive(Debug)]
pub struct VaultLock {
    _file: File,
}

impl VaultLock {
    fn acquire(vault_path: &Path) -> Result<Self, VaultError> {
        let mut name = vault_path.as_os_str().to_owned();
        name.push(".lock");
        let lock_path = PathBuf::from(name);
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(&lock_path).map_err(io_err(&lock_path))?;
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            loop {
                // SAFETY: flock on a file descriptor we own and keep open; no memory involved.
                let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
                if rc == 0 {
                    break;
                }
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(io_err(&lock_path)(e));
                }
            }
        }
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Scopes;

    const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const K2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn ring(text: &str) -> MasterKeyring {
        MasterKeyring::parse(text).unwrap()
    }

    fn vault_with_keys(dir: &Path, keyring: &MasterKeyring, n: usize) -> (Vault, Vec<NewKey>) {
        let mut v = Vault::create(dir.join("vault.bin"), keyring).unwrap();
        let created = (0..n)
            .map(|i| {
                v.create_key(
                    KeySpec::new(&format!("ACC{i}"), Scopes::parse("trade").unwrap()),
                    1000,
                )
                .unwrap()
            })
            .collect();
        v.save().unwrap();
        (v, created)
    }

    #[test]
    fn keyring_parses_bare_hex_and_id_lists() {
        let r = ring(K1);
        assert_eq!(r.ids().collect::<Vec<_>>(), ["1"]);
        let r = ring(&format!(" v2:{K2} ,\n v1:{K1}\n"));
        assert_eq!(r.ids().collect::<Vec<_>>(), ["v2", "v1"]);
        assert_eq!(r.current().id(), "v2");
        assert!(matches!(
            MasterKeyring::parse(""),
            Err(KeyringError::Empty { .. })
        ));
        assert!(matches!(
            MasterKeyring::parse("abcd"),
            Err(KeyringError::BadKey { .. })
        ));
        assert!(matches!(
            MasterKeyring::parse(&format!("a:{K1},a:{K2}")),
            Err(KeyringError::DuplicateId { .. })
        ));
        assert!(matches!(
            MasterKeyring::parse(&format!("{K1},{K2}")),
            Err(KeyringError::BadEntry { .. })
        ));
        assert!(matches!(
            MasterKeyring::parse(&format!("bad id:{K1}")),
            Err(KeyringError::BadEntry { .. })
        ));
        let e = MasterKeyring::parse(&format!("a:{}zz", &K1[..62])).unwrap_err();
        assert!(
            !e.to_string().contains(&K1[..20]),
            "error must not echo key material"
        );
    }

    #[test]
    fn keyring_text_round_trips_and_debug_is_redacted() {
        let r = ring(&format!("v2:{K2},v1:{K1}"));
        let back = ring(&r.to_text());
        assert_eq!(back.ids().collect::<Vec<_>>(), ["v2", "v1"]);
        assert!(!format!("{r:?}").contains("2222"));
    }

    #[test]
    fn keyring_from_file_and_new_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let r = MasterKeyring::generate("dev").unwrap();
        r.write_new_key_file(&path).unwrap();
        assert!(
            r.write_new_key_file(&path).is_err(),
            "never overwrites a key file"
        );
        let back = MasterKeyring::from_file(&path).unwrap();
        assert_eq!(back.current().id(), "dev");
        assert_eq!(back.current().key, r.current().key);
        assert!(matches!(
            MasterKeyring::from_file(dir.path().join("none")),
            Err(KeyringError::Io { .. })
        ));
    }

    #[test]
    fn vault_round_trips_keys() {
        let dir = tempfile::tempdir().unwrap();
        let r = ring(K1);
        let (v, created) = vault_with_keys(dir.path(), &r, 3);
        let back = Vault::open(v.path(), &r).unwrap();
        assert_eq!(back.keys(), v.keys());
        for c in &created {
            let k = back.get(c.key_id.as_str()).unwrap();
            assert_eq!(
                k.secret.as_ref().unwrap().expose(),
                c.secret.as_ref().unwrap().expose()
            );
        }
        // The file holds no secret in clear.
        let raw = fs::read(v.path()).unwrap();
        let s = created[0].secret.as_ref().unwrap().expose().as_bytes();
        assert!(!raw.windows(s.len()).any(|w| w == s));
    }

    #[test]
    fn missing_vault_is_not_an_empty_vault() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vault.bin");
        assert!(matches!(
            Vault::open(&p, &ring(K1)),
            Err(VaultError::NotFound { .. })
        ));
        let v = Vault::open_or_create(&p, &ring(K1)).unwrap();
        assert_eq!(v.keys().len(), 0);
        assert!(matches!(
            Vault::create(&p, &ring(K1)),
            Err(VaultError::AlreadyExists { .. })
        ));
        // An empty file is not an empty vault.
        fs::write(&p, b"").unwrap();
        assert!(matches!(
            Vault::open(&p, &ring(K1)),
            Err(VaultError::Truncated { .. })
        ));
        assert!(matches!(
            Vault::open_or_create(&p, &ring(K1)),
            Err(VaultError::Truncated { .. })
        ));
    }

    #[test]
    fn vault_with_the_wrong_master_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (v, _) = vault_with_keys(dir.path(), &ring(K1), 1);
        // Same id "1", other bytes.
        let e = Vault::open(v.path(), &ring(K2)).unwrap_err();
        assert!(
            matches!(&e, VaultError::WrongMasterKey { key_id, in_keyring: true, .. } if key_id == "1"),
            "{e:?}"
        );
        assert!(e.to_string().contains("wrong master key"), "{e}");
        // Other id.
        let e = Vault::open(v.path(), &ring(&format!("v9:{K1}"))).unwrap_err();
        assert!(
            matches!(&e, VaultError::WrongMasterKey { key_id, in_keyring: false, .. } if key_id == "1"),
            "{e:?}"
        );
        assert!(!e.to_string().contains("1111"));
    }

    #[test]
    fn tampered_vault_every_byte_flip_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let r = ring(K1);
        let (v, _) = vault_with_keys(dir.path(), &r, 2);
        let good = fs::read(v.path()).unwrap();
        for i in 0..good.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = good.clone();
                bad[i] ^= bit;
                let res = Vault::from_bytes(v.path(), &bad, &r);
                assert!(
                    res.is_err(),
                    "flip of bit {bit:#x} at byte {i} was accepted"
                );
            }
        }
        // A flip in the ciphertext is reported as tampering.
        let mut bad = good.clone();
        let last = bad.len() - 20;
        bad[last] ^= 1;
        assert!(matches!(
            Vault::from_bytes(v.path(), &bad, &r),
            Err(VaultError::Tampered { .. })
        ));
        // So is an appended byte.
        let mut bad = good.clone();
        bad.push(0);
        assert!(matches!(
            Vault::from_bytes(v.path(), &bad, &r),
            Err(VaultError::Tampered { .. })
        ));
    }

    #[test]
    fn truncated_vault_every_length_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let r = ring(K1);
        let (v, _) = vault_with_keys(dir.path(), &r, 2);
        let good = fs::read(v.path()).unwrap();
        for n in 0..good.len() {
            match Vault::from_bytes(v.path(), &good[..n], &r) {
                Err(VaultError::Truncated { .. }) => {}
                other => panic!("truncation to {n} bytes gave {other:?}"),
            }
        }
    }

    #[test]
    fn bad_magic_and_unsupported_version_are_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let r = ring(K1);
        let (v, _) = vault_with_keys(dir.path(), &r, 1);
        let good = fs::read(v.path()).unwrap();
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(
            Vault::from_bytes(v.path(), &bad, &r),
            Err(VaultError::BadMagic { .. })
        ));
        assert!(matches!(
            Vault::from_bytes(v.path(), b"{\"keys\":[]}", &r),
            Err(VaultError::BadMagic { .. })
        ));
        let mut bad = good.clone();
        bad[9] = 2;
        assert!(matches!(
            Vault::from_bytes(v.path(), &bad, &r),
            Err(VaultError::UnsupportedVersion { version: 2, .. })
        ));
    }

    #[test]
    fn master_key_rotation_keeps_every_key_usable() {
        let dir = tempfile::tempdir().unwrap();
        let old = ring(&format!("v1:{K1}"));
        let (mut v, created) = vault_with_keys(dir.path(), &old, 3);
        let new = ring(&format!("v2:{K2},v1:{K1}"));
        v.rotate_master(&new).unwrap();
        assert_eq!(v.encrypted_with(), "v2");

        // The new key alone opens it, with every key and secret intact.
        let only_new = ring(&format!("v2:{K2}"));
        let back = Vault::open(v.path(), &only_new).unwrap();
        assert_eq!(back.encrypted_with(), "v2");
        for c in &created {
            let k = back.get(c.key_id.as_str()).unwrap();
            assert_eq!(
                k.secret.as_ref().unwrap().expose(),
                c.secret.as_ref().unwrap().expose()
            );
        }
        // A keyring with both opens it; the old key alone no longer does.
        assert!(Vault::open(v.path(), &new).is_ok());
        assert!(matches!(
            Vault::open(v.path(), &old),
            Err(VaultError::WrongMasterKey {
                in_keyring: false,
                ..
            })
        ));
    }

    #[test]
    fn keyring_during_rotation_opens_a_vault_still_under_the_old_key() {
        let dir = tempfile::tempdir().unwrap();
        let (v, _) = vault_with_keys(dir.path(), &ring(&format!("v1:{K1}")), 1);
        let both = ring(&format!("v2:{K2},v1:{K1}"));
        let opened = Vault::open(v.path(), &both).unwrap();
        assert_eq!(opened.encrypted_with(), "v1");
        // The next save uses the current key.
        opened.save().unwrap();
        assert_eq!(Vault::open(v.path(), &both).unwrap().encrypted_with(), "v2");
    }

    #[test]
    fn atomic_save_ignores_a_stray_temp_file_and_keeps_the_old_vault_intact() {
        let dir = tempfile::tempdir().unwrap();
        let r = ring(K1);
        let (mut v, created) = vault_with_keys(dir.path(), &r, 1);
        let before = fs::read(v.path()).unwrap();
        // A crash mid-save left half-written temp files (ours and an older naming).
        let stray = dir.path().join(format!(
            ".vault.bin.tmp-{}-000000000000",
            std::process::id()
        ));
        fs::write(&stray, &before[..before.len() / 2]).unwrap();
        fs::write(dir.path().join("vault.bin.tmp"), b"garbage").unwrap();
        // The vault itself is untouched and opens.
        assert_eq!(fs::read(v.path()).unwrap(), before);
        assert_eq!(Vault::open(v.path(), &r).unwrap().keys().len(), 1);
        // A new save succeeds despite them and replaces the vault whole.
        v.create_key(KeySpec::new("ACC9", Scopes::parse("read").unwrap()), 2000)
            .unwrap();
        v.save().unwrap();
        let back = Vault::open(v.path(), &r).unwrap();
        assert_eq!(back.keys().len(), 2);
        assert!(back.get(created[0].key_id.as_str()).is_some());
        assert_eq!(fs::read(&stray).unwrap(), &before[..before.len() / 2]);
        // No temp file of this save is left behind.
        let leftovers = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with(".vault.bin.tmp-") && e.path() != stray
            })
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn failed_save_leaves_the_old_vault() {
        let dir = tempfile::tempdir().unwrap();
        let r = ring(K1);
        let (mut v, _) = vault_with_keys(dir.path(), &r, 1);
        let before = fs::read(v.path()).unwrap();
        // Point the vault into a directory that does not exist: the write fails cleanly.
        let orig = v.path.clone();
        v.path = dir.path().join("missing-dir").join("vault.bin");
        assert!(matches!(v.save(), Err(VaultError::Io { .. })));
        v.path = orig;
        assert_eq!(fs::read(v.path()).unwrap(), before);
    }

    #[test]
    fn each_write_uses_a_fresh_nonce() {
        let dir = tempfile::tempdir().unwrap();
        let r = ring(K1);
        let (v, _) = vault_with_keys(dir.path(), &r, 1);
        let a = fs::read(v.path()).unwrap();
        v.save().unwrap();
        let b = fs::read(v.path()).unwrap();
        assert_eq!(a.len(), b.len());
        let nonce_at = 8 + 2 + 1 + 1 + KEY_CHECK_LEN;
        assert_ne!(
            a[nonce_at..nonce_at + NONCE_LEN],
            b[nonce_at..nonce_at + NONCE_LEN]
        );
    }

    #[test]
    fn revoke_touch_and_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let r = ring(K1);
        let (mut v, created) = vault_with_keys(dir.path(), &r, 2);
        let id = created[0].key_id.as_str();
        assert!(v.revoke(id, 5000).unwrap());
        assert!(!v.revoke(id, 6000).unwrap());
        assert_eq!(v.get(id).unwrap().revoked_at, Some(5000));
        v.touch(created[1].key_id.as_str(), 7000).unwrap();
        v.touch(created[1].key_id.as_str(), 6000).unwrap();
        assert_eq!(
            v.get(created[1].key_id.as_str()).unwrap().last_used_at,
            Some(7000)
        );
        assert!(matches!(
            v.revoke("pk_nope", 1),
            Err(VaultError::KeyNotFound { .. })
        ));
        v.save().unwrap();
        let back = Vault::open(v.path(), &r).unwrap();
        assert!(back.get(id).unwrap().is_revoked());
        assert_eq!(back.list().count(), 2);
    }

    #[test]
    fn create_key_validates_and_ed25519_keys_get_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let (mut v, _) = vault_with_keys(dir.path(), &ring(K1), 0);
        let bad = KeySpec::new("", Scopes::parse("trade").unwrap());
        assert!(matches!(
            v.create_key(bad, 1),
            Err(VaultError::InvalidKey(_))
        ));
        let mut past = KeySpec::new("A", Scopes::parse("trade").unwrap());
        past.expires_at = Some(1);
        assert!(matches!(
            v.create_key(past, 1),
            Err(VaultError::InvalidKey(_))
        ));
        let mut ed = KeySpec::new("A", Scopes::parse("trade").unwrap());
        ed.ed25519_public_key = Some(
            ed25519_dalek::SigningKey::from_bytes(&[9; 32])
                .verifying_key()
                .to_bytes(),
        );
        let nk = v.create_key(ed, 1).unwrap();
        assert!(nk.secret.is_none());
        assert!(v.get(nk.key_id.as_str()).unwrap().secret.is_none());
    }

    #[test]
    fn update_locks_reads_changes_and_saves() {
        let dir = tempfile::tempdir().unwrap();
        let r = ring(K1);
        let p = dir.path().join("vault.bin");
        let nk = Vault::update(&p, &r, true, |v| {
            v.create_key(KeySpec::new("A", Scopes::parse("trade").unwrap()), 1)
        })
        .unwrap();
        let got =
            Vault::update(&p, &r, false, |v| Ok(v.get(nk.key_id.as_str()).is_some())).unwrap();
        assert!(got);
        assert!(matches!(
            Vault::update(dir.path().join("other.bin"), &r, false, |_| Ok(())),
            Err(VaultError::NotFound { .. })
        ));
    }

    #[test]
    fn vault_written_before_totp_opens_and_stays_in_that_format() {
        let dir = tempfile::tempdir().unwrap();
        let r = ring(K1);
        let p = dir.path().join("vault.bin");
        // The contents exactly as a build without TOTP wrote them.
        let old_json = br#"{"keys":[{"key_id":"pk_0123456789abcdef0123456789abcdef","secret":"6f1c0a7e3d5b49e2a8c4f0b1d9e7a6c5b3f2e1d0c9b8a7f6e5d4c3b2a1908172","account":"ACC1","scopes":["trade"],"ip_allowlist":[],"expires_at":null,"status":"active","created_at":1,"last_used_at":null,"revoked_at":null}]}"#;
        fs::write(&p, seal_plain(old_json, &r).unwrap()).unwrap();
        let v = Vault::open(&p, &r).unwrap();
        assert_eq!(v.keys().len(), 1);
        assert_eq!(v.totp_operators().count(), 0);
        // Saved again without TOTP secrets, the contents have no "totp" member.
        v.save().unwrap();
        let (plain, _) = decrypt_for_test(&p, &r);
        assert!(!plain.contains("totp"), "{plain}");
        assert!(plain.starts_with(r#"{"keys":[{"key_id":"pk_0123456789abcdef0123456789abcdef""#));
        // Unknown members are still refused, not silently dropped.
        fs::write(&p, seal_plain(br#"{"keys":[],"other":1}"#, &r).unwrap()).unwrap();
        assert!(matches!(
            Vault::open(&p, &r),
            Err(VaultError::BadContents { .. })
        ));
        // So is a TOTP entry under an invalid operator name.
        fs::write(
            &p,
            seal_plain(
                br#"{"keys":[],"totp":{" bad":{"secret":"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ","enrolled_at":1}}}"#,
                &r,
            )
            .unwrap(),
        )
        .unwrap();
        assert!(matches!(
            Vault::open(&p, &r),
            Err(VaultError::BadContents { .. })
        ));
    }

    /// Decrypts a vault file to its JSON text (the vault's own reader, minus the parsing).
    fn decrypt_for_test(p: &Path, r: &MasterKeyring) -> (String, Vec<u8>) {
        let bytes = fs::read(p).unwrap();
        let id_len = usize::from(bytes[10]);
        let nonce_at = 11 + id_len + KEY_CHECK_LEN;
        let aad_end = nonce_at + NONCE_LEN + 4;
        let mk = r.current();
        let plain = mk
            .cipher()
            .decrypt(
                Nonce::from_slice(&bytes[nonce_at..nonce_at + NONCE_LEN]),
                Payload {
                    msg: &bytes[aad_end..],
                    aad: &bytes[..aad_end],
                },
            )
            .unwrap();
        (String::from_utf8(plain).unwrap(), bytes)
    }

    #[test]
    fn totp_secrets_are_stored_encrypted_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let r = ring(K1);
        let (mut v, _) = vault_with_keys(dir.path(), &r, 1);
        let secret = v.enroll_totp("alice", 1000).unwrap();
        let imported = TotpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
        v.set_totp("bob@desk", imported.clone(), 2000).unwrap();
        assert!(matches!(
            v.set_totp("", imported.clone(), 1),
            Err(VaultError::Totp(TotpError::BadOperator(_)))
        ));
        v.save().unwrap();

        let back = Vault::open(v.path(), &r).unwrap();
        assert_eq!(
            back.totp_operators().collect::<Vec<_>>(),
            ["alice", "bob@desk"]
        );
        assert_eq!(back.totp("alice").unwrap().secret, secret);
        assert_eq!(back.totp("bob@desk").unwrap().secret, imported);
        assert_eq!(back.totp("bob@desk").unwrap().enrolled_at, 2000);
        assert_eq!(back.keys().len(), 1);
        // Neither the base32 text nor the raw bytes are in the file in clear.
        let raw = fs::read(v.path()).unwrap();
        let b32 = secret.to_base32();
        for needle in [b32.as_bytes(), secret.as_bytes(), b"GEZDGNBVGY3TQOJQ"] {
            assert!(!raw.windows(needle.len()).any(|w| w == needle));
        }
        assert!(!format!("{back:?}").contains(b32.as_str()));

        let mut back = back;
        assert!(back.remove_totp("bob@desk"));
        assert!(!back.remove_totp("bob@desk"));
        back.save().unwrap();
        assert!(Vault::open(v.path(), &r)
            .unwrap()
            .totp("bob@desk")
            .is_none());
    }

    #[test]
    fn totp_codes_are_spent_across_saves() {
        let dir = tempfile::tempdir().unwrap();
        let r = ring(K1);
        let p = dir.path().join("vault.bin");
        let now = 1_700_000_000_000;
        let secret = Vault::update(&p, &r, true, |v| v.enroll_totp("alice", now)).unwrap();
        let code = secret.code_at(now).unwrap();
        // First use, in one process.
        let step = Vault::update(&p, &r, false, |v| Ok(v.verify_totp("alice", &code, now)))
            .unwrap()
            .unwrap();
        // The same code a second later, in another: a replay.
        let again = Vault::update(&p, &r, false, |v| {
            Ok(v.verify_totp("alice", &code, now + 1000))
        })
        .unwrap();
        assert_eq!(again, Err(TotpError::Replayed));
        let back = Vault::open(&p, &r).unwrap();
        assert_eq!(back.totp("alice").unwrap().last_step, Some(step));
        let mut back = back;
        assert_eq!(
            back.verify_totp("carol", "123456", now),
            Err(TotpError::NotEnrolled("carol".into()))
        );
        // Re-enrolling resets the replay state with the new secret.
        let fresh = back.enroll_totp("alice", now).unwrap();
        assert_eq!(back.totp("alice").unwrap().last_step, None);
        assert!(back
            .verify_totp("alice", &fresh.code_at(now).unwrap(), now)
            .is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn vault_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (v, _) = vault_with_keys(dir.path(), &ring(K1), 1);
        let mode = fs::metadata(v.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
    }
}
