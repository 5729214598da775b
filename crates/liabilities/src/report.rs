//! The published report, the customers' inclusion proofs, and their verification.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::amount::{format_amount, parse_amount, AmountError, MAX_SCALE};
use crate::sheet::{Asset, BalanceSheet};
use crate::tree::{self, CommitmentInput, Digest, SumNode};

/// The `format` of reports and proofs this version writes and reads.
pub const FORMAT: &str = "portcullis-liabilities/1";

/// The tallest tree a report may name (2^63 leaves).
pub const MAX_HEIGHT: u32 = 63;

/// The longest `as_of` text.
pub const MAX_AS_OF_LEN: usize = 64;

/// An asset of the report and the venue's total liability in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetTotal {
    /// The asset.
    pub asset: String,
    /// Decimal places its amounts are counted in.
    pub scale: u8,
    /// The sum of every account's balance, as decimal text.
    pub total: String,
}

/// The transparency report the venue publishes: the totals it owes its customers and the
/// commitment to the tree that counts every customer's balance in them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// [`FORMAT`].
    pub format: String,
    /// When the balances were taken (RFC 3339 text).
    pub as_of: String,
    /// How many accounts the tree holds.
    pub accounts: u64,
    /// The number of steps from a leaf to the root.
    pub height: u32,
    /// The assets, by name, with their totals (the root's sums).
    pub assets: Vec<AssetTotal>,
    /// The root's hash (hex).
    pub root: String,
    /// SHA-256 over every field above (hex): the value to publish where it cannot be changed
    /// later (a signed statement, a public ledger).
    pub commitment: String,
}

/// An amount of one asset in a proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetAmount {
    /// The asset.
    pub asset: String,
    /// The amount as decimal text.
    pub amount: String,
}

/// Which side of the path a sibling is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The sibling is the left child: the path comes from the right.
    Left,
    /// The sibling is the right child.
    Right,
}

/// One step from a leaf towards the root: the sibling node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathStep {
    /// Which side the sibling is on.
    pub sibling: Side,
    /// The sibling's hash (hex).
    pub hash: String,
    /// The sibling's sums, in the report's asset order, as decimal text.
    pub sums: Vec<String>,
}

/// What one customer receives: their balances, the salt that hides them in the tree, and
/// the path to the root of the report named by its commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// [`FORMAT`].
    pub format: String,
    /// The report's `as_of`.
    pub as_of: String,
    /// The report's commitment.
    pub commitment: String,
    /// The account.
    pub account: String,
    /// The leaf's salt (hex, 32 bytes).
    pub salt: String,
    /// The account's balance of every asset of the report, in its order.
    pub balances: Vec<AssetAmount>,
    /// From the leaf up.
    pub path: Vec<PathStep>,
}

/// A report and the tree behind it, which makes each account's proof on request (a
/// million accounts' proofs are gigabytes of JSON: they are written one at a time, never all
/// held at once).
#[derive(Debug, Clone)]
pub struct Publication<'a> {
    /// The report.
    pub report: Report,
    sheet: &'a BalanceSheet,
    salts: Vec<[u8; 32]>,
    /// Every level of the tree, leaves first.
    levels: Vec<Vec<SumNode>>,
    /// The leaf of each account of the sheet.
    leaf_of: Vec<usize>,
}

/// Why a publication could not be made.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PublishError {
    /// `as_of` is empty, too long or not visible ASCII.
    #[error("as_of {0:?} must be 1 to {MAX_AS_OF_LEN} visible ASCII characters")]
    AsOf(String),
    /// A total overflows 128 bits.
    #[error("a total is too large for 128 bits")]
    Overflow,
    /// Not one salt per account.
    #[error("{salts} salts for {accounts} accounts")]
    Salts {
        /// Given.
        salts: usize,
        /// Needed.
        accounts: usize,
    },
    /// The random salts could not be drawn.
    #[error("no randomness for the salts: {0}")]
    Random(String),
}

