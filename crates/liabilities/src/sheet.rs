//! The input: every customer account's balance of every asset, from the venue's ledger, as
//! CSV (`account,asset,balance`). Portcullis keeps no balances itself.

use std::collections::{BTreeMap, HashMap};

use thiserror::Error;

use crate::amount::{decimal_places, parse_amount, AmountError, MAX_SCALE};

/// The longest account name (as for FIX sessions' accounts in the server config).
pub const MAX_ACCOUNT_LEN: usize = 64;
/// The longest asset name.
pub const MAX_ASSET_LEN: usize = 32;
/// The most assets one publication covers (every path step carries a sum per asset).
pub const MAX_ASSETS: usize = 256;

/// The header line the CSV must start with.
pub const CSV_HEADER: &str = "account,asset,balance";

/// An asset and the decimal places its amounts are counted in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    /// Its name (`BTC`, `USDT`).
    pub name: String,
    /// Decimal places: amounts are integers of `10^-scale`.
    pub scale: u8,
}

/// One account's balances, one per asset of the sheet, in the sheet's asset order (zero
/// where the input had no line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountBalances {
    /// The account's name.
    pub account: String,
    /// Units of each asset.
    pub amounts: Vec<u128>,
}

/// Every account's balances: what the venue owes its customers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceSheet {
    assets: Vec<Asset>,
    accounts: Vec<AccountBalances>,
}

/// What is wrong with a line of the input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SheetErrorKind {
    /// The first line is not the header.
    #[error("the first line must be the header {CSV_HEADER:?}")]
    Header,
    /// Not three fields.
    #[error("expected 3 fields (account,asset,balance), found {0}")]
    Fields(usize),
    /// A bad account name.
    #[error("account {0:?} must be 1 to {MAX_ACCOUNT_LEN} visible ASCII characters")]
    Account(String),
    /// A bad asset name.
    #[error("asset {0:?} must be 1 to {MAX_ASSET_LEN} characters of A-Z a-z 0-9 . _ -")]
    Asset(String),
    /// A bad balance.
    #[error("balance: {0}")]
    Amount(AmountError),
    /// More decimal places than any asset may have.
    #[error(
        "balance {text:?} of {asset} has {places} decimal places, at most {MAX_SCALE} are allowed"
    )]
    Scale {
        /// The asset.
        asset: String,
        /// The text.
        text: String,
        /// Its places.
        places: usize,
    },
    /// The same account and asset twice.
    #[error("{account} {asset} is given twice (first on line {first_line})")]
    Duplicate {
        /// The account.
        account: String,
        /// The asset.
        asset: String,
        /// Where it was first.
        first_line: usize,
    },
    /// Too many assets.
    #[error("more than {MAX_ASSETS} assets")]
    TooManyAssets,
    /// An asset's total does not fit 128 bits.
    #[error("the total of {0} is too large")]
    TotalTooLarge(String),
    /// No account at all.
    #[error("no balances: a publication needs at least one account")]
    Empty,
}

/// An input error, with its 1-based line (0 when it concerns the whole file).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {kind}")]
pub struct SheetError {
    /// The line.
    pub line: usize,
    /// The problem.
    pub kind: SheetErrorKind,
}

fn err(line: usize, kind: SheetErrorKind) -> SheetError {
    SheetError { line, kind }
}

fn valid_account(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ACCOUNT_LEN && s.bytes().all(|b| b.is_ascii_graphic())
}

