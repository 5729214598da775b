//! `portcullis liabilities ...`: proof of liabilities (DESIGN.md §1) from the command line.
//! The venue publishes a report and every customer's proof from an export of its ledger; a
//! customer verifies their proof against the published report; the publisher (or an auditor
//! given every proof) audits the whole publication. The server keeps no balances: the input
//! is the ledger's CSV (`account,asset,balance`). The work is in `portcullis-liabilities`.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand};
use portcullis_liabilities::{
    publish, verify, Auditor, BalanceSheet, InclusionProof, Publication, Report,
};

/// `portcullis liabilities ...`.
#[derive(Debug, Args)]
pub struct LiabilitiesArgs {
    #[command(subcommand)]
    command: LiabilitiesCommand,
}

#[derive(Debug, Subcommand)]
enum LiabilitiesCommand {
    /// Build the report and one proof per account from the ledger's balances: writes
    /// OUT/report.json (to publish) and OUT/proofs.jsonl (a proof per line, by account, to
    /// give each customer theirs).
    Publish {
        /// CSV with the header `account,asset,balance` and a line per account and asset.
        #[arg(long, value_name = "FILE")]
        balances: PathBuf,
        /// A directory without a report in it (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// When the balances were taken (RFC 3339); now if not given.
        #[arg(long, value_name = "TIME")]
        as_of: Option<String>,
        /// Print the report as JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Check that a proof counts its account's balances in a published report: exit 0 if it
    /// does, 1 if it does not.
    Verify {
        /// The published report.json.
        #[arg(long, value_name = "FILE")]
        report: PathBuf,
        /// The customer's proof.
        #[arg(long, value_name = "FILE")]
        proof: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a whole publication: every proof verifies, one per account, and the totals are
    /// the sum of the balances: exit 0 if so, 1 if not.
    Audit {
        /// The report.json.
        #[arg(long, value_name = "FILE")]
        report: PathBuf,
        /// The proofs.jsonl of the publication.
        #[arg(long, value_name = "FILE")]
        proofs: PathBuf,
    },
    /// Print one account's proof from a publication's proofs.jsonl (to hand it to the
    /// customer).
    Proof {
        /// The proofs.jsonl of the publication.
        #[arg(long, value_name = "FILE")]
        proofs: PathBuf,
        /// The account.
        #[arg(long)]
        account: String,
    },
}

/// How a `liabilities` command failed.
#[derive(Debug)]
pub enum LiabilitiesError {
    /// Unreadable or invalid input, or a file that cannot be written: exit code 2.
    BadInput(anyhow::Error),
    /// The proof or the publication does not verify: exit code 1.
    NotVerified(String),
}

impl From<anyhow::Error> for LiabilitiesError {
    fn from(e: anyhow::Error) -> Self {
        Self::BadInput(e)
    }
}

/// Runs a `liabilities` command; `Ok` is what to print.
pub fn run(args: LiabilitiesArgs) -> Result<String, LiabilitiesError> {
    match args.command {
        LiabilitiesCommand::Publish {
            balances,
            out,
            as_of,
            json,
        } => {
            let as_of = as_of.unwrap_or_else(|| {
                portcullis_auth::clock::format_rfc3339_ms(portcullis_auth::clock::now_ms())
            });
            Ok(run_publish(&balances, &out, &as_of, json)?)
        }
        LiabilitiesCommand::Verify {
            report,
            proof,
            json,
        } => {
            let r: Report = read_json(&report, "report")?;
            let p: InclusionProof = read_json(&proof, "proof")?;
            let inc = verify(&r, &p).map_err(|e| {
                LiabilitiesError::NotVerified(format!(
                    "NOT VERIFIED: {} is not shown to be counted in {}: {e}",
                    p.account,
                    report.display()
                ))
            })?;
            if json {
                let v = serde_json::json!({
                    "verified": true,
                    "account": inc.account,
                    "as_of": r.as_of,
                    "commitment": r.commitment,
                    "balances": inc.balances,
                    "totals": r.assets,
                });
                return Ok(v.to_string());
            }
            let mut s = format!(
                "verified: the balances of {} are counted in the liabilities published as of {}\n",
                inc.account, r.as_of
            );
            for (b, t) in inc.balances.iter().zip(&r.assets) {
                let _ = writeln!(s, "  {:<10} {} of a total {}", b.asset, b.amount, t.total);
            }
            let _ = write!(s, "commitment {}", r.commitment);
            Ok(s)
        }
        LiabilitiesCommand::Audit { report, proofs } => {
            let r: Report = read_json(&report, "report")?;
            let mut auditor = Auditor::new(&r)
                .map_err(|e| LiabilitiesError::NotVerified(format!("AUDIT FAILED: {e}")))?;
            for_each_proof(&proofs, |line, proof| {
                auditor.add(&proof).map_err(|e| {
                    LiabilitiesError::NotVerified(format!(
                        "AUDIT FAILED: {} line {line}: {e}",
                        proofs.display()
                    ))
                })?;
                Ok(true)
            })?;
            let a = auditor
                .finish()
                .map_err(|e| LiabilitiesError::NotVerified(format!("AUDIT FAILED: {e}")))?;
            Ok(format!(
                "audited: {} accounts, every proof verifies against {} (as of {}), and the totals are the sum of their balances",
                a.accounts,
                report.display(),
                r.as_of
            ))
        }
        LiabilitiesCommand::Proof { proofs, account } => {
            let mut found = None;
            for_each_proof(&proofs, |_, proof| {
                if proof.account == account {
                    found = Some(proof);
                    return Ok(false);
                }
                Ok(true)
            })?;
            let proof = found.ok_or_else(|| {
                LiabilitiesError::BadInput(anyhow!(
                    "no proof for account {account:?} in {}",
                    proofs.display()
                ))
            })?;
            Ok(serde_json::to_string_pretty(&proof).map_err(anyhow::Error::from)?)
        }
    }
}

/// Calls `f` with each proof of a proofs.jsonl and its line number until it returns false.
fn for_each_proof(
    path: &Path,
    mut f: impl FnMut(usize, InclusionProof) -> Result<bool, LiabilitiesError>,
) -> Result<(), LiabilitiesError> {
    let file = fs::File::open(path)
        .with_context(|| format!("cannot read the proofs {}", path.display()))?;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read the proofs {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let proof: InclusionProof = serde_json::from_str(&line)
            .with_context(|| format!("{} line {}: not a valid proof", path.display(), i + 1))?;
        if !f(i + 1, proof)? {
            break;
        }
    }
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("the {what} {} is not a valid {what}", path.display()))
}

fn run_publish(balances: &Path, out: &Path, as_of: &str, json: bool) -> Result<String> {
    let text = fs::read_to_string(balances)
        .with_context(|| format!("cannot read the balances {}", balances.display()))?;
    let sheet =
        BalanceSheet::from_csv(&text).map_err(|e| anyhow!("{}: {e}", balances.display()))?;
    let p = publish(&sheet, as_of)?;
    write_publication(&p, out)?;
    if json {
        return Ok(serde_json::to_string_pretty(&p.report)?);
    }
    let mut s = format!(
        "published the liabilities of {} accounts as of {}\n",
        p.report.accounts, p.report.as_of
    );
    for a in &p.report.assets {
        let _ = writeln!(s, "  {:<10} {}", a.asset, a.total);
    }
    let _ = write!(
        s,
        "commitment {}\nreport: {} (publish it); proofs: {} (give each customer theirs)",
        p.report.commitment,
        out.join("report.json").display(),
        out.join("proofs.jsonl").display()
    );
    Ok(s)
}

/// The proofs first, readable by the owner only (they hold customers' balances and salts),
/// then, once they are on disk, the report, written under a temporary name and renamed: a
/// report on disk always has every proof beside it.
fn write_publication(p: &Publication<'_>, out: &Path) -> Result<()> {
    let report_path = out.join("report.json");
    if report_path.exists() {
        return Err(anyhow!(
            "{} exists: a publication is never overwritten; choose another --out",
            report_path.display()
        ));
    }
    create_private_dir(out)?;
    let proofs_path = out.join("proofs.jsonl");
    let mut w = BufWriter::new(open_private(&proofs_path)?);
    for proof in p.proofs() {
        serde_json::to_writer(&mut w, &proof)?;
        w.write_all(b"\n")
            .with_context(|| format!("cannot write {}", proofs_path.display()))?;
    }
    let file = w
        .into_inner()
        .map_err(|e| anyhow!("cannot write {}: {}", proofs_path.display(), e.error()))?;
    file.sync_all()
        .with_context(|| format!("cannot write {}", proofs_path.display()))?;
    let tmp = out.join(".report.json.tmp");
    let mut f = open_private(&tmp)?;
    let mut report = serde_json::to_vec_pretty(&p.report)?;
    report.push(b'\n');
    f.write_all(&report)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, &report_path)
        .with_context(|| format!("cannot write {}", report_path.display()))?;
    fs::File::open(out)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", out.display()))?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

fn open_private(path: &Path) -> Result<fs::File> {
    let mut o = fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
        .with_context(|| format!("cannot write {}", path.display()))
}