/// Why a proof or report does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VerifyError {
    /// A `format` this version does not read.
    #[error("unknown format {0:?} (this verifier reads {FORMAT:?})")]
    Format(String),
    /// A field is not what its kind requires.
    #[error("{field}: {problem}")]
    Malformed {
        /// Which field.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// The report's commitment is not the hash of its fields.
    #[error("the report's commitment does not match its contents: the report was altered")]
    ReportCommitment,
    /// The proof names another report.
    #[error("the proof is for the report with commitment {proof} (as of {as_of}), not this one ({report})")]
    OtherReport {
        /// The proof's.
        proof: String,
        /// Its `as_of`.
        as_of: String,
        /// The report's.
        report: String,
    },
    /// The proof's assets are not the report's.
    #[error("the proof's assets ({proof}) are not the report's ({report})")]
    Assets {
        /// The proof's, comma-separated.
        proof: String,
        /// The report's.
        report: String,
    },
    /// The path has not the report's height.
    #[error("the path has {got} steps, the report's tree {expected}")]
    Height {
        /// The report's.
        expected: u32,
        /// The proof's.
        got: usize,
    },
    /// A sum overflows on the way up.
    #[error("the sums overflow at step {0}")]
    Overflow(usize),
    /// The path does not lead to the report's root.
    #[error(
        "the path does not lead to the report's root: these balances are not the ones in the tree"
    )]
    Root,
    /// The root's sums are not the report's totals.
    #[error("the root's total of {asset} is {root}, the report says {report}")]
    Totals {
        /// The asset.
        asset: String,
        /// The root's.
        root: String,
        /// The report's.
        report: String,
    },
}

/// Why a set of proofs does not account for a report.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuditError {
    /// The report is not consistent on its own.
    #[error("the report: {0}")]
    Report(VerifyError),
    /// One proof does not verify.
    #[error("the proof of {account}: {error}")]
    Proof {
        /// Its account.
        account: String,
        /// Why.
        error: VerifyError,
    },
    /// An account twice.
    #[error("two proofs for account {0}")]
    DuplicateAccount(String),
    /// Two proofs for the same leaf.
    #[error("two proofs for leaf {0}")]
    DuplicateLeaf(u64),
    /// The accounts' balances do not add up to a total of the report.
    #[error("the accounts' balances of {asset} add up to {sum}, the report's total is {report}")]
    Totals {
        /// The asset.
        asset: String,
        /// The sum of the proofs' balances.
        sum: String,
        /// The report's total.
        report: String,
    },
    /// Not one proof per account.
    #[error("proofs of {got} accounts for the {expected} accounts of the report")]
    Count {
        /// The report's.
        expected: u64,
        /// Given.
        got: usize,
    },
}

/// A verified inclusion: the account's balances are counted in the report's totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inclusion {
    /// The account.
    pub account: String,
    /// Its balances as decimal text, by asset.
    pub balances: Vec<AssetAmount>,
    /// The leaf's position in the tree (0-based, left to right).
    pub leaf: u64,
}

fn hex32(field: &str, text: &str) -> Result<Digest, VerifyError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|e| VerifyError::Malformed {
        field: field.to_owned(),
        problem: format!("not 64 hex digits ({e})"),
    })?;
    Ok(out)
}

fn amount(field: &str, text: &str, scale: u8) -> Result<u128, VerifyError> {
    parse_amount(text, scale).map_err(|e: AmountError| VerifyError::Malformed {
        field: field.to_owned(),
        problem: e.to_string(),
    })
}

fn valid_as_of(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_AS_OF_LEN && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Makes the tree over every account of `sheet`, with a fresh random salt per account, and
/// returns the report and every account's proof. Leaves are placed in the order of their
/// hashes, which the salts make random: a leaf's place says nothing of its account.
pub fn publish<'a>(sheet: &'a BalanceSheet, as_of: &str) -> Result<Publication<'a>, PublishError> {
    let mut salts = vec![[0u8; 32]; sheet.accounts().len()];
    for s in &mut salts {
        getrandom::getrandom(s).map_err(|e| PublishError::Random(e.to_string()))?;
    }
    publish_with_salts(sheet, as_of, salts)
}

