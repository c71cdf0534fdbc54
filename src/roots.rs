//! The Root CA list: whom the PBX trusts when it is the TLS client (ACME,
//! provisioning).
//!
//! Why: the list ships with the binary (Mozilla's list via `webpki-root-certs`,
//! whole certificates so each root has an ID, PEM and expiry), can be edited
//! by the admin, and `reset` restores exactly the bundled list. The store
//! records which bundled version it holds, so after an upgrade `system show`
//! can say that a reset would bring the newer list.
//!
//! What must hold: reset is one batch; the bundled version string changes
//! whenever the bundled contents change.

use crate::pki::{sha256_hex, CertInfo};
use crate::store::{Batch, Store, StoreError};

/// Version of the `webpki-root-certs` crate bundled (checked against
/// Cargo.lock by a unit test so it cannot drift).
pub const WEBPKI_ROOT_CERTS_VERSION: &str = "1.0.11";

/// The bundled roots as DER.
pub fn bundled() -> impl Iterator<Item = &'static [u8]> {
    webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|c| c.as_ref())
}

/// The bundled list's version: crate version, count and a content hash.
pub fn bundled_version() -> String {
    let all: Vec<u8> = bundled().flat_map(|d| d.iter().copied()).collect();
    let hash = sha256_hex(&all);
    format!(
        "webpki-root-certs {WEBPKI_ROOT_CERTS_VERSION} ({} roots, {})",
        bundled().count(),
        hash.get(..12).unwrap_or_default()
    )
}

/// The ops that make the Root CA list exactly the bundled one.
pub fn reset_ops(store: &Store, batch: &mut Batch) -> Result<(), StoreError> {
    for (id, _) in store.roots()? {
        batch.delete_root(&id);
    }
    for der in bundled() {
        batch.put_root(&sha256_hex(der), der);
    }
    batch.put_roots_version(&bundled_version());
    Ok(())
}

/// A root for listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RootInfo {
    /// Hex SHA-256 of the DER.
    pub id: String,
    /// Subject (RFC 4514).
    pub subject: String,
    /// RFC 3339.
    pub not_after: String,
}

/// The Root CA list sorted by subject (unparseable entries are listed by ID).
pub fn list(store: &Store) -> Result<Vec<RootInfo>, StoreError> {
    let mut out: Vec<RootInfo> = store
        .roots()?
        .into_iter()
        .map(|(id, der)| match CertInfo::parse(der) {
            Some(info) => RootInfo {
                id,
                subject: info.subject,
                not_after: crate::clock::rfc3339(info.not_after),
            },
            None => RootInfo {
                id,
                subject: "(unreadable)".into(),
                not_after: String::new(),
            },
        })
        .collect();
    out.sort_by_cached_key(|r| r.subject.to_lowercase());
    Ok(out)
}

/// True when the stored list is older (or other) than the bundled one.
pub fn update_available(store: &Store) -> Result<bool, StoreError> {
    Ok(store.roots_version()?.as_deref() != Some(bundled_version().as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_list_is_large_and_parses() {
        let n = bundled().count();
        assert!(n >= 100, "only {n} bundled roots");
        assert!(bundled().all(|d| CertInfo::parse(d.to_vec()).is_some()));
    }

    #[test]
    fn version_constant_matches_cargo_lock() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap();
        let needle =
            format!("name = \"webpki-root-certs\"\nversion = \"{WEBPKI_ROOT_CERTS_VERSION}\"");
        assert!(
            lock.contains(&needle),
            "update WEBPKI_ROOT_CERTS_VERSION to the locked version"
        );
    }
}
