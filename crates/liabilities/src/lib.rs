//! Proof of liabilities: a customer can check that the venue counts their balance in the
//! liabilities it publishes, without learning anyone else's.
//!
//! The venue exports every account's balances from its ledger ([`BalanceSheet`], CSV) and
//! [`publish`]es them: a Merkle sum tree whose leaves are the accounts' balances behind a
//! random salt each, placed in random order, and whose root's sums are the totals the venue
//! owes in each asset. It publishes the [`Report`] (totals, root hash, a commitment over both)
//! and hands each customer their [`InclusionProof`] (their balances, their salt, the
//! siblings on the path to the root). Anyone with the report and a proof can [`verify`] it;
//! the publisher checks the whole publication with [`audit`] before it goes out.
//!
//! What a proof shows: the account's balances, exactly as given, are added once into the
//! published totals, and no other leaf subtracts from them (sums are unsigned and every node
//! commits to both children's sums). What it reveals: the sums of its sibling subtrees, the
//! nearest being one other, unnamed account's balances. What it cannot show: that the venue
//! included every account (each customer checks their own) or that it holds the assets.
//!
//! ```
//! use portcullis_liabilities::{audit, publish, verify, BalanceSheet};
//!
//! let sheet = BalanceSheet::from_csv("account,asset,balance\nA,BTC,1.5\nB,BTC,2\nB,USDT,10\n")?;
//! let p = publish(&sheet, "2026-11-29T00:00:00Z")?;
//! assert_eq!(p.report.assets[0].total, "3.5");
//! let mine = p.proofs().find(|x| x.account == "B").unwrap();
//! assert_eq!(verify(&p.report, &mine)?.balances[1].amount, "10");
//! audit(&p.report, &p.proofs().collect::<Vec<_>>())?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod amount;
mod report;
mod sheet;
pub mod tree;

pub use report::{
    audit, publish, publish_with_salts, verify, AssetAmount, AssetTotal, Audit, AuditError,
    Auditor, Inclusion, InclusionProof, PathStep, Publication, PublishError, Report, Side,
    VerifyError, FORMAT, MAX_AS_OF_LEN, MAX_HEIGHT,
};
pub use sheet::{
    AccountBalances, Asset, BalanceSheet, SheetError, SheetErrorKind, CSV_HEADER, MAX_ACCOUNT_LEN,
    MAX_ASSETS, MAX_ASSET_LEN,
};
