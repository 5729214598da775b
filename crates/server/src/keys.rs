//! `portcullis keys ...`: managing the key vault from the command line, also while the server
//! runs (it reloads the vault when the file changes).
//!
//! Every change (key created, key revoked, master key rotated or retired) is an event in the
//! audit log, encrypted under the master key: the commands' own log
//! `<data_dir>/audit/audit_cli-*.seg`, beside the running server's (`portcullis audit export`
//! reads both). Every failure — bad config, no or wrong master key,
//! tampered or truncated vault, bad input — is a message on stderr and exit code 2.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use portcullis_auth::clock::{format_rfc3339_ms, now_ms, parse_rfc3339_ms};
use portcullis_auth::key::{parse_ed25519_public_key, parse_ip_allowlist};
use portcullis_auth::vault::MASTER_KEY_ENV;
use portcullis_auth::{
    AuditEvent, AuditKind, AuditSink, KeyInfo, KeySpec, MasterKey, MasterKeyring, Outcome, Scopes,
    Vault,
};
use portcullis_journal::SealedAuditLog;

use crate::at_rest::{open_cli_audit, release_key};
use crate::config::{self, Settings};
use crate::security::{load_keyring, replace_key_file, KeySource};

/// `portcullis keys`: create, list and revoke API keys; rotate the master key.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// TOML config file naming the data dir (vault `<data_dir>/vault.bin`, audit log
    /// `<data_dir>/audit/`) and `auth.master_key_file`; without it, the embedded default
    /// (data dir `./var`, master key `./var/master.key`).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create an API key and print its id and secret. The secret is shown this once.
    Create {
        /// The one account the key acts for.
        #[arg(long, value_name = "ACCOUNT")]
        account: String,
        /// Comma-separated scopes: read, trade, admin.
        #[arg(long, value_name = "LIST")]
        scopes: String,
        /// Allow the key only from this address or CIDR (IPv4 or IPv6); repeat for several.
        /// Default: any address.
        #[arg(long = "ip", value_name = "CIDR")]
        ip: Vec<String>,
        /// Expiry, RFC 3339 (e.g. 2030-01-31T00:00:00Z); the key is refused from then on.
        #[arg(long, value_name = "RFC3339")]
        expires: Option<String>,
        /// An Ed25519 public key (base64 of the 32 raw bytes, or of its DER, or PEM) instead of
        /// an HMAC secret, for WebSocket `session.logon`.
        #[arg(long, value_name = "B64")]
        ed25519_public_key: Option<String>,
        /// Print `{"key_id": ..., "secret": ...}` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the keys (never their secrets).
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: new Logons with it are refused, and a running server ends the sessions
    /// logged on with it at once.
    Revoke {
        /// The key id (`pk_...`).
        key_id: String,
        /// Print `{"key_id": ..., "revoked": true|false}` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Generate a new master key and re-encrypt the vault under it. The new keyring (new key
    /// first, the old ones after it) replaces `auth.master_key_file`, or goes to
    /// `--new-key-file`, or to stdout with `--print`; it is written before the vault changes.
    RotateMaster {
        /// Write the new keyring to this new file (mode 0600) instead of replacing the key file.
        #[arg(long, value_name = "PATH", conflicts_with = "print")]
        new_key_file: Option<PathBuf>,
        /// Print the new keyring for `PORTCULLIS_MASTER_KEY` instead of writing a file.
        #[arg(long)]
        print: bool,
        /// Id of the new master key (default: one more than the largest numeric id).
        #[arg(long, value_name = "ID")]
        new_key_id: Option<String>,
    },
    /// Remove a master key from the key file once the vault is no longer encrypted under it.
    RetireMaster {
        /// The id of the master key to remove.
        key_id: String,
    },
    /// Generate a master key (a one-key keyring) into a new key file (mode 0600), or print it.
    NewMasterKey {
        /// The file to create; without it the keyring is printed (for `PORTCULLIS_MASTER_KEY`).
        #[arg(long, value_name = "PATH")]
        key_file: Option<PathBuf>,
        /// The key's id.
        #[arg(long, value_name = "ID", default_value = "1")]
        id: String,
    },
}

/// Runs a `keys` command; the error is printed by the caller (exit code 2).
pub fn run(args: KeysArgs) -> Result<()> {
    if let KeysCommand::NewMasterKey { key_file, id } = &args.command {
        return new_master_key(key_file.as_deref(), id);
    }
    let settings = match &args.config {
        Some(path) => {
            config::load(path).map_err(|e| anyhow!("config error in {}: {e}", path.display()))?
        }
        None => config::embedded_default()
            .map_err(|e| anyhow!("config error in the embedded default: {e}"))?,
    };
    match args.command {
        KeysCommand::Create {
            account,
            scopes,
            ip,
            expires,
            ed25519_public_key,
            json,
        } => {
            let spec = key_spec(
                account,
                &scopes,
                &ip,
                expires.as_deref(),
                ed25519_public_key,
            )?;
            create(&settings, spec, json)
        }
        KeysCommand::List { json } => list(&settings, json),
        KeysCommand::Revoke { key_id, json } => revoke(&settings, &key_id, json),
        KeysCommand::RotateMaster {
            new_key_file,
            print,
            new_key_id,
        } => rotate_master(&settings, new_key_file.as_deref(), print, new_key_id),
        KeysCommand::RetireMaster { key_id } => retire_master(&settings, &key_id),
        KeysCommand::NewMasterKey { .. } => unreachable!("handled above"),
    }
}

fn key_spec(
    account: String,
    scopes: &str,
    ip: &[String],
    expires: Option<&str>,
    ed25519: Option<String>,
) -> Result<KeySpec> {
    let scopes = Scopes::parse(scopes).context("--scopes")?;
    let mut spec = KeySpec::new(&account, scopes);
    spec.ip_allowlist = parse_ip_allowlist(ip).context("--ip")?;
    spec.expires_at = expires
        .map(parse_rfc3339_ms)
        .transpose()
        .context("--expires")?;
    spec.ed25519_public_key = ed25519
        .as_deref()
        .map(parse_ed25519_public_key)
        .transpose()
        .context("--ed25519-public-key")?;
    Ok(spec)
}

/// The audit log (encrypted under `ring`), opened before anything changes so that no change
/// goes unaudited.
fn audit_log(settings: &Settings, ring: &MasterKeyring) -> Result<SealedAuditLog> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create the data dir {}", settings.data_dir.display()))?;
    open_cli_audit(settings, ring)
}