fn valid_asset(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ASSET_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl BalanceSheet {
    /// Reads the CSV: the header [`CSV_HEADER`], then a line per account and asset (blank
    /// lines and lines starting with `#` are skipped; spaces around fields are ignored).
    /// An asset's scale is the most decimal places any of its balances has.
    pub fn from_csv(text: &str) -> Result<Self, SheetError> {
        struct Row<'a> {
            line: usize,
            account: &'a str,
            asset: &'a str,
            balance: &'a str,
        }
        let mut rows = Vec::new();
        let mut header_seen = false;
        for (i, raw) in text.split('\n').enumerate() {
            let line = i + 1;
            let l = raw.strip_suffix('\r').unwrap_or(raw).trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if !header_seen {
                let fields: Vec<&str> = l.split(',').map(str::trim).collect();
                if fields != ["account", "asset", "balance"] {
                    return Err(err(line, SheetErrorKind::Header));
                }
                header_seen = true;
                continue;
            }
            let fields: Vec<&str> = l.split(',').map(str::trim).collect();
            let [account, asset, balance] = fields[..] else {
                return Err(err(line, SheetErrorKind::Fields(fields.len())));
            };
            if !valid_account(account) {
                return Err(err(line, SheetErrorKind::Account(account.to_owned())));
            }
            if !valid_asset(asset) {
                return Err(err(line, SheetErrorKind::Asset(asset.to_owned())));
            }
            rows.push(Row {
                line,
                account,
                asset,
                balance,
            });
        }
        if rows.is_empty() {
            let line = if header_seen { 0 } else { 1 };
            return Err(err(
                line,
                if header_seen {
                    SheetErrorKind::Empty
                } else {
                    SheetErrorKind::Header
                },
            ));
        }

        // Each asset's scale: the most places among its balances.
        let mut scales: BTreeMap<&str, u8> = BTreeMap::new();
        for r in &rows {
            let places = decimal_places(r.balance);
            if places > usize::from(MAX_SCALE) {
                return Err(err(
                    r.line,
                    SheetErrorKind::Scale {
                        asset: r.asset.to_owned(),
                        text: r.balance.to_owned(),
                        places,
                    },
                ));
            }
            let s = scales.entry(r.asset).or_insert(0);
            *s = (*s).max(places as u8);
        }
        if scales.len() > MAX_ASSETS {
            return Err(err(0, SheetErrorKind::TooManyAssets));
        }
        let assets: Vec<Asset> = scales
            .iter()
            .map(|(name, scale)| Asset {
                name: (*name).to_owned(),
                scale: *scale,
            })
            .collect();
        let index: HashMap<&str, usize> = scales.keys().enumerate().map(|(i, n)| (*n, i)).collect();

        let mut by_account: BTreeMap<&str, (Vec<u128>, Vec<usize>)> = BTreeMap::new();
        let mut totals = vec![0u128; assets.len()];
        for r in &rows {
            let a = index[r.asset];
            let units = parse_amount(r.balance, assets[a].scale)
                .map_err(|e| err(r.line, SheetErrorKind::Amount(e)))?;
            let (amounts, lines) = by_account
                .entry(r.account)
                .or_insert_with(|| (vec![0; assets.len()], vec![0; assets.len()]));
            if lines[a] != 0 {
                return Err(err(
                    r.line,
                    SheetErrorKind::Duplicate {
                        account: r.account.to_owned(),
                        asset: r.asset.to_owned(),
                        first_line: lines[a],
                    },
                ));
            }
            lines[a] = r.line;
            amounts[a] = units;
            totals[a] = totals[a]
                .checked_add(units)
                .ok_or_else(|| err(r.line, SheetErrorKind::TotalTooLarge(r.asset.to_owned())))?;
        }
        let accounts = by_account
            .into_iter()
            .map(|(account, (amounts, _))| AccountBalances {
                account: account.to_owned(),
                amounts,
            })
            .collect();
        Ok(Self { assets, accounts })
    }

    /// A sheet from values already checked elsewhere; the same rules as [`Self::from_csv`]
    /// (names, one entry per account, amounts per asset, totals within 128 bits).
    pub fn new(assets: Vec<Asset>, accounts: Vec<AccountBalances>) -> Result<Self, SheetError> {
        if assets.len() > MAX_ASSETS {
            return Err(err(0, SheetErrorKind::TooManyAssets));
        }
        if accounts.is_empty() {
            return Err(err(0, SheetErrorKind::Empty));
        }
        let mut names = std::collections::HashSet::new();
        for a in &assets {
            if !valid_asset(&a.name) || !names.insert(a.name.as_str()) {
                return Err(err(0, SheetErrorKind::Asset(a.name.clone())));
            }
            if a.scale > MAX_SCALE {
                return Err(err(
                    0,
                    SheetErrorKind::Scale {
                        asset: a.name.clone(),
                        text: String::new(),
                        places: a.scale.into(),
                    },
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        let mut totals = vec![0u128; assets.len()];
        for acc in &accounts {
            if !valid_account(&acc.account) {
                return Err(err(0, SheetErrorKind::Account(acc.account.clone())));
            }
            if !seen.insert(acc.account.as_str()) {
                return Err(err(
                    0,
                    SheetErrorKind::Duplicate {
                        account: acc.account.clone(),
                        asset: String::new(),
                        first_line: 0,
                    },
                ));
            }
            if acc.amounts.len() != assets.len() {
                return Err(err(0, SheetErrorKind::Fields(acc.amounts.len())));
            }
            for (i, v) in acc.amounts.iter().enumerate() {
                totals[i] = totals[i]
                    .checked_add(*v)
                    .ok_or_else(|| err(0, SheetErrorKind::TotalTooLarge(assets[i].name.clone())))?;
            }
        }
        Ok(Self { assets, accounts })
    }

    /// The assets, by name.
    pub fn assets(&self) -> &[Asset] {
        &self.assets
    }

    /// The accounts, by name.
    pub fn accounts(&self) -> &[AccountBalances] {
        &self.accounts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_accounts_assets_and_scales() {
        let s = BalanceSheet::from_csv(
            "# ledger export\naccount,asset,balance\r\nACC-1,BTC,1.5\nACC-2, BTC ,0.00000001\n\nACC-2,USDT,100\n",
        )
        .unwrap();
        assert_eq!(
            s.assets(),
            [
                Asset {
                    name: "BTC".into(),
                    scale: 8
                },
                Asset {
                    name: "USDT".into(),
                    scale: 0
                }
            ]
        );
        assert_eq!(
            s.accounts(),
            [
                AccountBalances {
                    account: "ACC-1".into(),
                    amounts: vec![150_000_000, 0]
                },
                AccountBalances {
                    account: "ACC-2".into(),
                    amounts: vec![1, 100]
                },
            ]
        );
    }

    #[test]
    fn names_the_line_and_the_problem() {
        let cases: &[(&str, usize, &str)] = &[
            ("acct,asset,balance\n", 1, "header"),
            ("", 1, "header"),
            ("account,asset,balance\n", 0, "no balances"),
            ("account,asset,balance\nA,BTC\n", 2, "3 fields"),
            ("account,asset,balance\nA,BTC,1,2\n", 2, "3 fields"),
            ("account,asset,balance\nA B,BTC,1\n", 2, "account \"A B\""),
            ("account,asset,balance\nA,B/C,1\n", 2, "asset \"B/C\""),
            ("account,asset,balance\nA,BTC,-1\n", 2, "never negative"),
            ("account,asset,balance\nA,BTC,1e3\n", 2, "not a decimal"),
            ("account,asset,balance\nA,BTC,0.1234567890123456789\n", 2, "at most 18"),
            ("account,asset,balance\nA,BTC,1\nB,BTC,2\nA,BTC,3\n", 4, "twice (first on line 2)"),
            (
                "account,asset,balance\nA,BTC,300000000000000000000000000000000000000\nB,BTC,100000000000000000000000000000000000000\n",
                3,
                "too large",
            ),
        ];
        for (text, line, needle) in cases {
            let e = BalanceSheet::from_csv(text).unwrap_err();
            assert_eq!(e.line, *line, "{text:?}: {e}");
            assert!(e.to_string().contains(needle), "{text:?}: {e}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(text in "(account,asset,balance\n)?[A-Za-z0-9,.\\-# \n]{0,200}") {
            let _ = BalanceSheet::from_csv(&text);
        }
    }
}