/// [`publish`] with given salts, one per account in the sheet's order (for tests and for
/// reproducing a publication; salts must be secret and random for privacy).
pub fn publish_with_salts<'a>(
    sheet: &'a BalanceSheet,
    as_of: &str,
    salts: Vec<[u8; 32]>,
) -> Result<Publication<'a>, PublishError> {
    if salts.len() != sheet.accounts().len() {
        return Err(PublishError::Salts {
            salts: salts.len(),
            accounts: sheet.accounts().len(),
        });
    }
    if !valid_as_of(as_of) {
        return Err(PublishError::AsOf(as_of.to_owned()));
    }
    let assets = sheet.assets();
    let n_assets = assets.len();
    let mut leaves: Vec<(SumNode, usize)> = sheet
        .accounts()
        .iter()
        .zip(&salts)
        .enumerate()
        .map(|(i, (acc, salt))| (tree::leaf(salt, &acc.account, &acc.amounts), i))
        .collect();
    leaves.sort_by_key(|(leaf, _)| leaf.hash);
    let mut leaf_of = vec![0; leaves.len()];
    for (leaf, (_, account)) in leaves.iter().enumerate() {
        leaf_of[*account] = leaf;
    }
    let levels = tree::levels(leaves.into_iter().map(|(n, _)| n).collect(), n_assets)
        .ok_or(PublishError::Overflow)?;
    let root = &levels[levels.len() - 1][0];
    let height = (levels.len() - 1) as u32;
    let totals: Vec<(&str, u8, u128)> = assets
        .iter()
        .zip(&root.sums)
        .map(|(a, t)| (a.name.as_str(), a.scale, *t))
        .collect();
    let accounts = sheet.accounts().len() as u64;
    let commitment = hex::encode(tree::commitment(&CommitmentInput {
        as_of,
        accounts,
        height,
        assets: &totals,
        root: &root.hash,
    }));
    let report = Report {
        format: FORMAT.to_owned(),
        as_of: as_of.to_owned(),
        accounts,
        height,
        assets: totals
            .iter()
            .map(|(name, scale, total)| AssetTotal {
                asset: (*name).to_owned(),
                scale: *scale,
                total: format_amount(*total, *scale),
            })
            .collect(),
        root: hex::encode(root.hash),
        commitment: commitment.clone(),
    };
    Ok(Publication {
        report,
        sheet,
        salts,
        levels,
        leaf_of,
    })
}

impl Publication<'_> {
    /// The number of accounts (and of proofs).
    pub fn len(&self) -> usize {
        self.leaf_of.len()
    }

    /// Whether there is no account (never: a sheet has at least one).
    pub fn is_empty(&self) -> bool {
        self.leaf_of.is_empty()
    }

    /// The proof of the sheet's `index`th account (in name order); `None` past the end.
    pub fn proof(&self, index: usize) -> Option<InclusionProof> {
        let acc = self.sheet.accounts().get(index)?;
        let assets = self.sheet.assets();
        let mut i = *self.leaf_of.get(index)?;
        let mut path = Vec::with_capacity(self.report.height as usize);
        for level in &self.levels[..self.levels.len() - 1] {
            let (sibling, side) = if i % 2 == 0 {
                (&level[i + 1], Side::Right)
            } else {
                (&level[i - 1], Side::Left)
            };
            path.push(PathStep {
                sibling: side,
                hash: hex::encode(sibling.hash),
                sums: sibling
                    .sums
                    .iter()
                    .zip(assets)
                    .map(|(s, a)| format_amount(*s, a.scale))
                    .collect(),
            });
            i /= 2;
        }
        Some(InclusionProof {
            format: FORMAT.to_owned(),
            as_of: self.report.as_of.clone(),
            commitment: self.report.commitment.clone(),
            account: acc.account.clone(),
            salt: hex::encode(self.salts[index]),
            balances: acc
                .amounts
                .iter()
                .zip(assets)
                .map(|(v, a)| AssetAmount {
                    asset: a.name.clone(),
                    amount: format_amount(*v, a.scale),
                })
                .collect(),
            path,
        })
    }

    /// Every account's proof, in the sheet's (name) order, made one at a time.
    pub fn proofs(&self) -> impl Iterator<Item = InclusionProof> + '_ {
        (0..self.len()).filter_map(|i| self.proof(i))
    }
}

/// The report's assets with their totals parsed.
struct CheckedReport {
    assets: Vec<Asset>,
    totals: Vec<u128>,
    root: Digest,
}