/// Records and fsyncs one event: the command reports success only once it is durable.
fn record(audit: &SealedAuditLog, event: AuditEvent) -> Result<()> {
    audit
        .record(&event)
        .and_then(|()| audit.sync().map_err(std::io::Error::other))
        .with_context(|| {
            format!(
                "the change was made, but its audit event could not be written to {}",
                audit.dir().display()
            )
        })
}

fn require_vault(settings: &Settings) -> Result<PathBuf> {
    let path = settings.vault_path();
    if std::fs::symlink_metadata(&path).is_err() {
        bail!(
            "no key vault at {} yet: `portcullis keys create` (or starting the server) creates it",
            path.display()
        );
    }
    Ok(path)
}

fn create(settings: &Settings, spec: KeySpec, json: bool) -> Result<()> {
    // The embedded default creates its dev master key here as `serve` would.
    let keyring = load_keyring(settings, true)?;
    let audit = audit_log(settings, &keyring.ring)?;
    let now = now_ms();
    let account = spec.account.clone();
    let scopes = spec.scopes;
    let detail = format!(
        "scopes {scopes}; ip allowlist {}; expires {}; credential {}",
        if spec.ip_allowlist.is_empty() {
            "any".to_owned()
        } else {
            spec.ip_allowlist
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        },
        spec.expires_at
            .map_or_else(|| "never".to_owned(), format_rfc3339_ms),
        if spec.ed25519_public_key.is_some() {
            "ed25519"
        } else {
            "hmac"
        }
    );
    let path = settings.vault_path();
    let key = Vault::update(&path, &keyring.ring, true, |v| v.create_key(spec, now))?;
    let audited = record(
        &audit,
        AuditEvent::new(AuditKind::KeyCreated, Outcome::Ok, now)
            .key_id(key.key_id.as_str())
            .account(&account)
            .reason("cli")
            .detail(detail),
    );
    let secret = key.secret.as_ref().map(|s| s.expose());
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({ "key_id": key.key_id.as_str(), "secret": secret });
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "key id:  {}", key.key_id)?;
        match secret {
            Some(s) => {
                writeln!(out, "secret:  {s}")?;
                writeln!(
                    out,
                    "(the secret is shown this once: store it now; the HMAC key is this text as is)"
                )?;
            }
            None => writeln!(out, "secret:  none (Ed25519 key)")?,
        }
        writeln!(out, "account: {account}, scopes: {scopes}")?;
    }
    out.flush()?;
    audited
}

