//! "Root CA list": bundled list, `roots`, `roots show`, `roots delete`,
//! `roots reset`, and the list's effect on chain completeness.

mod common;

use std::collections::BTreeSet;

use common::*;

#[test]
fn fresh_store_lists_at_least_100_bundled_roots() {
    let pbx = Pbx::new();
    let roots = pbx.roots();
    assert!(roots.len() >= 100, "only {} roots", roots.len());
    let mut seen = BTreeSet::new();
    for r in &roots {
        let id = r["id"].as_str().unwrap_or_else(|| panic!("id: {r}"));
        assert!(is_id(id), "{r}");
        assert!(seen.insert(id.to_string()), "duplicate id {id}");
        let subject = r["subject"]
            .as_str()
            .unwrap_or_else(|| panic!("subject: {r}"));
        assert!(!subject.trim().is_empty(), "{r}");
        let na = r["not_after"]
            .as_str()
            .unwrap_or_else(|| panic!("not_after: {r}"));
        assert!(is_rfc3339_utc(na), "{r}");
    }
}

#[test]
fn roots_show_prints_the_root_pem() {
    let pbx = Pbx::new();
    let roots = pbx.roots();
    for r in roots.iter().take(3) {
        let id = r["id"].as_str().unwrap();
        for arg in [id, &id[..8]] {
            let out = pbx.run(&["roots", "show", arg]);
            out.success();
            let ders = pem_certs(&out.stdout);
            assert_eq!(ders.len(), 1, "{}", out.describe());
            assert_eq!(
                sha256_hex(&ders[0]),
                id,
                "a root's ID is the SHA-256 of its DER"
            );
        }
    }
}

#[test]
fn imported_root_is_listed_and_shown() {
    let pbx = Pbx::new();
    let cn = format!("My Private Root {}", tag());
    let na = now() + 1000 * DAY;
    let r = ca(&cn).valid_unix(now() - DAY, na).self_signed();
    pbx.import_ok(r.pem(), None, &[]);
    let roots = pbx.roots();
    let entry = by_id(&roots, &r.id());
    assert!(entry["subject"].as_str().unwrap().contains(&cn), "{entry}");
    assert_eq!(entry["not_after"], rfc3339(na));
    let out = pbx.run(&["roots", "show", &r.id()]);
    out.success();
    assert_eq!(pem_certs(&out.stdout), vec![r.der()]);
}

#[test]
fn roots_show_errors() {
    let pbx = Pbx::new();
    pbx.err(&["roots", "show", &sha256_hex(b"not a root")])
        .expect("not-found");
    pbx.run_json(&["roots", "show", "abcdef1"]).usage_error();
    pbx.run_json(&["roots", "show", "xyzxyzxyz"]).usage_error();
}

#[test]
fn roots_delete_several() {
    let pbx = Pbx::new();
    let before = pbx.root_ids();
    let victims: Vec<String> = before.iter().take(3).cloned().collect();
    pbx.ok_true(&[
        "roots",
        "delete",
        &victims[0],
        &victims[1][..8],
        &victims[2][..12],
    ]);
    let after = pbx.root_ids();
    assert_eq!(after.len(), before.len() - 3);
    for v in &victims {
        assert!(!after.contains(v));
        pbx.err(&["roots", "show", v]).expect("not-found");
    }
}

#[test]
fn roots_delete_is_all_or_nothing() {
    let pbx = Pbx::new();
    let before = pbx.root_ids();
    let mut it = before.iter();
    let (a, b) = (it.next().unwrap().clone(), it.next().unwrap().clone());
    let unknown = sha256_hex(b"unknown root");
    pbx.err(&["roots", "delete", &a, &unknown, &b])
        .expect("not-found");
    assert_eq!(pbx.root_ids(), before);
    // A usage error among good IDs deletes nothing either.
    pbx.run_json(&["roots", "delete", &a, "abc"]).usage_error();
    assert_eq!(pbx.root_ids(), before);
    // No ID at all is a usage error.
    pbx.run_json(&["roots", "delete"]).usage_error();
}

