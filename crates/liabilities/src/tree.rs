//! The Merkle sum tree. Every node commits to its children's hashes and their sums, so a
//! path from a leaf to the root proves that the leaf's balances are counted in the root's
//! totals exactly once; since sums are unsigned and every parent's sum is recomputed from
//! both children, no subtree can hide a negative amount (the flaw of the first proposal,
//! fixed by committing to both children's sums rather than to the parent's sum alone).

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

// Distinct prefixes separate the kinds of node, so a leaf can never pass for an inner node
// (or the reverse) with the same bytes.
const LEAF: &[u8] = b"portcullis/liabilities/leaf/v1";
const NODE: &[u8] = b"portcullis/liabilities/node/v1";
const EMPTY: &[u8] = b"portcullis/liabilities/empty/v1";
const COMMITMENT: &[u8] = b"portcullis/liabilities/commitment/v1";

/// A node: its hash and the sum of each asset below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SumNode {
    /// The node's hash.
    pub hash: Digest,
    /// Units of each asset, in the publication's asset order.
    pub sums: Vec<u128>,
}

/// A leaf: the account's name and balances behind a random salt, so that neither its name
/// nor, from its hash, its balance can be guessed by those who see the leaf in other proofs.
pub fn leaf(salt: &[u8; 32], account: &str, amounts: &[u128]) -> SumNode {
    let mut h = Sha256::new();
    h.update(LEAF);
    h.update(salt);
    // Account names are at most 64 bytes (checked on input).
    h.update([account.len().min(255) as u8]);
    h.update(account.as_bytes());
    for a in amounts {
        h.update(a.to_be_bytes());
    }
    SumNode {
        hash: h.finalize().into(),
        sums: amounts.to_vec(),
    }
}

/// The parent of two nodes; `None` if a sum overflows 128 bits.
pub fn parent(left: &SumNode, right: &SumNode) -> Option<SumNode> {
    let sums = left
        .sums
        .iter()
        .zip(&right.sums)
        .map(|(l, r)| l.checked_add(*r))
        .collect::<Option<Vec<u128>>>()?;
    let mut h = Sha256::new();
    h.update(NODE);
    for n in [left, right] {
        h.update(n.hash);
        for s in &n.sums {
            h.update(s.to_be_bytes());
        }
    }
    Some(SumNode {
        hash: h.finalize().into(),
        sums,
    })
}

/// The node that pads a level of odd length: no balances.
pub fn empty(assets: usize) -> SumNode {
    SumNode {
        hash: Sha256::digest(EMPTY).into(),
        sums: vec![0; assets],
    }
}

/// What the published commitment covers: the whole report, so that no field of it can be
/// changed for one reader and not for another.
pub struct CommitmentInput<'a> {
    /// The report's date.
    pub as_of: &'a str,
    /// The number of accounts.
    pub accounts: u64,
    /// The tree's height.
    pub height: u32,
    /// Each asset's name, scale and total.
    pub assets: &'a [(&'a str, u8, u128)],
    /// The root's hash.
    pub root: &'a Digest,
}

/// The commitment of a report.
pub fn commitment(c: &CommitmentInput<'_>) -> Digest {
    let mut h = Sha256::new();
    h.update(COMMITMENT);
    h.update((c.as_of.len() as u64).to_be_bytes());
    h.update(c.as_of.as_bytes());
    h.update(c.accounts.to_be_bytes());
    h.update(c.height.to_be_bytes());
    h.update((c.assets.len() as u64).to_be_bytes());
    for (name, scale, total) in c.assets {
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update([*scale]);
        h.update(total.to_be_bytes());
    }
    h.update(c.root);
    h.finalize().into()
}

/// Every level of a tree over `leaves`, from the leaves (padded to even lengths) up to the
/// root; `None` if a sum overflows.
pub fn levels(leaves: Vec<SumNode>, assets: usize) -> Option<Vec<Vec<SumNode>>> {
    let mut levels = vec![leaves];
    while levels.last().map_or(0, Vec::len) > 1 {
        let below = levels.last_mut()?;
        if below.len() % 2 == 1 {
            below.push(empty(assets));
        }
        let up = below
            .chunks_exact(2)
            .map(|pair| parent(&pair[0], &pair[1]))
            .collect::<Option<Vec<_>>>()?;
        levels.push(up);
    }
    Some(levels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parent_sums_its_children_and_commits_to_both_sums() {
        let a = leaf(&[1; 32], "A", &[5, 0]);
        let b = leaf(&[2; 32], "B", &[7, 3]);
        let p = parent(&a, &b).unwrap();
        assert_eq!(p.sums, [12, 3]);
        // Moving value from one child to the other keeps the parent's sum but not its hash.
        let b2 = SumNode {
            sums: vec![6, 3],
            ..b.clone()
        };
        let a2 = SumNode {
            sums: vec![6, 0],
            ..a.clone()
        };
        assert_eq!(parent(&a2, &b2).unwrap().sums, p.sums);
        assert_ne!(parent(&a2, &b2).unwrap().hash, p.hash);
        // Order matters.
        assert_ne!(parent(&b, &a).unwrap().hash, p.hash);
    }

    #[test]
    fn an_overflowing_sum_is_refused() {
        let a = leaf(&[1; 32], "A", &[u128::MAX]);
        let b = leaf(&[2; 32], "B", &[1]);
        assert!(parent(&a, &b).is_none());
    }

    #[test]
    fn the_salt_and_every_field_change_a_leaf() {
        let base = leaf(&[1; 32], "A", &[5]);
        assert_ne!(leaf(&[2; 32], "A", &[5]).hash, base.hash);
        assert_ne!(leaf(&[1; 32], "B", &[5]).hash, base.hash);
        assert_ne!(leaf(&[1; 32], "A", &[6]).hash, base.hash);
        assert_ne!(empty(1).hash, base.hash);
    }

    #[test]
    fn levels_pad_odd_lengths_and_end_at_one_root() {
        let leaves: Vec<_> = (0..5u8)
            .map(|i| leaf(&[i; 32], "A", &[u128::from(i)]))
            .collect();
        let lv = levels(leaves, 1).unwrap();
        let lens: Vec<usize> = lv.iter().map(Vec::len).collect();
        assert_eq!(lens, [6, 4, 2, 1]);
        assert_eq!(lv[3][0].sums, [10]);
        let one = levels(vec![leaf(&[0; 32], "A", &[1])], 1).unwrap();
        assert_eq!(one.len(), 1);
    }
}