fn list(settings: &Settings, json: bool) -> Result<()> {
    let path = require_vault(settings)?;
    let keyring = load_keyring(settings, false)?;
    let vault = Vault::open(&path, &keyring.ring)?;
    let now = now_ms();
    // An expired key is still "active" in the vault; show what a logon would meet.
    let infos: Vec<KeyInfo> = vault
        .list()
        .map(|k| {
            let mut info = k.info();
            if info.status == "active" && k.is_expired(now) {
                info.status = "expired";
            }
            info
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&infos)?)?;
        return Ok(());
    }
    if infos.is_empty() {
        writeln!(out, "no keys in {}", path.display())?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<36} {:<16} {:<17} {:<8} {:<12} {:<24} {:<24} {:<24} IP ALLOWLIST",
        "KEY ID", "ACCOUNT", "SCOPES", "STATUS", "CREDENTIAL", "EXPIRES", "CREATED", "LAST USED"
    )?;
    for info in &infos {
        let status = info.status;
        writeln!(
            out,
            "{:<36} {:<16} {:<17} {:<8} {:<12} {:<24} {:<24} {:<24} {}",
            info.key_id,
            info.account,
            info.scopes.to_string(),
            status,
            info.credential,
            info.expires_at.as_deref().unwrap_or("never"),
            info.created_at,
            info.last_used_at.as_deref().unwrap_or("-"),
            if info.ip_allowlist.is_empty() {
                "any".to_owned()
            } else {
                info.ip_allowlist.join(",")
            }
        )?;
    }
    Ok(())
}

fn revoke(settings: &Settings, key_id: &str, json: bool) -> Result<()> {
    let path = require_vault(settings)?;
    let keyring = load_keyring(settings, false)?;
    let audit = audit_log(settings, &keyring.ring)?;
    let now = now_ms();
    let (changed, account) = Vault::update(&path, &keyring.ring, false, |v| {
        let changed = v.revoke(key_id, now)?;
        let account = v.get(key_id).map(|k| k.account.clone()).unwrap_or_default();
        Ok((changed, account))
    })?;
    let audited = if changed {
        record(
            &audit,
            AuditEvent::new(AuditKind::KeyRevoked, Outcome::Ok, now)
                .key_id(key_id)
                .account(&account)
                .reason("cli"),
        )
    } else {
        Ok(())
    };
    if json {
        println!(
            "{}",
            serde_json::json!({ "key_id": key_id, "revoked": changed })
        );
    } else if changed {
        println!("revoked {key_id} (account {account})");
    } else {
        println!("{key_id} was already revoked");
    }
    audited
}

/// One more than the largest numeric id of the keyring (1 if none is numeric).
fn next_master_id(ring: &MasterKeyring) -> String {
    ring.ids()
        .filter_map(|id| id.parse::<u64>().ok())
        .max()
        .map_or(1, |m| m.saturating_add(1))
        .to_string()
}

fn rotate_master(
    settings: &Settings,
    new_key_file: Option<&Path>,
    print: bool,
    new_key_id: Option<String>,
) -> Result<()> {
    let path = require_vault(settings)?;
    let keyring = load_keyring(settings, false)?;
    let audit = audit_log(settings, &keyring.ring)?;
    let new_id = new_key_id.unwrap_or_else(|| next_master_id(&keyring.ring));
    if keyring.ring.get(&new_id).is_some() {
        bail!("--new-key-id {new_id:?}: the keyring already has a master key with this id");
    }
    let new_ring = keyring.ring.with_current(MasterKey::generate(&new_id)?);

    // Under the vault's lock: check the vault opens, save the new keyring, then re-encrypt.
    let _lock = Vault::lock(&path)?;
    let mut vault = Vault::open(&path, &keyring.ring)?;
    let old_id = vault.encrypted_with().to_owned();
    let written_to = match (new_key_file, print, &keyring.source) {
        (Some(file), _, _) => {
            new_ring
                .write_new_key_file(file)
                .with_context(|| format!("cannot create the key file {}", file.display()))?;
            format!("the new keyring was written to {}", file.display())
        }
        (None, true, _) => {
            println!("{MASTER_KEY_ENV}={}", new_ring.to_text().as_str());
            format!("the new keyring was printed above: set {MASTER_KEY_ENV} to it")
        }
        (None, false, KeySource::File(file)) => {
            replace_key_file(file, &new_ring)?;
            format!(
                "{} now holds the new keyring (a running server re-reads it at its next reload)",
                file.display()
            )
        }
        (None, false, KeySource::Env) => bail!(
            "the master key comes from {MASTER_KEY_ENV}, which this command cannot change: pass \
             --new-key-file PATH to write the new keyring to a file, or --print to print it"
        ),
    };
    vault.rotate_master(&new_ring)?;
    let now = now_ms();
    let audited = record(
        &audit,
        AuditEvent::new(AuditKind::MasterKeyRotated, Outcome::Ok, now)
            .reason("cli")
            .detail(format!(
                "vault re-encrypted from master key {old_id:?} to {new_id:?}"
            )),
    );
    let ids: Vec<&str> = new_ring.ids().collect();
    eprintln!(
        "vault {} re-encrypted under master key {new_id:?} (was {old_id:?}); {written_to}.\n\
         keyring: {} (first = current). Once every process uses the new keyring, remove the old \
         key with `portcullis keys retire-master {old_id}`.",
        path.display(),
        ids.join(", ")
    );
    audited
}