#[test]
fn roots_reset_restores_exactly_the_bundled_list() {
    let pbx = Pbx::new();
    let bundled = pbx.root_ids();
    let gone: Vec<String> = bundled.iter().skip(5).take(4).cloned().collect();
    let mut args = vec!["roots", "delete"];
    args.extend(gone.iter().map(String::as_str));
    pbx.ok_true(&args);
    let mine = root(&format!("Reset Me Root {}", tag()));
    pbx.import_ok(mine.pem(), None, &[]);
    let changed = pbx.root_ids();
    assert_ne!(changed, bundled);
    assert!(changed.contains(&mine.id()));

    pbx.ok_true(&["roots", "reset"]);
    assert_eq!(
        pbx.root_ids(),
        bundled,
        "deleted ones come back, imported ones go"
    );
    // The full entries are the same, not only the IDs.
    let fresh = Pbx::new();
    assert_eq!(pbx.ok(&["roots"]), fresh.ok(&["roots"]));
    // Reset on an unchanged list is harmless.
    pbx.ok_true(&["roots", "reset"]);
    assert_eq!(pbx.root_ids(), bundled);
}

#[test]
fn roots_reset_leaves_certs_tenants_and_settings_alone() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    pbx.ok_true(&["system", "set", "--dns", "pbx.example.com"]);
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]));
    pki.import(&pbx, &l, &[]);
    let certs = pbx.ok(&["certs"]);
    let tenants = pbx.ok(&["tenant", "list"]);
    let system = pbx.system();
    pbx.ok_true(&["roots", "reset"]);
    assert_eq!(pbx.ok(&["certs"]), certs);
    assert_eq!(pbx.ok(&["tenant", "list"]), tenants);
    assert_eq!(pbx.system(), system);
}

#[test]
fn ambiguous_root_prefix() {
    let pbx = Pbx::new();
    let (a, b, prefix) = collision_pair(true);
    let before = pbx.root_ids();
    // The bundled list must not already use this prefix (it would not matter
    // for ambiguity, but would make the count below wrong).
    assert!(!before.iter().any(|id| id.starts_with(prefix)));
    let v = pbx.import_ok(format!("{}{}", a.pem(), b.pem()), None, &[]);
    assert_eq!(v["kind"], "root");
    pbx.err(&["roots", "show", prefix]).expect("ambiguous-id");
    pbx.err(&["roots", "delete", prefix]).expect("ambiguous-id");
    let after = pbx.root_ids();
    assert!(
        after.contains(&a.id()) && after.contains(&b.id()),
        "nothing deleted"
    );
    assert_eq!(after.len(), before.len() + 2);
    // The full ID still works.
    pbx.ok_true(&["roots", "delete", &a.id()]);
    assert!(!pbx.root_ids().contains(&a.id()));
}

#[test]
fn deleted_root_no_longer_completes_chains() {
    let pbx = Pbx::new();
    let r = root(&format!("Temporary Root {}", tag()));
    pbx.import_ok(r.pem(), None, &[]);
    let l1 = leaf(&["one.example.com"]).signed_by(&r);
    pbx.import_ok(l1.pem(), Some(&l1.key_pem()), &[]);
    pbx.ok_true(&["roots", "delete", &r.id()]);
    let l2 = leaf(&["two.example.com"]).signed_by(&r);
    pbx.import_err(l2.pem(), Some(&l2.key_pem()), &[])
        .expect("incomplete-chain");
    // What was imported before stays.
    assert_eq!(pbx.cert_ids(), vec![l1.id()]);
}

#[test]
fn roots_reset_forgets_imported_roots_for_chain_checks() {
    let pbx = Pbx::new();
    let r = root(&format!("Forgotten Root {}", tag()));
    pbx.import_ok(r.pem(), None, &[]);
    pbx.ok_true(&["roots", "reset"]);
    let l = leaf(&["www.example.com"]).signed_by(&r);
    pbx.import_err(l.pem(), Some(&l.key_pem()), &[])
        .expect("incomplete-chain");
}

#[test]
fn human_roots_output() {
    let pbx = Pbx::new();
    let out = pbx.run(&["roots"]);
    out.success();
    let first = pbx.roots()[0]["id"].as_str().unwrap().to_string();
    assert!(out.stdout.contains(&first[..8]), "{}", out.describe());
    assert!(out.stdout.lines().count() >= 100, "{}", out.describe());
}
