//! Benchmark (not a test): SNI `resolve` on a snapshot with 10 000 tenant
//! names plus wildcards, and a snapshot rebuild from the store at 10 000
//! certificates. Run: `cargo bench --bench snapshot` (numbers go in README).
//!
//! Certificates are generated with rcgen (one shared P-256 key so the set-up
//! stays fast; a rebuild still parses every key, as in production).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pbx_certd::model::{Source, SystemSettings, Tenant};
use pbx_certd::pki::{CertInfo, KeyFormat, Kind};
use pbx_certd::snapshot::{Input, Snapshot};
use pbx_certd::store::{Batch, CertRecord};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

const TENANTS: usize = 10_000;
const WILDCARDS: usize = 500;

struct Made {
    record: CertRecord,
    der: Vec<u8>,
}

fn make(
    names: Vec<String>,
    kind: Kind,
    tenant: Option<String>,
    key: &rcgen::KeyPair,
    seq: u64,
) -> Made {
    let cert = rcgen::CertificateParams::new(names)
        .and_then(|p| p.self_signed(key))
        .expect("rcgen");
    let der = cert.der().to_vec();
    let info = CertInfo::parse(der.clone()).expect("parse");
    Made {
        record: CertRecord::from_leaf(&info, kind, tenant, Source::Upload, seq),
        der,
    }
}

fn per_op(total: Duration, n: usize) -> String {
    format!("{:.0} ns/op", total.as_nanos() as f64 / n as f64)
}

fn main() {
    let key = rcgen::KeyPair::generate().expect("key");
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer = rustls::crypto::ring::sign::any_supported_type(&key_der).expect("signer");

    let t0 = Instant::now();
    let mut tenants = Vec::with_capacity(TENANTS);
    let mut made = Vec::with_capacity(TENANTS + WILDCARDS);
    for i in 0..TENANTS {
        let name = format!("t{i}.example.com");
        tenants.push(Tenant {
            name: format!("tenant{i}"),
            dns: vec![name.clone()],
            ..Default::default()
        });
        made.push(make(
            vec![name],
            Kind::Domain,
            Some(format!("tenant{i}")),
            &key,
            i as u64,
        ));
    }
    for j in 0..WILDCARDS {
        made.push(make(
            vec![format!("*.w{j}.example.net")],
            Kind::Server,
            None,
            &key,
            (TENANTS + j) as u64,
        ));
    }
    println!(
        "set-up: {} certificates generated in {:?}",
        made.len(),
        t0.elapsed()
    );
    let system = SystemSettings::default();

    // resolve on an in-memory snapshot.
    let inputs = made
        .iter()
        .map(|m| Input {
            record: m.record.clone(),
            certified: Arc::new(CertifiedKey::new(
                vec![CertificateDer::from(m.der.clone())],
                signer.clone(),
            )),
        })
        .collect();
    let t = Instant::now();
    let snap = Snapshot::build(inputs, &tenants, &system);
    println!(
        "build (in memory, keys pre-parsed), {} certs: {:?}",
        made.len(),
        t.elapsed()
    );

    let snis: Vec<String> = (0..1000)
        .map(|i| match i % 4 {
            0 => format!("t{}.example.com", i * 7 % TENANTS),
            1 => format!("T{}.EXAMPLE.COM.", i * 13 % TENANTS),
            2 => format!("host{i}.w{}.example.net", i % WILDCARDS),
            _ => format!("unknown{i}.example.org"),
        })
        .collect();
    let now = pbx_certd::clock::now();
    let rounds = 200;
    let t = Instant::now();
    for _ in 0..rounds {
        for sni in &snis {
            black_box(
                snap.resolve(Some(black_box(sni)), None, now)
                    .served
                    .is_some(),
            );
        }
    }
    println!(
        "resolve ({} tenant names + {} wildcards, mixed exact/upper-case/wildcard/miss): {}",
        TENANTS,
        WILDCARDS,
        per_op(t.elapsed(), rounds * snis.len())
    );

    // rebuild from the store.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = pbx_certd::ops::open_store(dir.path()).expect("store");
    let mut batch = Batch::default();
    for t in &tenants {
        batch.put_tenant(t);
    }
    batch.put_key(
        &made[0].record.key_id,
        KeyFormat::Pkcs8,
        &key.serialize_der(),
    );
    for m in &made {
        batch.put_cert(&m.record, std::slice::from_ref(&m.der));
    }
    store.commit(batch).expect("commit");
    let t = Instant::now();
    let full = Snapshot::load(&store, None).expect("load");
    println!(
        "rebuild from store, {} certs, every key parsed: {:?}",
        full.len(),
        t.elapsed()
    );
    let t = Instant::now();
    let again = Snapshot::load(&store, Some(&full)).expect("load");
    println!(
        "rebuild from store, {} certs, keys reused from the previous snapshot: {:?}",
        again.len(),
        t.elapsed()
    );
}
