//! `portcullis admin totp-enroll --key KEY_ID`: gives an operator (an API key with the
//! `admin` scope) a TOTP secret, stored encrypted in the vault, and prints it once as an
//! `otpauth://` URI for an authenticator app (and its base32 text). Enrolling again replaces
//! the secret. The enrolment is an audit event.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use portcullis_auth::clock::now_ms;
use portcullis_auth::{AuditEvent, AuditKind, AuditSink, Outcome, Scope, Vault, VaultError};

use crate::config;
use crate::security::load_keyring;

/// Enrols `key_id` for TOTP; returns what to print: the URI and the secret, or JSON
/// `{"key_id", "otpauth_uri", "secret"}`.
pub fn totp_enroll(config_path: Option<&Path>, key_id: &str, json: bool) -> Result<String> {
    let settings = match config_path {
        Some(p) => config::load(p).map_err(|e| anyhow!("config error in {}: {e}", p.display()))?,
        None => config::embedded_default()
            .map_err(|e| anyhow!("config error in the embedded default: {e}"))?,
    };
    let path = settings.vault_path();
    if std::fs::symlink_metadata(&path).is_err() {
        bail!(
            "no key vault at {}: create the operator's key first (`portcullis keys create --scopes admin,read ...`)",
            path.display()
        );
    }
    let keyring = load_keyring(&settings, false)?;
    let audit = crate::at_rest::open_cli_audit(&settings, &keyring.ring)?;
    let now = now_ms();
    let (secret, account) = Vault::update(&path, &keyring.ring, false, |v| {
        let key = v.get(key_id).ok_or_else(|| VaultError::KeyNotFound {
            key_id: key_id.to_owned(),
        })?;
        if key.is_revoked() {
            return Ok(Err(anyhow!("key {key_id} is revoked")));
        }
        if !key.scopes.contains(Scope::Admin) {
            return Ok(Err(anyhow!(
                "key {key_id} has no admin scope (it has {}): only admin keys call the admin API",
                key.scopes
            )));
        }
        let account = key.account.clone();
        Ok(Ok((v.enroll_totp(key_id, now)?, account)))
    })??;
    audit
        .record(
            &AuditEvent::new(AuditKind::KeyCreated, Outcome::Ok, now)
                .key_id(key_id)
                .account(&account)
                .reason("totp_enrolled")
                .detail("TOTP secret enrolled for the admin API (cli)"),
        )
        .and_then(|()| audit.sync().map_err(std::io::Error::other))
        .context("the secret was enrolled, but its audit event could not be written")?;
    let uri = secret.otpauth_uri(key_id);
    let b32 = secret.to_base32();
    Ok(if json {
        serde_json::json!({
            "key_id": key_id,
            "otpauth_uri": uri.as_str(),
            "secret": b32.as_str(),
        })
        .to_string()
    } else {
        format!(
            "TOTP secret enrolled for operator {key_id} (shown this once; scan the URI as a QR code or type the secret into an authenticator app):\n  {}\n  secret: {}",
            uri.as_str(),
            b32.as_str()
        )
    })
}