fn retire_master(settings: &Settings, key_id: &str) -> Result<()> {
    let path = require_vault(settings)?;
    let keyring = load_keyring(settings, false)?;
    let audit = audit_log(settings, &keyring.ring)?;
    let KeySource::File(file) = &keyring.source else {
        bail!(
            "the master key comes from {MASTER_KEY_ENV}: remove the entry {key_id}:... from the \
             variable yourself once the vault is no longer encrypted under it"
        );
    };
    if keyring.ring.get(key_id).is_none() {
        bail!("{} has no master key with id {key_id:?}", file.display());
    }
    let _lock = Vault::lock(&path)?;
    let vault = Vault::open(&path, &keyring.ring)?;
    if vault.encrypted_with() == key_id {
        bail!(
            "the vault is still encrypted under master key {key_id:?}: run `portcullis keys \
             rotate-master` first"
        );
    }
    let Some(new_ring) = keyring.ring.without(key_id) else {
        bail!("master key {key_id:?} is the only key of the keyring");
    };
    // The message stores, the audit logs and the journal must not need the key any more.
    for what in release_key(settings, &keyring.ring, key_id)? {
        eprintln!(
            "re-encrypted {what} under master key {:?}",
            keyring.ring.current().id()
        );
    }
    replace_key_file(file, &new_ring)?;
    let audited = record(
        &audit,
        AuditEvent::new(AuditKind::MasterKeyRotated, Outcome::Ok, now_ms())
            .reason("master_key_retired")
            .detail(format!("master key {key_id:?} removed from the keyring")),
    );
    let ids: Vec<&str> = new_ring.ids().collect();
    eprintln!(
        "master key {key_id:?} removed from {}; keyring: {}",
        file.display(),
        ids.join(", ")
    );
    audited
}

fn new_master_key(key_file: Option<&Path>, id: &str) -> Result<()> {
    let ring = MasterKeyring::generate(id)?;
    match key_file {
        Some(file) => {
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            ring.write_new_key_file(file)
                .with_context(|| format!("cannot create the key file {}", file.display()))?;
            eprintln!(
                "master key {id:?} written to {} (mode 0600); name it in auth.master_key_file",
                file.display()
            );
        }
        None => println!("{}", ring.to_text().as_str()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_master_id_counts_up_from_numeric_ids() {
        let ring = MasterKeyring::generate("dev").unwrap();
        assert_eq!(next_master_id(&ring), "1");
        let ring = ring.with_current(MasterKey::generate("7").unwrap());
        assert_eq!(next_master_id(&ring), "8");
    }

    #[test]
    fn key_spec_names_the_bad_option() {
        let e = key_spec("A".into(), "trade,fly", &[], None, None).unwrap_err();
        assert!(format!("{e:#}").starts_with("--scopes"), "{e:#}");
        let e = key_spec("A".into(), "trade", &["10.0.0.0/33".into()], None, None).unwrap_err();
        assert!(format!("{e:#}").starts_with("--ip"), "{e:#}");
        let e = key_spec("A".into(), "trade", &[], Some("tomorrow"), None).unwrap_err();
        assert!(format!("{e:#}").starts_with("--expires"), "{e:#}");
        let e = key_spec("A".into(), "trade", &[], None, Some("xx".into())).unwrap_err();
        assert!(
            format!("{e:#}").starts_with("--ed25519-public-key"),
            "{e:#}"
        );
        let s = key_spec(
            "A".into(),
            "read,trade",
            &["10.0.0.0/8".into()],
            Some("2030-01-31T00:00:00Z"),
            None,
        )
        .unwrap();
        assert_eq!(s.ip_allowlist.len(), 1);
        assert_eq!(s.expires_at, Some(1_896_048_000_000));
    }
}
