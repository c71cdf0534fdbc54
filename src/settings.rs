//! Every name the store uses in its settings tree, and every lease name, in
//! one place (issue 10, item 5).
//!
//! Why: five modules used to spell their own keys (`"acme_status:"`,
//! `"dns-provider/"`, ...) into one shared namespace; a clash or a typo was
//! found only at run time, and a clustered backend (etcd) needs the key
//! space to be known to map it onto key prefixes.
//!
//! What must hold: no fixed name starts with a family's prefix and no
//! family's prefix starts with another's, so a prefix scan of one family
//! never returns another's records (tested below). Names never change: they
//! are on disk in existing stores (a rename needs a migration in
//! `Store::with_backend`).

/// One fixed setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// `SystemSettings` (JSON).
    System,
    /// Version of the bundled Root CA list the store holds.
    RootsVersion,
    /// Next import sequence number (big-endian `u64`).
    NextSeq,
    /// ACME settings (JSON).
    Acme,
    /// The ACME account (JSON).
    AcmeAccount,
    /// The admin password record (PHC string).
    AdminPassword,
    /// DNS propagation settings (JSON).
    DnsPropagation,
    /// The local CA (JSON `CaRecord`; its key is in the keys tree).
    LocalCa,
    /// Alert channels (JSON `alert::AlertSettings`).
    Alerts,
    /// `off` turns the import's AIA caIssuers fetch off (closed networks).
    AiaFetch,
    /// STIR/SHAKEN settings (JSON `stir::StirSettings`: x5u base, iat skew).
    StirShaken,
}

impl Setting {
    /// Every fixed setting.
    pub const ALL: [Setting; 11] = [
        Setting::System,
        Setting::RootsVersion,
        Setting::NextSeq,
        Setting::Acme,
        Setting::AcmeAccount,
        Setting::AdminPassword,
        Setting::DnsPropagation,
        Setting::LocalCa,
        Setting::Alerts,
        Setting::AiaFetch,
        Setting::StirShaken,
    ];

    /// The key in the settings tree.
    pub const fn name(self) -> &'static str {
        match self {
            Setting::System => "system",
            Setting::RootsVersion => "roots_version",
            Setting::NextSeq => "next_seq",
            Setting::Acme => "acme",
            Setting::AcmeAccount => "acme_account",
            Setting::AdminPassword => "admin_password",
            Setting::DnsPropagation => "dns-propagation",
            Setting::LocalCa => "local-ca",
            Setting::Alerts => "alerts",
            Setting::AiaFetch => "aia-fetch",
            Setting::StirShaken => "stir-shaken",
        }
    }
}

/// A family of per-name settings, listed by a prefix scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Renewal status of one ACME name set, by its key.
    AcmeStatus,
    /// A DNS-01 TXT record an order published (`FQDN VALUE`), removed after.
    AcmeTxt,
    /// One DNS provider (JSON), by name.
    DnsProvider,
    /// Leases of older releases (now in the leases tree): removed on open.
    LegacyAcmeLease,
    /// Delivery record of one open alert, by its key (`alert::Delivery`).
    AlertSent,
    /// A root distributed to phones, by its ID (DER): a trust anchor of the
    /// import rules besides the Root CA list (`phone-roots import`).
    PhoneRoot,
    /// A root of the STI trust list, by its ID (DER): the STI-PA's CA roots
    /// that `stir-shaken verify` accepts (`sti-roots import`).
    StiRoot,
    /// A CA whose client certificates mutual-TLS forwards with
    /// `client-ca=imported` admit, by its ID (DER) (`client-cas import`).
    ClientCa,
    /// A CSR whose key waits for its certificate (`localca::PendingCsr`),
    /// by the key's ID.
    PendingCsr,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 9] = [
        Family::AcmeStatus,
        Family::AcmeTxt,
        Family::DnsProvider,
        Family::LegacyAcmeLease,
        Family::AlertSent,
        Family::PhoneRoot,
        Family::StiRoot,
        Family::ClientCa,
        Family::PendingCsr,
    ];

    /// The key prefix of the family's records.
    pub const fn prefix(self) -> &'static str {
        match self {
            Family::AcmeStatus => "acme_status:",
            Family::AcmeTxt => "acme_txt:",
            Family::DnsProvider => "dns-provider/",
            Family::LegacyAcmeLease => "acme_lease:",
            Family::AlertSent => "alert_sent:",
            Family::PhoneRoot => "phone-root:",
            Family::StiRoot => "sti-root:",
            Family::ClientCa => "client-ca:",
            Family::PendingCsr => "pending-csr:",
        }
    }

    /// The key of one member.
    pub fn key(self, name: &str) -> String {
        format!("{}{name}", self.prefix())
    }
}

/// Prefix (in `Tree::Leases`) of the ACME ordering leases, one per name set.
pub const ACME_LEASE_PREFIX: &str = "acme:";

/// Prefix (in `Tree::Leases`) of the node heartbeats of a shared store, one
/// per node (`node:ID`, held by that node; `cluster status`).
pub const NODE_LEASE_PREFIX: &str = "node:";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_names_and_family_prefixes_never_overlap() {
        for (i, a) in Setting::ALL.iter().enumerate() {
            for b in &Setting::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
            for f in Family::ALL {
                assert!(!a.name().starts_with(f.prefix()), "{a:?} is in {f:?}");
            }
        }
        for f in Family::ALL {
            for g in Family::ALL {
                assert!(
                    f == g || !f.prefix().starts_with(g.prefix()),
                    "{f:?} in {g:?}"
                );
            }
        }
        assert_eq!(Family::DnsProvider.key("cf"), "dns-provider/cf");
    }
}
