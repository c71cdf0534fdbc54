//! "CLI contract": exit codes 0/1/2, JSON shapes, `-` for stdin, the data dir
//! option and env var, `read-failed`, and file modes in the data dir.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

#[test]
fn usage_errors_exit_2() {
    let pbx = Pbx::new();
    pbx.run(&[]).usage_error();
    pbx.run(&["frobnicate"]).usage_error();
    pbx.run(&["certs", "--bogus"]).usage_error();
    pbx.run(&["import"]).usage_error();
    pbx.run(&["import", "--cert"]).usage_error();
    pbx.run(&["import", "--cert", "x.pem", "--kind", "bogus"])
        .usage_error();
    pbx.run(&["cert", "show"]).usage_error();
    pbx.run(&["cert", "delete"]).usage_error();
    pbx.run(&["cert", "show", "0123456"]).usage_error();
    pbx.run(&["roots", "show"]).usage_error();
    pbx.run(&["roots", "delete", "0123456"]).usage_error();
    pbx.run(&["tenant", "remove"]).usage_error();
    pbx.run(&["resolve", "a.example.com", "b.example.com"])
        .usage_error();
    // With --json as well.
    pbx.run_json(&["certs", "--bogus"]).usage_error();
    pbx.run_json(&["cert", "show", "abc"]).usage_error();
}

#[test]
fn help_exits_0() {
    let pbx = Pbx::new();
    let out = pbx.run(&["--help"]);
    out.success();
    assert!(out.stdout.contains("import"), "{}", out.describe());
}

#[test]
fn rejected_operation_exits_1_with_json_error_and_stderr() {
    let pbx = Pbx::new();
    let e = pbx.err(&["cert", "show", &sha256_hex(b"missing")]);
    e.expect("not-found");
    // Without --json: exit 1 and a human message on stderr.
    let out = pbx.run(&["cert", "show", &sha256_hex(b"missing")]);
    assert_eq!(out.status, 1, "{}", out.describe());
    assert!(!out.stderr.trim().is_empty(), "{}", out.describe());
}

#[test]
fn commands_with_nothing_to_report_print_ok_true() {
    let pbx = Pbx::new();
    // `tenant add` has no documented output: "commands with nothing to
    // report print {"ok":true}".
    pbx.ok_true(&["tenant", "add", "acme", "--dns", "pbx.acme.example.com"]);
    pbx.ok_true(&["system", "set", "--admin-email", "admin@example.com"]);
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]));
    pki.import(&pbx, &l, &[]);
    pbx.ok_true(&["cert", "delete", &l.id()]);
    let id = pbx.roots()[0]["id"].as_str().unwrap().to_string();
    pbx.ok_true(&["roots", "delete", &id]);
    pbx.ok_true(&["roots", "reset"]);
    pbx.ok_true(&["tenant", "remove", "acme"]);
}

#[test]
fn import_json_answer_shape() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let na = now() + 45 * DAY;
    let l = pki.leaf(leaf(&["www.example.com", "example.com"]).valid_unix(now() - DAY, na));
    let v = pki.import(&pbx, &l, &[]);
    let obj = v.as_object().expect("object");
    for k in ["id", "kind", "tenant", "names", "not_after", "warnings"] {
        assert!(obj.contains_key(k), "import answer without {k}: {v}");
    }
    assert_eq!(v["id"], l.id());
    assert_eq!(v["kind"], "server");
    assert_eq!(v["tenant"], Value::Null);
    assert_eq!(
        str_list(&v, "names"),
        vec!["www.example.com", "example.com"]
    );
    assert_eq!(v["not_after"], rfc3339(na));
    assert!(v["warnings"].as_array().unwrap().is_empty(), "{v}");
}

#[test]
fn human_import_output() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]).valid_days(-1, 5));
    let cert = pbx.file("c.pem", pki.chain_pem(&l));
    let key = pbx.file("k.pem", l.key_pem());
    let out = pbx.run(&["import", "--cert", &cert, "--key", &key]);
    out.success();
    assert!(
        out.stdout.contains(&l.id()[..8]),
        "the human answer names the imported cert\n{}",
        out.describe()
    );
    assert_no_key_material(&format!("{}{}", out.stdout, out.stderr), &l.key_pem());
    assert_eq!(pbx.cert_ids(), vec![l.id()]);
}

