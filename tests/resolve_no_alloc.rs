//! The handshake path allocates nothing: `Snapshot::resolve` is called under a
//! counting global allocator and must not allocate, for every rule (domain,
//! server exact, wildcard, default, none, over-long and non-ASCII SNI).
//!
//! `unsafe` is needed only to implement `GlobalAlloc` in this test binary; the
//! crate itself forbids unsafe code.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pbx_certd::handshakes::{ListenerLog, Record};
use pbx_certd::model::{Source, SystemSettings, Tenant};
use pbx_certd::pki::{CertInfo, Kind};
use pbx_certd::snapshot::{Input, Match, Snapshot};
use pbx_certd::store::CertRecord;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn input(
    names: &[&str],
    kind: Kind,
    tenant: Option<&str>,
    key: &rcgen::KeyPair,
    seq: u64,
) -> Input {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .self_signed(key)
        .unwrap();
    let info = CertInfo::parse(cert.der().to_vec()).unwrap();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signer = rustls::crypto::ring::sign::any_supported_type(&key_der).unwrap();
    Input {
        record: CertRecord::from_leaf(&info, kind, tenant.map(str::to_owned), Source::Upload, seq),
        certified: Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(info.der.clone())],
            signer,
        )),
    }
}

#[test]
fn resolve_does_not_allocate() {
    let key = rcgen::KeyPair::generate().unwrap();
    let tenants = vec![Tenant {
        name: "acme".into(),
        dns: vec!["pbx.acme.test".into()],
        ip: vec!["192.0.2.10".into(), "2001:db8::10".into()],
        ..Default::default()
    }];
    let inputs = vec![
        input(
            &["pbx.acme.test", "192.0.2.10", "2001:db8::10"],
            Kind::Domain,
            Some("acme"),
            &key,
            1,
        ),
        input(&["exact.example.test"], Kind::Server, None, &key, 2),
        input(&["*.example.test"], Kind::Server, None, &key, 3),
        input(&["198.51.100.7"], Kind::Server, None, &key, 4),
    ];
    let exact_id = inputs[1].record.id.clone();
    let snap = Snapshot::build(inputs, &tenants, &SystemSettings::default());
    let now = pbx_certd::clock::now();
    let long = "a".repeat(400);
    let v4: IpAddr = "192.0.2.10".parse().unwrap();
    let v6: IpAddr = "2001:db8::10".parse().unwrap();
    let server_ip: IpAddr = "198.51.100.7".parse().unwrap();
    let other: IpAddr = "203.0.113.1".parse().unwrap();
    let cases: [(Option<&str>, Option<IpAddr>, Match); 14] = [
        (Some("pbx.acme.test"), None, Match::Domain),
        (Some("PBX.ACME.TEST."), None, Match::Domain),
        (Some("exact.example.test"), None, Match::Server),
        (Some("other.example.test"), None, Match::Server),
        (Some("nobody.invalid"), None, Match::Default),
        (None, None, Match::Default),
        (Some(long.as_str()), None, Match::Default),
        (Some("bücher.example.test"), None, Match::Default),
        // No SNI: the local address's certificate (RFC 8738 names).
        (None, Some(v4), Match::Address),
        (None, Some(v6), Match::Address),
        (None, Some(server_ip), Match::Address),
        (None, Some(other), Match::Default),
        // An SNI wins over the local address; an IP literal as SNI is
        // looked up as an IP name.
        (Some("exact.example.test"), Some(v4), Match::Server),
        (Some("192.0.2.10"), Some(other), Match::Domain),
    ];
    // The handshake diagnostics ring is allocated once, up front.
    let log = ListenerLog::new("forward 127.0.0.1:5061".into(), true);
    let peer: SocketAddr = "192.0.2.99:5060".parse().unwrap();
    for (sni, local, expected) in cases {
        ALLOCATIONS.store(0, Ordering::SeqCst);
        COUNTING.with(|c| c.set(true));
        // What the accept path does per handshake: resolve, then record
        // (SNI, certificate, rule, ALPN, a failure reason) in the ring.
        let r = snap.resolve(sni, local, now);
        let matched = r.matched;
        let mut rec = Record::new(now, peer, local);
        rec.set_sni(sni);
        rec.set_served(r.served.map(|s| &*s.id), matched.into());
        rec.set_alpn(Some(b"sip"));
        if r.served.is_none() {
            rec.set_failure(&"no certificate to serve");
        }
        log.record(rec);
        COUNTING.with(|c| c.set(false));
        assert_eq!(matched, expected, "sni {sni:?} local {local:?}");
        assert_eq!(
            ALLOCATIONS.load(Ordering::SeqCst),
            0,
            "resolve({sni:?}, {local:?}) and its record allocated"
        );
    }
    assert_eq!(
        log.view().recent.len(),
        cases.len(),
        "every handshake recorded"
    );
    // A listener's own default (`default-cert=ID`): looked up by ID at the
    // default step, an unknown ID passed over; no allocation either.
    let own = snap.by_id(&exact_id).map(|s| s.id.clone()).unwrap();
    // (SNI, listener default, rule, the certificate it must serve)
    type Case<'a> = (Option<&'a str>, Option<&'a str>, Match, Option<&'a str>);
    let listener_cases: [Case<'_>; 5] = [
        (None, Some(&own), Match::Default, Some(&own)),
        (
            Some("nobody.invalid"),
            Some(&own),
            Match::Default,
            Some(&own),
        ),
        (Some("pbx.acme.test"), Some(&own), Match::Domain, None),
        (None, Some("no-such-id"), Match::Default, None),
        (None, None, Match::Default, None),
    ];
    for (sni, listener_default, expected, served_id) in listener_cases {
        ALLOCATIONS.store(0, Ordering::SeqCst);
        COUNTING.with(|c| c.set(true));
        let r = snap.resolve_for(sni, None, listener_default, now);
        let (matched, id) = (r.matched, r.served.map(|s| &*s.id));
        COUNTING.with(|c| c.set(false));
        assert_eq!(
            matched, expected,
            "sni {sni:?} default {listener_default:?}"
        );
        if let Some(want) = served_id {
            assert_eq!(id, Some(want), "sni {sni:?} default {listener_default:?}");
        } else {
            assert_ne!(id, Some(&*own), "sni {sni:?} default {listener_default:?}");
        }
        assert_eq!(
            ALLOCATIONS.load(Ordering::SeqCst),
            0,
            "resolve_for({sni:?}, {listener_default:?}) allocated"
        );
    }
    // The counter itself works: a Vec allocation is seen.
    COUNTING.with(|c| c.set(true));
    let v: Vec<u8> = Vec::with_capacity(std::hint::black_box(64));
    COUNTING.with(|c| c.set(false));
    drop(v);
    assert!(ALLOCATIONS.load(Ordering::SeqCst) > 0);
}