impl Report {
    /// Checks the report on its own: its format, its fields, and that its commitment is the
    /// hash of its contents.
    pub fn check(&self) -> Result<(), VerifyError> {
        self.checked().map(|_| ())
    }

    fn checked(&self) -> Result<CheckedReport, VerifyError> {
        if self.format != FORMAT {
            return Err(VerifyError::Format(self.format.clone()));
        }
        if !valid_as_of(&self.as_of) {
            return Err(VerifyError::Malformed {
                field: "as_of".into(),
                problem: format!("must be 1 to {MAX_AS_OF_LEN} visible ASCII characters"),
            });
        }
        let mut names = HashSet::new();
        let mut assets = Vec::with_capacity(self.assets.len());
        let mut totals = Vec::with_capacity(self.assets.len());
        for a in &self.assets {
            if a.scale > MAX_SCALE || !names.insert(a.asset.as_str()) {
                return Err(VerifyError::Malformed {
                    field: format!("assets.{}", a.asset),
                    problem: format!("a duplicate asset or a scale above {MAX_SCALE}"),
                });
            }
            totals.push(amount(
                &format!("assets.{}.total", a.asset),
                &a.total,
                a.scale,
            )?);
            assets.push(Asset {
                name: a.asset.clone(),
                scale: a.scale,
            });
        }
        if self.height > MAX_HEIGHT {
            return Err(VerifyError::Malformed {
                field: "height".into(),
                problem: format!("{} is above {MAX_HEIGHT}", self.height),
            });
        }
        let root = hex32("root", &self.root)?;
        let commitment = hex32("commitment", &self.commitment)?;
        let named: Vec<(&str, u8, u128)> = assets
            .iter()
            .zip(&totals)
            .map(|(a, t)| (a.name.as_str(), a.scale, *t))
            .collect();
        let expected = tree::commitment(&CommitmentInput {
            as_of: &self.as_of,
            accounts: self.accounts,
            height: self.height,
            assets: &named,
            root: &root,
        });
        if expected != commitment {
            return Err(VerifyError::ReportCommitment);
        }
        Ok(CheckedReport {
            assets,
            totals,
            root,
        })
    }
}

/// Verifies that `proof` counts its account's balances in `report`: the report is
/// consistent, the proof is for it, and the path from the account's leaf leads to the root
/// whose sums are the report's totals.
pub fn verify(report: &Report, proof: &InclusionProof) -> Result<Inclusion, VerifyError> {
    let r = report.checked()?;
    verify_checked(report, &r, proof)
}

fn verify_checked(
    report: &Report,
    r: &CheckedReport,
    proof: &InclusionProof,
) -> Result<Inclusion, VerifyError> {
    if proof.format != FORMAT {
        return Err(VerifyError::Format(proof.format.clone()));
    }
    if proof.commitment != report.commitment || proof.as_of != report.as_of {
        return Err(VerifyError::OtherReport {
            proof: proof.commitment.clone(),
            as_of: proof.as_of.clone(),
            report: report.commitment.clone(),
        });
    }
    let proof_assets: Vec<&str> = proof.balances.iter().map(|b| b.asset.as_str()).collect();
    let report_assets: Vec<&str> = r.assets.iter().map(|a| a.name.as_str()).collect();
    if proof_assets != report_assets {
        return Err(VerifyError::Assets {
            proof: proof_assets.join(","),
            report: report_assets.join(","),
        });
    }
    if proof.path.len() != report.height as usize {
        return Err(VerifyError::Height {
            expected: report.height,
            got: proof.path.len(),
        });
    }
    if proof.account.is_empty() || proof.account.len() > crate::sheet::MAX_ACCOUNT_LEN {
        return Err(VerifyError::Malformed {
            field: "account".into(),
            problem: "must be 1 to 64 characters".into(),
        });
    }
    let salt = hex32("salt", &proof.salt)?;
    let amounts = proof
        .balances
        .iter()
        .zip(&r.assets)
        .map(|(b, a)| amount(&format!("balances.{}", a.name), &b.amount, a.scale))
        .collect::<Result<Vec<u128>, _>>()?;
    let mut node = tree::leaf(&salt, &proof.account, &amounts);
    let mut leaf_index: u64 = 0;
    for (step, s) in proof.path.iter().enumerate() {
        if s.sums.len() != r.assets.len() {
            return Err(VerifyError::Malformed {
                field: format!("path[{step}].sums"),
                problem: format!("{} sums for {} assets", s.sums.len(), r.assets.len()),
            });
        }
        let sibling = SumNode {
            hash: hex32(&format!("path[{step}].hash"), &s.hash)?,
            sums: s
                .sums
                .iter()
                .zip(&r.assets)
                .map(|(v, a)| amount(&format!("path[{step}].sums.{}", a.name), v, a.scale))
                .collect::<Result<_, _>>()?,
        };
        let up = match s.sibling {
            Side::Right => tree::parent(&node, &sibling),
            Side::Left => {
                leaf_index |= 1 << step;
                tree::parent(&sibling, &node)
            }
        };
        node = up.ok_or(VerifyError::Overflow(step))?;
    }
    if node.hash != r.root {
        return Err(VerifyError::Root);
    }
    for ((sum, total), a) in node.sums.iter().zip(&r.totals).zip(&r.assets) {
        if sum != total {
            return Err(VerifyError::Totals {
                asset: a.name.clone(),
                root: format_amount(*sum, a.scale),
                report: format_amount(*total, a.scale),
            });
        }
    }
    Ok(Inclusion {
        account: proof.account.clone(),
        balances: proof.balances.clone(),
        leaf: leaf_index,
    })
}

