//! The Root CA list: whom the PBX trusts when it is the TLS client (ACME,
//! provisioning).
//!
//! Why: the list ships with the binary (Mozilla's list via `webpki-root-certs`,
//! whole certificates so each root has an ID, PEM and expiry), can be edited
//! by the admin, and `reset` restores exactly the bundled list. The store
//! records which bundled version it holds, so after an upgrade `system show`
//! can say that a reset would bring the newer list.
//!
//! Beside it, three trust lists with one implementation (`TrustList`):
//! the roots distributed to phones (`phone-roots import|list|show|delete`),
//! a company or PBX-vendor CA the phones were given but the PBX need not
//! trust as a client (the import rules take them as trust anchors, issue
//! 17: a chain ending in a phone root is complete and imports without the
//! `private-root` warning); the STI trust list (`sti-roots`, RFC 8226 §9);
//! and the client CAs a mutual-TLS forward may admit (`client-cas`,
//! `client-ca=imported`).
//!
//! What must hold: reset is one batch; the bundled version string changes
//! whenever the bundled contents change; reset never touches a trust list.

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
    /// What to call it: the subject's CN, else its organisation, else the
    /// subject.
    #[serde(default)]
    pub name: String,
    /// The subject's organisation (the issuing company), when named.
    #[serde(default)]
    pub organization: Option<String>,
    /// RFC 3339.
    pub not_after: String,
}

impl RootInfo {
    /// The listing entry of a root (ID, DER).
    pub fn of(id: String, der: &[u8]) -> RootInfo {
        info(id, der)
    }
}

/// A root's listing entry (an unparseable one is listed by ID).
fn info(id: String, der: &[u8]) -> RootInfo {
    match CertInfo::parse(der.to_vec()) {
        Some(info) => {
            let organization = crate::pki::subject_org(der);
            let name = crate::pki::subject_cn(der)
                .or_else(|| organization.clone())
                .unwrap_or_else(|| info.subject.clone());
            RootInfo {
                id,
                subject: info.subject,
                name,
                organization,
                not_after: crate::clock::rfc3339(info.not_after),
            }
        }
        None => RootInfo {
            id,
            subject: "(unreadable)".into(),
            name: "(unreadable)".into(),
            organization: None,
            not_after: String::new(),
        },
    }
}

/// Sorted by name (the CN as people say it, not the raw DN that starts
/// with `C=`), then subject.
fn sorted(mut out: Vec<RootInfo>) -> Vec<RootInfo> {
    out.sort_by_cached_key(|r| (r.name.to_lowercase(), r.subject.to_lowercase()));
    out
}

/// The Root CA list sorted by name (CN, else organisation; unparseable entries are listed by ID).
pub fn list(store: &Store) -> Result<Vec<RootInfo>, StoreError> {
    Ok(sorted(
        store
            .roots()?
            .into_iter()
            .map(|(id, der)| info(id, &der))
            .collect(),
    ))
}

/// The trust lists kept apart from the Root CA list, each a settings
/// family of (ID → DER) records: one implementation for all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustList {
    /// Roots distributed to phones (`phone-roots`): trust anchors of the
    /// import rules.
    Phone,
    /// The STI trust list (`sti-roots`): roots `stir-shaken verify` accepts.
    Sti,
    /// CAs whose client certificates a forward with `client-ca=imported`
    /// admits (`client-cas`, `import --kind client-ca`).
    Client,
}

impl TrustList {
    const fn family(self) -> crate::settings::Family {
        match self {
            TrustList::Phone => crate::settings::Family::PhoneRoot,
            TrustList::Sti => crate::settings::Family::StiRoot,
            TrustList::Client => crate::settings::Family::ClientCa,
        }
    }

    /// How an import refusal names one entry (`not-a-ca`).
    pub const fn what(self) -> &'static str {
        match self {
            TrustList::Phone => "a phone root",
            TrustList::Sti => "an STI root",
            TrustList::Client => "a client CA",
        }
    }

    /// The entries: (ID, DER), by ID.
    pub fn entries(self, store: &Store) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = self.family().prefix();
        Ok(store
            .settings_with_prefix(prefix)?
            .into_iter()
            .map(|(k, der)| {
                let key = String::from_utf8_lossy(&k);
                let id = key.strip_prefix(prefix).unwrap_or(&key).to_owned();
                (id, der)
            })
            .collect())
    }

    /// The listing, sorted by name like the Root CA list.
    pub fn list(self, store: &Store) -> Result<Vec<RootInfo>, StoreError> {
        Ok(sorted(
            self.entries(store)?
                .into_iter()
                .map(|(id, der)| info(id, &der))
                .collect(),
        ))
    }

    /// Store CA certificates (already judged by the import rules) in one
    /// batch.
    pub fn add(self, store: &Store, ders: &[Vec<u8>]) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        for der in ders {
            batch.put_setting(&self.family().key(&sha256_hex(der)), der);
        }
        store.commit(batch)
    }

    /// The entry whose ID starts with `prefix` (a full ID is a prefix).
    fn find(self, store: &Store, prefix: &str) -> Result<(String, Vec<u8>), crate::error::Error> {
        let mut found: Vec<(String, Vec<u8>)> = self
            .entries(store)?
            .into_iter()
            .filter(|(id, _)| id.starts_with(prefix))
            .collect();
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(crate::error::Error::NotFound(prefix.to_owned())),
            _ => Err(crate::error::Error::AmbiguousId(prefix.to_owned())),
        }
    }

    /// `show ID`: (full ID, PEM).
    pub fn show(
        self,
        store: &Store,
        prefix: &str,
    ) -> Result<(String, String), crate::error::Error> {
        let (id, der) = self.find(store, prefix)?;
        Ok((id, crate::pem::encode("CERTIFICATE", &der)))
    }

    /// `delete ID`: removes the one entry `ID` names.
    pub fn delete(self, store: &Store, prefix: &str) -> Result<(), crate::error::Error> {
        let (id, _) = self.find(store, prefix)?;
        let mut batch = Batch::default();
        batch.delete_setting(&self.family().key(&id));
        store.commit(batch)?;
        Ok(())
    }
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
