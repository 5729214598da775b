//! Proof of liabilities from the command line: `portcullis liabilities publish` on a ledger
//! export, `verify` of each customer's proof, `audit` of the publication, and what each says
//! of altered, foreign or broken files.

use std::path::Path;

use crate::harness::run_split;

const BALANCES: &str = "\
# ledger export, end of day
account,asset,balance
MM-1,BTC,12.5
MM-1,USDT,250000.25
ALGO-7,BTC,0.00000001
ALGO-7,ETH,3
desk/eu,USDT,10
RETAIL-9,ETH,0.75
RETAIL-9,USDT,0
";

fn publish(dir: &Path, out: &str) -> (i32, String, String) {
    run_split(
        &[
            "liabilities",
            "publish",
            "--balances",
            "balances.csv",
            "--out",
            out,
            "--as-of",
            "2026-11-29T00:00:00Z",
        ],
        dir,
        &[],
    )
}

fn verify(dir: &Path, report: &str, proof: &str) -> (i32, String, String) {
    run_split(
        &[
            "liabilities",
            "verify",
            "--report",
            report,
            "--proof",
            proof,
        ],
        dir,
        &[],
    )
}

#[test]
fn a_customer_verifies_their_balance_in_the_published_liabilities_and_nothing_altered_passes() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    std::fs::write(dir.join("balances.csv"), BALANCES).unwrap();

    let (code, out, err) = publish(dir, "pub");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("published the liabilities of 4 accounts as of 2026-11-29T00:00:00Z"),
        "{out}"
    );
    for line in [
        "BTC        12.50000001",
        "ETH        3.75",
        "USDT       250010.25",
    ] {
        assert!(out.contains(line), "{out}");
    }
    // One proof per account and line, private to the owner.
    let jsonl = std::fs::read_to_string(dir.join("pub/proofs.jsonl")).unwrap();
    assert_eq!(jsonl.lines().count(), 4);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("pub/proofs.jsonl"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let accounts = ["ALGO-7", "MM-1", "RETAIL-9", "desk/eu"];
    let files: Vec<String> = accounts.iter().map(|a| extract(dir, "pub", a)).collect();

    // Every customer's proof verifies, with their balances against the totals.
    for f in &files {
        let (code, out, err) = verify(dir, "pub/report.json", f);
        assert_eq!(code, 0, "{f}: {out}{err}");
        assert!(out.starts_with("verified: the balances of "), "{out}");
    }
    let (_, out, _) = verify(dir, "pub/report.json", &files[3]);
    assert!(out.contains("the balances of desk/eu are counted"), "{out}");
    assert!(out.contains("USDT       10 of a total 250010.25"), "{out}");
    let (code, out, _) = run_split(
        &[
            "liabilities",
            "verify",
            "--report",
            "pub/report.json",
            "--proof",
            &files[0],
            "--json",
        ],
        dir,
        &[],
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["account"], "ALGO-7");
    assert_eq!(
        v["balances"][0],
        serde_json::json!({"asset": "BTC", "amount": "0.00000001"})
    );

    // A balance changed in the proof: exit 1, and why.
    let proof = std::fs::read_to_string(dir.join(&files[1])).unwrap();
    std::fs::write(dir.join("more.json"), proof.replace("\"12.5\"", "\"13.5\"")).unwrap();
    let (code, _, err) = verify(dir, "pub/report.json", "more.json");
    assert_eq!(code, 1);
    assert!(
        err.contains("NOT VERIFIED: MM-1") && err.contains("does not lead to the report's root"),
        "{err}"
    );

    // Lower totals in a copy of the report: it contradicts its commitment.
    let report = std::fs::read_to_string(dir.join("pub/report.json")).unwrap();
    std::fs::write(
        dir.join("lower.json"),
        report.replace("\"12.50000001\"", "\"2.50000001\""),
    )
    .unwrap();
    let (code, _, err) = verify(dir, "lower.json", &files[1]);
    assert_eq!(code, 1);
    assert!(
        err.contains("commitment does not match its contents"),
        "{err}"
    );

    // The same balances published again (new salts): a proof of one is no proof of the other.
    let (code, _, _) = publish(dir, "again");
    assert_eq!(code, 0);
    let (code, _, err) = verify(dir, "again/report.json", &files[1]);
    assert_eq!(code, 1);
    assert!(err.contains("not this one"), "{err}");

    // The publisher's audit: passes whole, fails with a proof missing.
    let audit = |proofs: &str| {
        run_split(
            &[
                "liabilities",
                "audit",
                "--report",
                "pub/report.json",
                "--proofs",
                proofs,
            ],
            dir,
            &[],
        )
    };
    let (code, out, err) = audit("pub/proofs.jsonl");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("audited: 4 accounts"), "{out}");
    let three: Vec<&str> = jsonl.lines().take(3).collect();
    std::fs::write(dir.join("three.jsonl"), three.join("\n")).unwrap();
    let (code, _, err) = audit("three.jsonl");
    assert_eq!(code, 1);
    assert!(
        err.contains("proofs of 3 accounts for the 4 accounts"),
        "{err}"
    );
    let (code, _, err) = audit("again/proofs.jsonl");
    assert_eq!(code, 1);
    assert!(
        err.contains("again/proofs.jsonl line 1") && err.contains("not this one"),
        "{err}"
    );
}