/// What an audit of a whole publication found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// Accounts verified.
    pub accounts: u64,
}

/// Checks a whole publication, as its publisher (or an auditor given every proof) would
/// before it goes out: every proof verifies, there is one per account and per leaf, and the
/// report's totals are exactly the sum of the accounts' balances. Proofs are added one at a
/// time, so a million of them need not be held at once.
pub struct Auditor<'a> {
    report: &'a Report,
    checked: CheckedReport,
    accounts: HashSet<String>,
    leaves: HashSet<u64>,
    sums: Vec<u128>,
}

impl<'a> Auditor<'a> {
    /// Starts an audit of `report` (which must be consistent on its own).
    pub fn new(report: &'a Report) -> Result<Self, AuditError> {
        let checked = report.checked().map_err(AuditError::Report)?;
        let sums = vec![0; checked.assets.len()];
        Ok(Self {
            report,
            checked,
            accounts: HashSet::new(),
            leaves: HashSet::new(),
            sums,
        })
    }

    /// Verifies one more proof.
    pub fn add(&mut self, proof: &InclusionProof) -> Result<(), AuditError> {
        let inc = verify_checked(self.report, &self.checked, proof).map_err(|error| {
            AuditError::Proof {
                account: proof.account.clone(),
                error,
            }
        })?;
        if !self.leaves.insert(inc.leaf) {
            return Err(AuditError::DuplicateLeaf(inc.leaf));
        }
        if !self.accounts.insert(inc.account.clone()) {
            return Err(AuditError::DuplicateAccount(inc.account));
        }
        for ((sum, b), a) in self
            .sums
            .iter_mut()
            .zip(&inc.balances)
            .zip(&self.checked.assets)
        {
            // Verified above: the amount parses at the asset's scale.
            let v = parse_amount(&b.amount, a.scale).unwrap_or(0);
            *sum = sum.saturating_add(v);
        }
        Ok(())
    }

    /// Ends the audit: one proof per account, and the balances add up to the totals.
    pub fn finish(self) -> Result<Audit, AuditError> {
        let got = self.accounts.len();
        if got as u64 != self.report.accounts {
            return Err(AuditError::Count {
                expected: self.report.accounts,
                got,
            });
        }
        // Unsigned sums make padding or hidden leaves only add to the totals; this shows they
        // add nothing.
        for ((sum, total), a) in self
            .sums
            .iter()
            .zip(&self.checked.totals)
            .zip(&self.checked.assets)
        {
            if sum != total {
                return Err(AuditError::Totals {
                    asset: a.name.clone(),
                    sum: format_amount(*sum, a.scale),
                    report: format_amount(*total, a.scale),
                });
            }
        }
        Ok(Audit {
            accounts: got as u64,
        })
    }
}

