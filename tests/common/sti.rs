//! A STIR/SHAKEN setup as an operator makes it (issue 15): a test PKI (a
//! root and an intermediate), tenant `acme` with a STIR/SHAKEN certificate (TNAuthList)
//! and its key, the daemon serving HTTPS on 127.0.0.1 with a certificate for
//! that address from the same PKI (the default certificate: a client
//! connecting to an IP sends no SNI), the test root in the Root CA list (so
//! the x5u fetch trusts the daemon) and in the STI trust list, and
//! `stir-shaken set --x5u-base https://127.0.0.1:PORT/sti`.
//!
//! Also: `jws`, which signs any protected header and payload with any P-256
//! key (the negative corpus needs headers pbx-certd would never make).

use base64ct::{Base64UrlUnpadded, Encoding};
use rcgen::{CertificateParams, KeyPair};
use serde_json::Value;

use super::*;

/// Calling number as typed (canonical: 12025550100).
pub const ORIG: &str = "+1 (202) 555-0100";
/// Called number (canonical as given).
pub const DEST: &str = "12025550199";

/// The running setup.
pub struct Sti {
    pub pbx: Pbx,
    pub pki: Pki,
    /// The STIR/SHAKEN certificate of tenant `acme`.
    pub cert: Issued,
    pub daemon: Daemon,
    /// `https://127.0.0.1:PORT/sti`.
    pub base: String,
    /// The test root's PEM file.
    pub root_file: String,
    /// The intermediate's PEM file.
    pub inter_file: String,
}

impl Sti {
    #[track_caller]
    pub fn start() -> Sti {
        let pbx = Pbx::new();
        pbx.tenant_add("acme", &["sip.acme.example.com"]);
        let pki = Pki::new();
        let cert = pki.leaf(leaf(&["sip.acme.example.com"]).tn_auth_list());
        assert_eq!(pki.import(&pbx, &cert, &[])["kind"], "stir-shaken");
        // HTTPS on 127.0.0.1: an IP-address certificate, the default one.
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let web = CertBuilder::with_params(params).signed_by(&pki.inter);
        pki.import(&pbx, &web, &["--kind", "server"]);
        pbx.ok_true(&["system", "set", "--default-cert", &web.id()]);
        let root_file = pbx.file("root.pem", pki.root.pem());
        let inter_file = pbx.file("inter.pem", pki.inter.pem());
        pbx.import_ok(pki.root.pem(), None, &["--kind", "root"]);
        pbx.ok(&["sti-roots", "import", "--cert", &root_file]);
        let daemon = pbx.serve(false);
        let base = format!("https://127.0.0.1:{}/sti", daemon.https.port());
        pbx.ok(&["stir-shaken", "set", "--x5u-base", &base]);
        Sti {
            pbx,
            pki,
            cert,
            daemon,
            base,
            root_file,
            inter_file,
        }
    }

    /// The x5u of the tenant's certificate.
    pub fn x5u(&self) -> String {
        format!("{}/{}.pem", self.base, self.cert.id())
    }

    /// `stir-shaken sign --tenant acme --orig ORIG --dest DEST --attest A EXTRA`.
    #[track_caller]
    pub fn sign(&self, extra: &[&str]) -> Value {
        let mut args = vec![
            "stir-shaken",
            "sign",
            "--tenant",
            "acme",
            "--orig",
            ORIG,
            "--dest",
            DEST,
            "--attest",
            "A",
        ];
        args.extend_from_slice(extra);
        self.pbx.ok(&args)
    }

    /// `stir-shaken verify --identity H --orig O --dest D EXTRA`: the verdict.
    #[track_caller]
    pub fn verify(&self, identity: &str, orig: &str, dest: &str, extra: &[&str]) -> Value {
        let mut args = vec![
            "stir-shaken",
            "verify",
            "--identity",
            identity,
            "--orig",
            orig,
            "--dest",
            dest,
        ];
        args.extend_from_slice(extra);
        self.pbx.ok(&args)
    }
}

/// The JSON of one part of a compact JWS.
pub fn jws_part(identity: &str, i: usize) -> Value {
    let jws = identity.split(';').next().unwrap();
    let part = jws.split('.').nth(i).unwrap();
    serde_json::from_slice(&Base64UrlUnpadded::decode_vec(part).unwrap()).unwrap()
}

/// An Identity header with this protected header and payload (serialised as
/// given), signed ES256 by `key`, with `info` = the header's x5u.
pub fn jws(header: &Value, payload: &Value, key: &KeyPair) -> String {
    let input = format!(
        "{}.{}",
        Base64UrlUnpadded::encode_string(header.to_string().as_bytes()),
        Base64UrlUnpadded::encode_string(payload.to_string().as_bytes())
    );
    let rng = ring::rand::SystemRandom::new();
    let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &key.serialize_der(),
        &rng,
    )
    .unwrap();
    let sig = signer.sign(&rng, input.as_bytes()).unwrap();
    format!(
        "{input}.{};info=<{}>;alg=ES256;ppt=shaken",
        Base64UrlUnpadded::encode_string(sig.as_ref()),
        header["x5u"].as_str().unwrap_or("")
    )
}