#[test]
fn cert_on_stdin() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]));
    let key = pbx.file("k.pem", l.key_pem());
    let out = pbx.run_stdin(
        &["import", "--cert", "-", "--key", &key, "--json"],
        pki.chain_pem(&l).as_bytes(),
    );
    out.success();
    assert_eq!(out.json()["id"], l.id());
    // A root box on stdin.
    let r = root(&format!("Stdin Root {}", tag()));
    let out = pbx.run_stdin(&["import", "--cert", "-", "--json"], r.pem().as_bytes());
    out.success();
    assert_eq!(out.json()["kind"], "root");
}

#[test]
fn read_failed() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]));
    let cert = pbx.file("c.pem", pki.chain_pem(&l));
    let key = pbx.file("k.pem", l.key_pem());
    let missing = pbx.files.join("does-not-exist.pem");
    let missing = path_str(&missing);
    let dir = path_str(&pbx.files);
    for args in [
        vec!["import", "--cert", missing, "--key", &key],
        vec!["import", "--cert", &cert, "--key", missing],
        vec!["import", "--cert", dir, "--key", &key],
        vec!["import", "--cert", missing],
    ] {
        let e = pbx.err(&args);
        e.expect("read-failed");
    }
    assert!(pbx.certs().is_empty());
}

#[test]
fn data_dir_from_env_var() {
    let pbx = Pbx::new();
    let dir = pbx.tmp.path().join("env-data");
    let mut cmd = Command::new(BIN);
    cmd.env("PBX_CERTD_DATA_DIR", &dir).args([
        "tenant",
        "add",
        "acme",
        "--dns",
        "pbx.acme.example.com",
        "--json",
    ]);
    run_command(cmd, None).success();
    // The same store through --data-dir.
    let mut cmd = Command::new(BIN);
    cmd.env_remove("PBX_CERTD_DATA_DIR")
        .arg("--data-dir")
        .arg(&dir)
        .args(["tenant", "list", "--json"]);
    let out = run_command(cmd, None);
    out.success();
    assert_eq!(out.json()[0]["name"], "acme", "{}", out.describe());
    // And the --data-dir of `pbx` did not see it.
    assert_eq!(pbx.ok(&["tenant", "list"]), serde_json::json!([]));
}

#[test]
fn data_dir_option_wins_over_env_var() {
    let pbx = Pbx::new();
    let other = pbx.tmp.path().join("other-data");
    let mut cmd = pbx.command(&[
        "tenant",
        "add",
        "acme",
        "--dns",
        "pbx.acme.example.com",
        "--json",
    ]);
    cmd.env("PBX_CERTD_DATA_DIR", &other);
    run_command(cmd, None).success();
    assert_eq!(pbx.ok(&["tenant", "list"])[0]["name"], "acme");
}

fn check_modes(path: &Path, seen: &mut usize) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    let mode = meta.permissions().mode() & 0o777;
    if meta.is_dir() {
        assert_eq!(
            mode,
            0o700,
            "directory {} has mode {mode:o}",
            path.display()
        );
        for e in std::fs::read_dir(path).unwrap() {
            check_modes(&e.unwrap().path(), seen);
        }
    } else if meta.is_file() {
        *seen += 1;
        assert_eq!(mode, 0o600, "file {} has mode {mode:o}", path.display());
    }
}

#[test]
fn data_dir_files_are_0600_and_dirs_0700() {
    let pbx = Pbx::new();
    assert!(!pbx.data.exists());
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]));
    pki.import(&pbx, &l, &[]);
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let mut files = 0;
    check_modes(&pbx.data, &mut files);
    assert!(files > 0, "the data dir holds the store's files");
}

#[test]
fn changes_persist_across_runs() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    pbx.ok_true(&["system", "set", "--dns", "pbx.example.com"]);
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["pbx.acme.example.com"]));
    pki.import(&pbx, &l, &[]);
    // Every command is a new process: what the later ones see was flushed.
    assert_eq!(pbx.cert_ids(), vec![l.id()]);
    assert_eq!(pbx.system()["dns"], "pbx.example.com");
    assert_eq!(pbx.resolve(Some("pbx.acme.example.com"))["match"], "domain");
}

#[test]
fn json_outputs_parse_for_every_listing_command() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    for args in [
        vec!["tenant", "list"],
        vec!["system", "show"],
        vec!["certs"],
        vec!["roots"],
        vec!["resolve"],
        vec!["resolve", "x.example.com"],
        vec!["stir-shaken", "select", "--tenant", "acme"],
    ] {
        let out = pbx.run_json(&args);
        out.success();
        let _ = out.json();
    }
}