/// [`Auditor`] over a slice of proofs.
pub fn audit(report: &Report, proofs: &[InclusionProof]) -> Result<Audit, AuditError> {
    let mut a = Auditor::new(report)?;
    for p in proofs {
        a.add(p)?;
    }
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sheet::AccountBalances;
    use proptest::prelude::*;

    const CSV: &str = "account,asset,balance\nACC-1,BTC,1.5\nACC-2,BTC,0.25\nACC-2,USDT,1000\nACC-3,USDT,0.5\nACC-4,ETH,3\nACC-5,BTC,0\n";

    /// A publication's report and every proof.
    struct Made {
        report: Report,
        proofs: Vec<InclusionProof>,
    }

    fn made(sheet: &BalanceSheet) -> Made {
        let p = publish(sheet, "2026-11-29T00:00:00Z").unwrap();
        Made {
            report: p.report.clone(),
            proofs: p.proofs().collect(),
        }
    }

    fn publication() -> Made {
        made(&BalanceSheet::from_csv(CSV).unwrap())
    }

    fn proof_of<'a>(p: &'a Made, account: &str) -> &'a InclusionProof {
        p.proofs.iter().find(|x| x.account == account).unwrap()
    }

    /// Recomputes a report's commitment after a test changed it, as a dishonest publisher
    /// would.
    fn recommit(r: &mut Report) {
        let totals: Vec<(String, u8, u128)> = r
            .assets
            .iter()
            .map(|a| {
                (
                    a.asset.clone(),
                    a.scale,
                    parse_amount(&a.total, a.scale).unwrap(),
                )
            })
            .collect();
        let named: Vec<(&str, u8, u128)> = totals
            .iter()
            .map(|(n, s, t)| (n.as_str(), *s, *t))
            .collect();
        r.commitment = hex::encode(tree::commitment(&CommitmentInput {
            as_of: &r.as_of,
            accounts: r.accounts,
            height: r.height,
            assets: &named,
            root: &hex32("root", &r.root).unwrap(),
        }));
    }

    #[test]
    fn the_report_has_the_totals_and_every_proof_verifies() {
        let p = publication();
        let totals: Vec<(&str, u8, &str)> = p
            .report
            .assets
            .iter()
            .map(|a| (a.asset.as_str(), a.scale, a.total.as_str()))
            .collect();
        assert_eq!(
            totals,
            [("BTC", 2, "1.75"), ("ETH", 0, "3"), ("USDT", 1, "1000.5")]
        );
        assert_eq!(p.report.accounts, 5);
        assert_eq!(p.report.height, 3);
        assert_eq!(p.proofs.len(), 5);
        let inc = verify(&p.report, proof_of(&p, "ACC-2")).unwrap();
        assert_eq!(inc.account, "ACC-2");
        let amounts: Vec<(&str, &str)> = inc
            .balances
            .iter()
            .map(|b| (b.asset.as_str(), b.amount.as_str()))
            .collect();
        assert_eq!(amounts, [("BTC", "0.25"), ("ETH", "0"), ("USDT", "1000")]);
        assert_eq!(audit(&p.report, &p.proofs).unwrap().accounts, 5);
    }

    #[test]
    fn reports_and_proofs_survive_json() {
        let p = publication();
        let report: Report =
            serde_json::from_str(&serde_json::to_string_pretty(&p.report).unwrap()).unwrap();
        let proof: InclusionProof =
            serde_json::from_str(&serde_json::to_string(proof_of(&p, "ACC-1")).unwrap()).unwrap();
        assert_eq!(verify(&report, &proof).unwrap().account, "ACC-1");
        // Unknown fields are refused rather than ignored.
        let mut v = serde_json::to_value(&p.report).unwrap();
        v["extra"] = serde_json::json!(1);
        assert!(serde_json::from_value::<Report>(v).is_err());
    }

    #[test]
    fn a_changed_balance_name_salt_or_path_does_not_verify() {
        let p = publication();
        let good = proof_of(&p, "ACC-2").clone();
        let mut more = good.clone();
        more.balances[2].amount = "1000.1".into();
        assert_eq!(verify(&p.report, &more), Err(VerifyError::Root));
        let mut other = good.clone();
        other.account = "ACC-9".into();
        assert_eq!(verify(&p.report, &other), Err(VerifyError::Root));
        let mut salt = good.clone();
        salt.salt = hex::encode([7u8; 32]);
        assert_eq!(verify(&p.report, &salt), Err(VerifyError::Root));
        let mut side = good.clone();
        side.path[0].sibling = match side.path[0].sibling {
            Side::Left => Side::Right,
            Side::Right => Side::Left,
        };
        assert_eq!(verify(&p.report, &side), Err(VerifyError::Root));
        // Moving value into a sibling's sum (to shrink this leaf's share) changes its hash.
        let mut sums = good.clone();
        sums.path[1].sums[0] = "100".into();
        assert_eq!(verify(&p.report, &sums), Err(VerifyError::Root));
        let mut short = good.clone();
        short.path.pop();
        assert_eq!(
            verify(&p.report, &short),
            Err(VerifyError::Height {
                expected: 3,
                got: 2
            })
        );
        let mut scale = good.clone();
        scale.balances[0].amount = "0.250000001".into();
        assert!(matches!(
            verify(&p.report, &scale),
            Err(VerifyError::Malformed { .. })
        ));
        let mut hexed = good;
        hexed.path[2].hash = "zz".into();
        assert!(matches!(
            verify(&p.report, &hexed),
            Err(VerifyError::Malformed { ref field, .. }) if field == "path[2].hash"
        ));
    }

    #[test]
    fn a_changed_report_does_not_verify() {
        let p = publication();
        let proof = proof_of(&p, "ACC-1");
        // Lower totals, commitment left as it was: the report contradicts itself.
        let mut lower = p.report.clone();
        lower.assets[0].total = "1.5".into();
        assert_eq!(verify(&lower, proof), Err(VerifyError::ReportCommitment));
        let mut fewer = p.report.clone();
        fewer.accounts = 4;
        assert_eq!(verify(&fewer, proof), Err(VerifyError::ReportCommitment));
        // Lower totals with a fresh commitment: a report other than the one the proof is for.
        lower.assets[0].total = "1.5".into();
        recommit(&mut lower);
        assert!(matches!(
            verify(&lower, proof),
            Err(VerifyError::OtherReport { .. })
        ));
        // ... and a proof made to name it leads to a root whose sums are not its totals.
        let mut forged = proof.clone();
        forged.commitment = lower.commitment.clone();
        assert_eq!(
            verify(&lower, &forged),
            Err(VerifyError::Totals {
                asset: "BTC".into(),
                root: "1.75".into(),
                report: "1.5".into()
            })
        );
        let mut v2 = p.report.clone();
        v2.format = "portcullis-liabilities/2".into();
        assert!(matches!(verify(&v2, proof), Err(VerifyError::Format(_))));
        let mut tall = p.report.clone();
        tall.height = 64;
        recommit(&mut tall);
        assert!(matches!(
            verify(&tall, proof),
            Err(VerifyError::Malformed { .. })
        ));
        // A proof of another publication of the same balances (other salts).
        let again = publication();
        assert!(matches!(
            verify(&p.report, proof_of(&again, "ACC-1")),
            Err(VerifyError::OtherReport { .. })
        ));
    }

    #[test]
    fn an_audit_finds_missing_duplicate_and_hidden_accounts() {
        let p = publication();
        assert_eq!(
            audit(&p.report, &p.proofs[1..]),
            Err(AuditError::Count {
                expected: 5,
                got: 4
            })
        );
        let mut lower = p.report.clone();
        lower.assets[0].total = "0".into();
        assert_eq!(
            audit(&lower, &p.proofs),
            Err(AuditError::Report(VerifyError::ReportCommitment))
        );
        // A publisher that adds a leaf of its own and hands out proofs for the real accounts
        // only, claiming their number: every proof verifies, the totals do not add up.
        let mut accounts = BalanceSheet::from_csv(CSV).unwrap().accounts().to_vec();
        accounts.push(AccountBalances {
            account: "HIDDEN".into(),
            amounts: vec![100, 0, 0], // 1 BTC at scale 2
        });
        let padded = BalanceSheet::new(
            BalanceSheet::from_csv(CSV).unwrap().assets().to_vec(),
            accounts,
        )
        .unwrap();
        let q = made(&padded);
        let mut report = q.report.clone();
        report.accounts = 5;
        recommit(&mut report);
        let proofs: Vec<InclusionProof> = q
            .proofs
            .iter()
            .filter(|x| x.account != "HIDDEN")
            .map(|x| InclusionProof {
                commitment: report.commitment.clone(),
                ..x.clone()
            })
            .collect();
        for x in &proofs {
            verify(&report, x).unwrap();
        }
        assert_eq!(
            audit(&report, &proofs),
            Err(AuditError::Totals {
                asset: "BTC".into(),
                sum: "1.75".into(),
                report: "2.75".into()
            })
        );
    }

    #[test]
    fn one_account_is_a_tree_of_height_zero() {
        let sheet = BalanceSheet::from_csv("account,asset,balance\nONLY,BTC,2\n").unwrap();
        let p = publish(&sheet, "t").unwrap();
        assert_eq!(p.report.height, 0);
        assert_eq!(verify(&p.report, &p.proof(0).unwrap()).unwrap().leaf, 0);
        assert!(p.proof(1).is_none());
        assert!(matches!(publish(&sheet, ""), Err(PublishError::AsOf(_))));
    }

    fn sheet_strategy() -> impl Strategy<Value = BalanceSheet> {
        (1usize..4, 1usize..40).prop_flat_map(|(n_assets, n_accounts)| {
            (
                proptest::collection::vec(0u8..=MAX_SCALE, n_assets),
                proptest::collection::vec(
                    proptest::collection::vec(any::<u64>(), n_assets),
                    n_accounts,
                ),
            )
                .prop_map(move |(scales, rows)| {
                    let assets = scales
                        .iter()
                        .enumerate()
                        .map(|(i, s)| Asset {
                            name: format!("A{i}"),
                            scale: *s,
                        })
                        .collect();
                    let accounts = rows
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| AccountBalances {
                            account: format!("ACC-{i}"),
                            amounts: v.into_iter().map(u128::from).collect(),
                        })
                        .collect();
                    BalanceSheet::new(assets, accounts).unwrap()
                })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn every_account_verifies_and_the_totals_are_the_sums(sheet in sheet_strategy()) {
            let p = made(&sheet);
            for (i, a) in sheet.assets().iter().enumerate() {
                let sum: u128 = sheet.accounts().iter().map(|x| x.amounts[i]).sum();
                prop_assert_eq!(&p.report.assets[i].total, &format_amount(sum, a.scale));
            }
            let mut leaves = HashSet::new();
            for (acc, proof) in sheet.accounts().iter().zip(&p.proofs) {
                let inc = verify(&p.report, proof).unwrap();
                prop_assert_eq!(&inc.account, &acc.account);
                prop_assert!(leaves.insert(inc.leaf));
                prop_assert!(inc.leaf < p.report.accounts);
            }
            prop_assert!(audit(&p.report, &p.proofs).is_ok());
        }

        #[test]
        fn any_changed_character_of_a_proof_fails_or_changes_nothing(
            sheet in sheet_strategy(),
            which in any::<prop::sample::Index>(),
            pos in any::<prop::sample::Index>(),
            byte in 0x20u8..0x7f,
        ) {
            let p = made(&sheet);
            let proof = &p.proofs[which.index(p.proofs.len())];
            let text = serde_json::to_string(proof).unwrap();
            let mut bytes = text.clone().into_bytes();
            let i = pos.index(bytes.len());
            bytes[i] = byte;
            let Ok(changed) = String::from_utf8(bytes) else { return Ok(()) };
            // Never a panic; a verified result only for the same proof or the same values in
            // another spelling (a leading zero, a trailing fractional zero).
            if let Ok(q) = serde_json::from_str::<InclusionProof>(&changed) {
                if let Ok(inc) = verify(&p.report, &q) {
                    prop_assert_eq!(&inc.account, &proof.account);
                    for (a, b) in inc.balances.iter().zip(&proof.balances) {
                        let scale = p.report.assets.iter().find(|x| x.asset == a.asset).unwrap().scale;
                        prop_assert_eq!(parse_amount(&a.amount, scale), parse_amount(&b.amount, scale));
                    }
                }
            }
        }
    }
}
