//! Store behaviour that needs the library beside the binary: the store lock
//! (`store-locked`, never a hang) and the recorded Root CA list version
//! (`roots_update_available`).

mod common;

use common::*;
use pbx_certd::store::Store;

fn open(dir: &std::path::Path) -> Store {
    match pbx_certd::ops::open_store(dir) {
        Ok(s) => s,
        Err(_) => panic!("the library cannot open the store at {}", dir.display()),
    }
}

#[test]
fn store_locked_while_another_process_holds_it() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let store = open(&pbx.data);
    // `run_command` kills the binary at the hang guard and fails the test.
    pbx.err(&["certs"]).expect("store-locked");
    pbx.err(&["tenant", "add", "globex", "--dns", "pbx.globex.example.com"])
        .expect("store-locked");
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]));
    pbx.import_err(pki.chain_pem(&l), Some(&l.key_pem()), &[])
        .expect("store-locked");
    // Human mode: exit 1 and a message on stderr.
    let out = pbx.run(&["roots"]);
    assert_eq!(out.status, 1, "{}", out.describe());
    assert!(!out.stderr.trim().is_empty(), "{}", out.describe());
    drop(store);
    // Released: works again, and nothing was written while locked.
    let tenants = pbx.ok(&["tenant", "list"]);
    assert_eq!(tenants.as_array().unwrap().len(), 1, "{tenants}");
    assert!(pbx.certs().is_empty());
}

#[test]
fn store_locked_on_a_store_first_opened_by_the_library() {
    let pbx = Pbx::new();
    let store = open(&pbx.data);
    pbx.err(&["system", "show"]).expect("store-locked");
    drop(store);
    pbx.system();
}

#[test]
fn roots_update_available_after_an_older_list_and_cleared_by_reset() {
    let pbx = Pbx::new();
    assert_eq!(pbx.system()["roots_update_available"], false);
    {
        let store = open(&pbx.data);
        assert!(
            store.set_roots_version("older").is_ok(),
            "set_roots_version failed"
        );
    }
    assert_eq!(pbx.system()["roots_update_available"], true);
    let out = pbx.run(&["roots"]);
    out.success();
    let text = format!("{}{}", out.stdout, out.stderr).to_lowercase();
    assert!(
        text.contains("reset"),
        "human `roots` output must say a reset would update the list\n{}",
        out.describe()
    );
    // `roots --json` stays a plain list.
    assert!(pbx.roots().len() >= 100);
    pbx.ok_true(&["roots", "reset"]);
    assert_eq!(pbx.system()["roots_update_available"], false);
}

/// A certificate record of an older release has no `eku`: the store derives
/// it from the stored leaf when it reads the record (never left empty).
#[test]
fn eku_of_an_older_record_is_derived_from_the_stored_leaf() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.test"]);
    pbx.ok(&["ca", "init"]);
    let id = pbx.ok(&["ca", "issue", "--tenant", "acme", "--client"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    {
        let store = open(&pbx.data);
        let tree = pbx_certd::store::Tree::Certs;
        let raw = store.kv().get(tree, id.as_bytes()).unwrap().unwrap();
        let mut record: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        assert!(record["eku"].is_array(), "{record}");
        record.as_object_mut().unwrap().remove("eku");
        let old = serde_json::to_vec(&record).unwrap();
        store.kv().put(tree, id.as_bytes(), &old).unwrap();
        store.flush().unwrap();
        assert_eq!(
            store.cert(&id).unwrap().unwrap().eku,
            vec!["server-auth", "client-auth"]
        );
    }
    let certs = pbx.certs();
    assert_eq!(
        by_id(&certs, &id)["eku"],
        serde_json::json!(["server-auth", "client-auth"])
    );
}