/// `liabilities proof`: one account's proof from a publication, written to `ACCOUNT.json`
/// in `dir`; returns that file's name.
fn extract(dir: &Path, publication: &str, account: &str) -> String {
    let (code, out, err) = run_split(
        &[
            "liabilities",
            "proof",
            "--proofs",
            &format!("{publication}/proofs.jsonl"),
            "--account",
            account,
        ],
        dir,
        &[],
    );
    assert_eq!(code, 0, "{account}: {err}");
    let name = format!("{}.json", account.replace('/', "_"));
    std::fs::write(dir.join(&name), out).unwrap();
    name
}

#[test]
fn bad_input_is_exit_code_2_with_the_file_the_line_and_the_problem() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    std::fs::write(dir.join("balances.csv"), BALANCES).unwrap();
    assert_eq!(publish(dir, "pub").0, 0);

    // A publication is never overwritten.
    let (code, _, err) = publish(dir, "pub");
    assert_eq!(code, 2);
    assert!(
        err.contains("exists: a publication is never overwritten"),
        "{err}"
    );

    let cases = [
        (
            "account,asset,balance\nA,BTC,-2\n",
            "line 2: balance: negative amount \"-2\"",
        ),
        (
            "account,asset,balance\nA,BTC,1\nA,BTC,2\n",
            "line 3: A BTC is given twice (first on line 2)",
        ),
        (
            "acct,coin,amount\nA,BTC,1\n",
            "line 1: the first line must be the header",
        ),
        (
            "account,asset,balance\nA,BTC,1.5e3\n",
            "line 2: balance: \"1.5e3\" is not a decimal number",
        ),
    ];
    for (i, (csv, needle)) in cases.iter().enumerate() {
        std::fs::write(dir.join("balances.csv"), csv).unwrap();
        let (code, _, err) = publish(dir, &format!("bad{i}"));
        assert_eq!(code, 2, "{csv}");
        assert!(
            err.contains("balances.csv: ") && err.contains(needle),
            "{csv}: {err}"
        );
        assert!(!dir.join(format!("bad{i}/report.json")).exists());
    }

    let (code, _, err) = run_split(
        &[
            "liabilities",
            "proof",
            "--proofs",
            "pub/proofs.jsonl",
            "--account",
            "NOBODY",
        ],
        dir,
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("no proof for account \"NOBODY\" in pub/proofs.jsonl"),
        "{err}"
    );

    std::fs::write(dir.join("junk.json"), "{\"format\": 1").unwrap();
    let (code, _, err) = verify(dir, "pub/report.json", "junk.json");
    assert_eq!(code, 2);
    assert!(err.contains("junk.json is not a valid proof"), "{err}");
    let (code, _, err) = verify(dir, "missing.json", "junk.json");
    assert_eq!(code, 2);
    assert!(err.contains("cannot read the report missing.json"), "{err}");
}

/// The README's Python verifier (section "Proof of liabilities"), run on the binary's output:
/// the format it documents is the one written, and a changed balance fails it.
#[test]
fn the_readme_python_verifier_agrees_with_the_binary() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme
        .find("\n## Proof of liabilities\n")
        .expect("README.md has a \"## Proof of liabilities\" section")..];
    let start = section.find("```python\n").expect("a python block") + "```python\n".len();
    let script = &section[start..start + section[start..].find("```").unwrap()];

    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    std::fs::write(dir.join("balances.csv"), BALANCES).unwrap();
    std::fs::write(dir.join("verify.py"), script).unwrap();
    assert_eq!(publish(dir, "pub").0, 0);
    let python = |proof: &str| {
        std::process::Command::new("python3")
            .args(["verify.py", "pub/report.json", proof])
            .current_dir(dir)
            .output()
            .unwrap()
    };
    for account in ["MM-1", "ALGO-7", "desk/eu", "RETAIL-9"] {
        let file = extract(dir, "pub", account);
        let out = python(&file);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{account}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.trim(), format!("verified: {account}"));
    }
    let proof = std::fs::read_to_string(dir.join("ALGO-7.json")).unwrap();
    std::fs::write(dir.join("more.json"), proof.replace("\"3\"", "\"4\"")).unwrap();
    let out = python("more.json");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the ones in the tree"));
}
