//! The command-line contract (README, "CLI reference"): parsing, reading input
//! files, and printing results as text or `--json`.
//!
//! Why: scripts rely on exact shapes and exit codes: 0 success, 1 a rejected
//! or failed operation (`{"error":{"code","message"}}` on stdout with
//! `--json`, a message on stderr always), 2 a usage error (clap's own code,
//! also for an ID prefix under 8 hex digits).
//!
//! What must hold: each subcommand maps to exactly one `ops::Command`; input
//! files are read with a bound (`MAX_BOX_BYTES` + 1) so a huge file cannot
//! exhaust memory before the size rule rejects it.

use std::io::Read;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::Error;
use crate::limits::MAX_BOX_BYTES;
use crate::model::{ChallengeChoice, KeyType, TsigAlgorithm, Word};
use crate::ops::{self, Command, Reply};
use crate::pki::KindRequest;
use crate::store::Store;

/// `--version`: version, target triple and the bundled Root CA list.
pub fn long_version() -> String {
    format!(
        "{} (target {}; bundled Root CA list: {})",
        env!("CARGO_PKG_VERSION"),
        env!("PBX_CERTD_TARGET"),
        crate::roots::bundled_version()
    )
}

/// Default data directory on an appliance.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/pbx-certd";

/// pbx-certd: certificates for a multi-tenant PBX.
#[derive(Debug, Parser)]
#[command(name = "pbx-certd", version, about, long_about = None)]
pub struct Cli {
    /// Data directory holding the store.
    #[arg(long, global = true, env = "PBX_CERTD_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// The store, when not the sled store in the data directory: an etcd
    /// cluster's key prefix shared by every node (README "Cluster").
    #[arg(
        long,
        global = true,
        env = "PBX_CERTD_STORE",
        value_name = "etcd+http(s)://HOST:PORT[,...]/PREFIX"
    )]
    pub store: Option<crate::etcd::EtcdUrl>,
    /// With an etcd+https:// store: the PEM CA of the etcd members.
    #[arg(long, global = true, value_name = "FILE")]
    pub store_ca: Option<PathBuf>,
    /// With an etcd+https:// store: the PEM client certificate (mutual TLS).
    #[arg(long, global = true, value_name = "FILE")]
    pub store_cert: Option<PathBuf>,
    /// With an etcd+https:// store: the PEM client key (mutual TLS).
    #[arg(long, global = true, value_name = "FILE")]
    pub store_key: Option<PathBuf>,
    /// The store key file (`store keygen`): private keys and secret
    /// settings are sealed at rest with its first key, read with any of
    /// its keys (README "Keys sealed at rest").
    #[arg(long, global = true, env = crate::seal::KEY_FILE_ENV, value_name = "FILE")]
    pub store_key_file: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Cmd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Manage tenants and their DNS names.
    Tenant {
        #[command(subcommand)]
        command: TenantCmd,
    },
    /// System DNS name, admin e-mail, default certificate.
    System {
        #[command(subcommand)]
        command: SystemCmd,
    },
    /// Import a PEM certificate chain (and key) or Root CA certificates.
    Import {
        /// Certificate box: leaf first, then intermediates ('-' for stdin).
        #[arg(long)]
        cert: String,
        /// Private key (PKCS#1, PKCS#8 or SEC1; '-' for stdin).
        #[arg(long)]
        key: Option<String>,
        /// What the certificate is: auto (classify), root (Root CA list),
        /// server (all tenants), domain (one tenant), stir-shaken, or ca (a
        /// CA certificate with its key becomes the local CA).
        #[arg(long, value_parser = word::<KindRequest>, default_value = "auto")]
        kind: KindRequest,
        /// With --kind ca: replace the local CA there is.
        #[arg(long)]
        replace: bool,
    },
    /// List domain, server and STIR/SHAKEN certificates in import order.
    Certs,
    /// Who gets which certificate: every tenant name and address, the
    /// system name, no SNI, an unknown name; warnings where clients object.
    Served,
    /// The running daemon's last handshakes per TLS listener (SNI or none,
    /// certificate and rule, ALPN, version, failure) and counters per rule.
    Handshakes {
        /// Only listeners whose name contains this (e.g. `5061`, `forward`).
        #[arg(long)]
        listener: Option<String>,
    },
    /// Show or delete one certificate.
    Cert {
        #[command(subcommand)]
        command: CertCmd,
    },
    /// The Root CA list (list, show, delete, reset).
    Roots {
        #[command(subcommand)]
        command: Option<RootsCmd>,
    },
    /// The STI trust list: the CA roots `stir-shaken verify` accepts
    /// (import, list, show, delete).
    #[command(name = "sti-roots")]
    StiRoots {
        #[command(subcommand)]
        command: Option<TrustCmd>,
    },
    /// Roots distributed to phones: trust anchors of the import rules
    /// besides the Root CA list (import, list, show, delete).
    PhoneRoots {
        #[command(subcommand)]
        command: Option<TrustCmd>,
    },
    /// CAs whose client certificates a forward with `client-ca=imported`
    /// admits (import, list, show, delete).
    #[command(name = "client-cas")]
    ClientCas {
        #[command(subcommand)]
        command: Option<TrustCmd>,
    },
    /// ACME: settings, account, status.
    Acme {
        #[command(subcommand)]
        command: AcmeCmd,
    },
    /// Which certificate a TLS client with this SNI gets.
    Resolve {
        /// The SNI host name; omitted: a client sending no SNI.
        sni: Option<String>,
        /// The PBX address the client connects to: without SNI, the
        /// certificate of that address (a tenant's `--ip`) comes first.
        #[arg(long = "local-address", value_name = "ADDR")]
        local_address: Option<std::net::IpAddr>,
    },
    /// Run the daemon: HTTPS admin, port 80, TLS forwards, control socket.
    Serve(ServeArgs),
    /// Web admin settings.
    Admin {
        #[command(subcommand)]
        command: AdminCmd,
    },
    /// DNS providers for ACME DNS-01 challenges (RFC 2136, Cloudflare, DigitalOcean).
    Dns {
        #[command(subcommand)]
        command: DnsCmd,
    },
    /// Make a new key (kept in the store) and print a CSR to buy a certificate with.
    Csr {
        /// A DNS name for the certificate (repeatable; the first is the CN).
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Key type: p256 or rsa2048.
        #[arg(long, value_parser = word::<KeyType>, default_value = "p256")]
        key_type: KeyType,
        /// Organization (O), e.g. for OV/EV certificates.
        #[arg(long = "org")]
        organization: Option<String>,
        /// Organizational unit (OU).
        #[arg(long = "org-unit")]
        organizational_unit: Option<String>,
        /// Locality, the city (L).
        #[arg(long)]
        locality: Option<String>,
        /// State or province (ST).
        #[arg(long)]
        state: Option<String>,
        /// Country (C): the two-letter ISO 3166 code.
        #[arg(long)]
        country: Option<String>,
    },
    /// Keys of CSRs still waiting for their certificate (list, delete).
    #[command(name = "csr-keys")]
    CsrKeys {
        #[command(subcommand)]
        command: CsrKeysCmd,
    },
    /// The local CA for closed networks (init, issue, show).
    Ca {
        #[command(subcommand)]
        command: CaCmd,
    },
    /// STIR/SHAKEN: certificate choice, signing, verification, settings.
    #[command(name = "stir-shaken")]
    StirShaken {
        #[command(subcommand)]
        command: StirCmd,
    },
    /// Alert channels: SMTP e-mail to the admin e-mail, signed webhook.
    Alert {
        #[command(subcommand)]
        command: AlertCmd,
    },
    /// The open alerts and their delivery state.
    Alerts,
    /// Write every certificate, chain, key, root, tenant and setting into
    /// one file (mode 0600: it holds the private keys).
    Backup {
        /// The backup file (replaced if it exists).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Seal the keys and secrets in the file with the store key
        /// (`--store-key-file`; restored only with that key).
        #[arg(long)]
        sealed: bool,
    },
    /// Make the store equal to a backup file. Refused when the store holds
    /// certificates, keys or tenants, unless --replace.
    Restore {
        /// The backup file (`backup --out`).
        #[arg(long = "in")]
        input: std::path::PathBuf,
        /// Replace whatever the store holds.
        #[arg(long)]
        replace: bool,
    },
    /// The store as a whole: copy it to another store.
    Store {
        #[command(subcommand)]
        command: StoreCmd,
    },
    /// A cluster on a shared store: this node, the store, the nodes seen.
    Cluster {
        #[command(subcommand)]
        command: ClusterCmd,
    },
}

/// `cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// This node's ID, the store's location, health and revision, the
    /// revision this node's daemon applied last, the nodes seen recently
    /// (heartbeats) and who holds which ACME lease.
    Status,
}

/// `store` subcommands.
#[derive(Debug, Subcommand)]
pub enum StoreCmd {
    /// Copy this store (the data dir's sled store, or `--store`) into
    /// another one: `etcd+http(s)://H:P[,H:P...]/PREFIX` or a data dir.
    /// Refused when the target holds certificates, keys or tenants, unless
    /// --replace.
    Copy {
        /// The target: an etcd URL or the path of a data directory.
        #[arg(long)]
        to: String,
        /// Replace whatever the target holds.
        #[arg(long)]
        replace: bool,
        /// The target etcd members' CA (PEM), for `etcd+https://`.
        #[arg(long = "to-ca", value_name = "FILE")]
        to_ca: Option<std::path::PathBuf>,
        /// Client certificate chain (PEM) for mutual TLS to the target.
        #[arg(long = "to-cert", value_name = "FILE")]
        to_cert: Option<std::path::PathBuf>,
        /// Its private key (PEM).
        #[arg(long = "to-key", value_name = "FILE")]
        to_key: Option<std::path::PathBuf>,
    },
    /// Make a store key file (32 random bytes, mode 0600) for
    /// --store-key-file; an existing file is never overwritten.
    Keygen {
        /// The new key file.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Seal every private key and secret setting again with the first key
    /// of --store-key-file (plaintext ones get sealed): after adding a key
    /// (rotation), or to seal a store made without one.
    Rekey,
}

fn render_cluster(c: &ops::ClusterView) -> String {
    let mut out = match (&c.node, c.daemon) {
        (Some(id), true) => format!("node: {id} (its daemon answered)\n"),
        (Some(id), false) => format!("node: {id} (no daemon runs on this data dir)\n"),
        (None, _) => "node: none yet (this data dir never served)\n".to_owned(),
    };
    let kind = if c.shared {
        "shared"
    } else {
        "this node's own"
    };
    out += &format!("store: {} ({kind})\n", c.store);
    out += &match (&c.error, c.revision) {
        (Some(e), _) => format!("  unreachable: {e}\n"),
        (None, Some(r)) => format!("  healthy, revision {r}\n"),
        (None, None) => "  healthy\n".to_owned(),
    };
    if c.daemon && c.shared {
        let following = match c.following {
            Some(true) => "following the changes of other nodes",
            _ => "NOT following (serving its last snapshot)",
        };
        out += &format!(
            "  applied: revision {} at {}; {following}\n",
            or_dash(c.applied_revision.map(|r| r.to_string()).as_deref()),
            or_dash(c.applied_at.as_deref())
        );
    }
    if c.shared {
        out += &format!("nodes seen ({}):\n", c.nodes.len());
        for n in &c.nodes {
            let this = if n.this { " (this node)" } else { "" };
            out += &format!("  {}{this}, heartbeat until {}\n", n.id, n.expires);
        }
    }
    out += "ACME leases:\n";
    if c.leases.is_empty() {
        out += "  none (no order running)\n";
    }
    for l in &c.leases {
        out += &format!("  {}: held by {} until {}\n", l.names, l.holder, l.expires);
    }
    out
}

/// `store copy --to` naming the store it copies (the same etcd members and
/// prefix, or the data dir's own sled store) is refused with `same-store`.
fn refuse_copy_to_itself(
    to: &str,
    data_dir: &std::path::Path,
    store: Option<&crate::etcd::EtcdUrl>,
) -> Result<(), Error> {
    let same = match (store, to.starts_with("etcd+")) {
        (Some(url), true) => to.parse::<crate::etcd::EtcdUrl>().is_ok_and(|t| &t == url),
        (None, false) => {
            let canon = |p: &std::path::Path| std::fs::canonicalize(p).ok();
            canon(std::path::Path::new(to)).is_some()
                && canon(std::path::Path::new(to)) == canon(data_dir)
        }
        _ => false,
    };
    match same {
        true => Err(crate::error::BackupError::SameStore(format!("--to {to}")).into()),
        false => Ok(()),
    }
}

/// An absolute path as text (the daemon may run the command from another
/// working directory).
fn absolute_text(path: &std::path::Path, what: &str) -> Result<String, Error> {
    let bad = |why: String| Error::BadSetting(format!("{what} {}: {why}", path.display()));
    let abs = std::path::absolute(path).map_err(|e| bad(e.to_string()))?;
    abs.to_str()
        .map(str::to_owned)
        .ok_or_else(|| bad("not UTF-8".into()))
}

/// `alert` subcommands.
#[derive(Debug, Subcommand)]
pub enum AlertCmd {
    /// Change alert channels ('none' clears a value).
    Set {
        /// SMTP submission server HOST:PORT (e.g. mail.example.com:587).
        #[arg(long)]
        smtp_server: Option<String>,
        /// starttls (submission, 587) or implicit (465).
        #[arg(long, value_parser = ["starttls", "implicit"])]
        smtp_tls: Option<String>,
        /// SMTP AUTH user (PLAIN or LOGIN).
        #[arg(long)]
        smtp_user: Option<String>,
        /// SMTP AUTH password ('-' reads one line from stdin).
        #[arg(long)]
        smtp_password: Option<String>,
        /// Sender address [default: the admin e-mail].
        #[arg(long)]
        from: Option<String>,
        /// Webhook URL (https).
        #[arg(long)]
        webhook: Option<String>,
        /// Webhook HMAC-SHA256 secret ('-' reads one line from stdin).
        #[arg(long)]
        webhook_secret: Option<String>,
        /// Renewal failures in a row before an alert [default: 3].
        #[arg(long)]
        failures: Option<u32>,
    },
    /// Alert settings (secrets masked).
    Show,
    /// Send one test alert on every configured channel; report each outcome.
    Test,
}

/// `tenant` subcommands.
#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Add a tenant owning DNS names and/or IP addresses.
    Add {
        /// Tenant name.
        name: String,
        /// A DNS name of the tenant (repeatable).
        #[arg(long = "dns", required_unless_present = "ip")]
        dns: Vec<String>,
        /// An IP address of the tenant (repeatable; RFC 8738 `ip` names:
        /// ordered by HTTP-01 or TLS-ALPN-01, and served to clients that
        /// connect to that address without SNI).
        #[arg(long = "ip")]
        ip: Vec<String>,
    },
    /// List tenants.
    List,
    /// Remove a tenant (refused while it owns domain certificates).
    Remove {
        /// Tenant name.
        name: String,
        /// Remove nothing; list its names and certificates and say what
        /// each of its names would get instead.
        #[arg(long)]
        dry_run: bool,
    },
    /// Change a tenant: its DNS names and IP addresses, and its ACME
    /// options ('default' follows `acme set`). `tenant edit` is the same.
    #[command(visible_alias = "edit")]
    Set {
        /// Tenant name.
        name: String,
        /// Its DNS names from now on (all of them; repeat the flag), checked
        /// as `tenant add` checks them. Its certificates keep their tenant.
        #[arg(long = "dns")]
        dns: Vec<String>,
        /// Its IP addresses from now on (all of them; repeat), or `none`.
        #[arg(long = "ip")]
        ip: Vec<String>,
        /// auto, http-01, dns-01, tls-alpn-01 or default.
        #[arg(long, visible_alias = "challenge")]
        acme_challenge: Option<String>,
        /// p256, rsa2048 or default (P-256).
        #[arg(long, visible_alias = "key-type")]
        acme_key_type: Option<String>,
        /// ACME profile name, or default (follows `acme set --profile`).
        #[arg(long, visible_alias = "profile")]
        acme_profile: Option<String>,
    },
}

/// `on` / `off`.
fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("expected on or off".into()),
    }
}

/// `system` subcommands.
#[derive(Debug, Subcommand)]
pub enum SystemCmd {
    /// Change system settings.
    Set {
        /// The PBX's own DNS name ('none' clears it).
        #[arg(long)]
        dns: Option<String>,
        /// The admin's e-mail address ('none' clears it).
        #[arg(long)]
        admin_email: Option<String>,
        /// Certificate served without SNI (an ID, or 'none').
        #[arg(long, value_parser = parse_id_or_none)]
        default_cert: Option<String>,
        /// Fetch a missing intermediate from its AIA URL at import ('off'
        /// for closed networks).
        #[arg(long, value_parser = parse_on_off)]
        aia_fetch: Option<bool>,
    },
    /// Show system settings.
    Show,
}

/// `cert` subcommands.
#[derive(Debug, Subcommand)]
pub enum CertCmd {
    /// Print the PEM chain (never the key).
    Show {
        /// Certificate ID or a unique prefix of at least 8 hex digits.
        #[arg(value_parser = parse_id)]
        id: String,
    },
    /// Delete a certificate.
    Delete {
        /// Certificate ID or a unique prefix of at least 8 hex digits.
        #[arg(value_parser = parse_id)]
        id: String,
        /// Delete nothing; say what each name it serves would get instead.
        #[arg(long)]
        dry_run: bool,
    },
    /// Re-validate a stored chain now, as a client would see it.
    Check {
        /// Certificate ID or a unique prefix of at least 8 hex digits.
        #[arg(value_parser = parse_id)]
        id: String,
    },
    /// Renew an ACME (or self-signed) certificate now (at the daemon's next
    /// check, which this triggers when the daemon runs).
    Reissue {
        /// Certificate ID or a unique prefix of at least 8 hex digits.
        #[arg(value_parser = parse_id)]
        id: String,
    },
}

/// `acme` subcommands.
#[derive(Debug, Subcommand)]
pub enum AcmeCmd {
    /// Change ACME settings.
    Set {
        /// Directory URL (https).
        #[arg(long)]
        directory: Option<String>,
        /// Contact e-mail, or `none` (then the admin e-mail is used).
        #[arg(long)]
        email: Option<String>,
        /// Order certificates automatically.
        #[arg(long, value_parser = clap::value_parser!(bool), action = clap::ArgAction::Set)]
        enabled: Option<bool>,
        /// auto|http-01|dns-01|tls-alpn-01
        #[arg(long, value_parser = word_string::<ChallengeChoice>)]
        challenge: Option<String>,
        /// External Account Binding key ID (`none` removes the binding).
        #[arg(long, requires = "eab_hmac")]
        eab_kid: Option<String>,
        /// External Account Binding HMAC key (base64url).
        #[arg(long, requires = "eab_kid")]
        eab_hmac: Option<String>,
        /// Time between renewal checks: 6h, 30m, 1h30m, 45s or seconds
        /// (1s to 24h; default 6h).
        #[arg(long, value_parser = parse_interval)]
        check_interval: Option<u64>,
        /// ACME profile named in orders (e.g. classic, tlsserver, shortlived;
        /// `none`: the CA's default). Only when the CA's directory lists it.
        #[arg(long)]
        profile: Option<String>,
    },
    /// Settings and account state.
    Show,
    /// Per certificate name set: valid|pending|failed|off, last error, next attempt.
    Status,
    /// Order a name set again now (a failed one's back-off ends).
    Retry {
        /// The name set as `acme status` lists it: system or tenant:NAME.
        key: String,
    },
}

/// `roots` subcommands.
#[derive(Debug, Subcommand)]
pub enum RootsCmd {
    /// Print one root as PEM.
    Show {
        /// Root ID or a unique prefix of at least 8 hex digits.
        #[arg(value_parser = parse_id)]
        id: String,
    },
    /// Delete roots (all or nothing).
    Delete {
        /// Root IDs or unique prefixes of at least 8 hex digits.
        #[arg(value_parser = parse_id, required = true)]
        ids: Vec<String>,
    },
    /// Restore exactly the bundled Root CA list.
    Reset,
}

/// The subcommands of each trust list (`phone-roots`, `sti-roots`,
/// `client-cas`; none: list).
#[derive(Debug, clap::Subcommand)]
pub enum TrustCmd {
    /// Add CA certificates (PEM box, `-` for stdin), judged as a root import.
    Import {
        /// The PEM file.
        #[arg(long)]
        cert: String,
    },
    /// List them.
    List,
    /// Print one (PEM).
    Show {
        /// Root ID or a unique prefix of at least 8 hex digits.
        #[arg(value_parser = parse_id)]
        id: String,
    },
    /// Remove one.
    Delete {
        /// Root ID or a unique prefix of at least 8 hex digits.
        #[arg(value_parser = parse_id)]
        id: String,
    },
}

/// `serve` options (each also settable in `--config FILE`; flags win).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// HTTPS admin listener address, or `none` [default: 0.0.0.0:443].
    #[arg(long)]
    pub https: Option<String>,
    /// Port-80 listener (ACME HTTP-01, redirect to HTTPS), or `none` [default: 0.0.0.0:80].
    #[arg(long)]
    pub http: Option<String>,
    /// Extra TLS listener forwarding to a local TCP service (repeatable);
    /// options: proxy=v2|v1 (PROXY protocol header to the target),
    /// client-auth=none|optional|required, client-ca=local-ca|imported|roots,
    /// alpn=P1,P2,... (e.g. http/1.1 for WSS), min-tls=1.2|1.3,
    /// idle=SECONDS|none, max-conns=N, default-cert=ID.
    #[arg(long = "tls-forward", value_name = "LISTEN=TARGET[,OPTION=VALUE...]")]
    pub tls_forward: Vec<crate::serve::Forward>,
    /// Local plain-TCP listener whose connections go out as TLS to a trunk,
    /// verified against the Root CA list (repeatable); `sni=` the name to
    /// send and verify [default: HOST], `client-cert=` a stored certificate
    /// with the clientAuth EKU to present.
    #[arg(
        long = "tls-connect",
        value_name = "LISTEN=HOST:PORT[,sni=NAME][,client-cert=ID]"
    )]
    pub tls_connect: Vec<crate::connect::Connect>,
    /// Established connections from one client IP (IPv6: one /64) per listener [default: 128].
    #[arg(long = "max-conns-per-ip", value_name = "N")]
    pub max_conns_per_ip: Option<crate::serve::MaxConnsPerIp>,
    /// Threads serving the TLS listeners [default: the CPUs this process may run on].
    #[arg(long, value_name = "N")]
    pub workers: Option<crate::serve::Workers>,
    /// Keep the handshake diagnostics (`handshakes`): on or off [default: on].
    #[arg(long = "handshake-log", value_name = "on|off")]
    pub handshake_log: Option<crate::serve::HandshakeLog>,
    /// Config file with `https = ADDR`, `http = ADDR`, `tls-forward = L=T`,
    /// `tls-connect = L=HOST:PORT[,...]`, `max-conns-per-ip = N`,
    /// `workers = N`, `handshake-log = on|off`, `store = etcd+http(s)://...`,
    /// `store-ca|store-cert|store-key = FILE`, `store-key-file = FILE` lines.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The global `--store` (set by `run`; the config file's `store =`
    /// applies when it is absent).
    #[arg(skip)]
    pub store: Option<crate::etcd::EtcdUrl>,
    /// The global `--store-ca/--store-cert/--store-key` (set by `run`; the
    /// config file's lines fill the ones absent).
    #[arg(skip)]
    pub store_tls: crate::etcd::StoreTls,
    /// The global `--store-key-file` (set by `run`; the config file's
    /// `store-key-file =` applies when it is absent).
    #[arg(skip)]
    pub store_key_file: Option<PathBuf>,
}

/// `admin` subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Set the web admin password (read as one line from stdin).
    Password,
}

/// `ca` subcommands.
#[derive(Debug, Subcommand)]
pub enum CaCmd {
    /// Create the local CA (key and root certificate, kept in the store).
    Init,
    /// Issue a certificate for a tenant's DNS names, signed by the local CA.
    Issue {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
        /// Also for TLS client authentication (EKU serverAuth and
        /// clientAuth), e.g. as `client-cert` of a `--tls-connect` trunk
        /// that asks for mutual TLS. Without it: serverAuth only.
        #[arg(long)]
        client: bool,
    },
    /// Print the local CA's root certificate (PEM), to load onto phones.
    Show,
}

/// `csr-keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum CsrKeysCmd {
    /// The CSR keys no certificate uses yet: names, created, key type.
    List,
    /// Delete a pending CSR key (its certificate can then not be imported
    /// without a key).
    Delete {
        /// Key ID or a unique prefix of at least 8 hex digits.
        #[arg(value_parser = parse_id)]
        key_id: String,
    },
}

/// `dns` subcommands.
#[derive(Debug, Subcommand)]
pub enum DnsCmd {
    /// Add a DNS provider covering a zone.
    Add {
        /// Provider name (unique).
        name: String,
        /// How to change the zone.
        #[arg(long, value_enum)]
        provider: ProviderArg,
        /// The zone the provider may change (e.g. example.com).
        #[arg(long)]
        zone: String,
        /// rfc2136: the primary server, HOST:PORT.
        #[arg(long, required_if_eq("provider", "rfc2136"))]
        server: Option<String>,
        /// rfc2136: TSIG key name.
        #[arg(long, required_if_eq("provider", "rfc2136"))]
        tsig_name: Option<String>,
        /// rfc2136: TSIG algorithm (hmac-sha256 or hmac-sha512).
        #[arg(long, value_parser = word_string::<TsigAlgorithm>, required_if_eq("provider", "rfc2136"))]
        tsig_algorithm: Option<String>,
        /// rfc2136: TSIG secret, Base64 ('-' reads one line from stdin).
        #[arg(long, required_if_eq("provider", "rfc2136"))]
        tsig_secret: Option<String>,
        /// cloudflare, digitalocean: API token ('-' reads one line from stdin).
        #[arg(long, required_if_eq_any([("provider", "cloudflare"), ("provider", "digitalocean")]))]
        token: Option<String>,
        /// cloudflare, digitalocean: API base URL (default
        /// https://api.cloudflare.com/client/v4, https://api.digitalocean.com/v2).
        #[arg(long)]
        api_base: Option<String>,
    },
    /// List DNS providers (secrets masked).
    List,
    /// Remove a DNS provider.
    Remove {
        /// Provider name.
        name: String,
    },
    /// Show the DNS-01 propagation check settings.
    Propagation,
    /// DNS-01 propagation check settings.
    Set {
        /// Time to wait for the TXT record on the zone's servers (2m, 90s
        /// or seconds).
        #[arg(long, value_parser = parse_interval)]
        propagation_timeout: Option<u64>,
        /// Time between two checks (5s or seconds).
        #[arg(long, value_parser = parse_interval)]
        propagation_interval: Option<u64>,
        /// Also check the zone's name servers (its NS records, port 53).
        #[arg(long)]
        check_ns: Option<bool>,
    },
}

/// `dns add --provider` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderArg {
    /// RFC 2136 dynamic update with TSIG.
    Rfc2136,
    /// Cloudflare API v4 (bearer token).
    Cloudflare,
    /// DigitalOcean API v2 (bearer token).
    Digitalocean,
}

impl ProviderArg {
    /// The provider word of `dns::ProviderSpec`.
    fn word(self) -> &'static str {
        match self {
            ProviderArg::Rfc2136 => "rfc2136",
            ProviderArg::Cloudflare => "cloudflare",
            ProviderArg::Digitalocean => "digitalocean",
        }
    }
}

/// A clap value parser from a word type's one `FromStr` (a refused word is
/// a usage error whose message names the accepted words).
fn word<T: Word + Send + Sync + 'static>(raw: &str) -> Result<T, String> {
    raw.parse::<T>().map_err(|e| e.to_string())
}

/// `word`, kept as the canonical word (for changes that carry the word).
fn word_string<T: Word + Send + Sync + 'static>(raw: &str) -> Result<String, String> {
    word::<T>(raw).map(|v| v.word().to_owned())
}

/// A secret given on the command line, or `-` for one line of stdin.
fn secret_arg(value: Option<String>) -> Result<String, Error> {
    match value.as_deref() {
        Some("-") => {
            use std::io::BufRead;
            let mut line = String::new();
            let limit = u64::try_from(crate::limits::MAX_DNS_SECRET_LEN + 2).unwrap_or(u64::MAX);
            std::io::stdin()
                .lock()
                .take(limit)
                .read_line(&mut line)
                .map_err(|e| Error::ReadFailed("stdin".into(), e.to_string()))?;
            Ok(line.trim().to_owned())
        }
        Some(v) => Ok(v.to_owned()),
        None => Ok(String::new()),
    }
}

/// `stir-shaken` subcommands.
#[derive(Debug, Subcommand)]
pub enum StirCmd {
    /// The STIR/SHAKEN certificate used for a tenant's calls.
    Select {
        /// Tenant name.
        #[arg(long)]
        tenant: String,
    },
    /// Sign a call: print its SIP Identity header (RFC 8224, SHAKEN).
    Sign {
        /// Tenant whose STIR/SHAKEN certificate signs.
        #[arg(long)]
        tenant: String,
        /// Calling number.
        #[arg(long)]
        orig: String,
        /// Called number(s), comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        dest: Vec<String>,
        /// Attestation: A, B or C (RFC 8588).
        #[arg(long)]
        attest: String,
        /// Origination ID (a UUID) [default: a fresh one].
        #[arg(long)]
        origid: Option<String>,
        /// Issued-at time, Unix seconds [default: now].
        #[arg(long)]
        iat: Option<i64>,
    },
    /// Verify an incoming call's Identity header against the STI trust list.
    Verify {
        /// The Identity header value.
        #[arg(long)]
        identity: String,
        /// Calling number.
        #[arg(long)]
        orig: String,
        /// Called number.
        #[arg(long)]
        dest: String,
        /// Verification time, Unix seconds [default: now].
        #[arg(long)]
        now: Option<i64>,
    },
    /// Settings: the x5u base URL and the allowed iat skew (none: show).
    Set {
        /// Base URL of the published chains (x5u = BASE/ID.pem), or `none`
        /// for https://SYSTEM-DNS-NAME/sti.
        #[arg(long)]
        x5u_base: Option<String>,
        /// Allowed distance of iat from now, seconds [default: 60].
        #[arg(long)]
        iat_skew: Option<u64>,
    },
}

/// `--check-interval`: the one duration parser (`clock::parse_duration`).
fn parse_interval(raw: &str) -> Result<u64, String> {
    crate::clock::parse_duration(raw)
        .ok_or_else(|| "expected a time such as 6h, 30m, 1h30m, 45s or seconds".to_owned())
}

fn parse_id(raw: &str) -> Result<String, String> {
    ops::valid_id(raw).ok_or_else(ops::bad_id_message)
}

fn parse_id_or_none(raw: &str) -> Result<String, String> {
    if raw == "none" {
        Ok(raw.to_owned())
    } else {
        parse_id(raw)
    }
}

/// Read an input box: a path or `-` for stdin, at most `MAX_BOX_BYTES` + 1
/// bytes (so the size rule can still say `too-large`).
fn read_box(path: &str) -> Result<Vec<u8>, Error> {
    let limit = u64::try_from(MAX_BOX_BYTES + 1).unwrap_or(u64::MAX);
    let mut buf = Vec::new();
    let result = if path == "-" {
        std::io::stdin().lock().take(limit).read_to_end(&mut buf)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut buf))
    };
    result.map_err(|e| Error::ReadFailed(path.to_owned(), e.to_string()))?;
    Ok(buf)
}

/// The names a delete or removal changes, one line each with what it gets
/// instead and the warnings of that answer (`--dry-run`).
fn changes_text(changes: &[crate::served::ServedChange]) -> String {
    let mut out = String::new();
    for c in changes {
        let instead = match (&c.instead.cert_name, &c.instead.id) {
            (Some(n), Some(id)) => format!("{n} ({})", id.get(..16).unwrap_or_default()),
            _ => "nothing (the handshake fails)".into(),
        };
        out += &format!("  {} -> {instead} [{}]\n", c.now.asked, c.instead.matched);
        for w in &c.instead.warnings {
            out += &format!("    warning [{}]: {}\n", w.code, w.message);
        }
    }
    out
}

/// A list joined with ", ", or "none".
fn or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Turn parsed arguments into a `Command` (reading input files).
pub fn to_command(cmd: Cmd) -> Result<Command, Error> {
    Ok(match cmd {
        Cmd::Serve(_) => {
            return Err(Error::BadName(
                "serve".into(),
                "serve is not a store command".into(),
            ))
        }
        Cmd::Tenant {
            command: TenantCmd::Add { name, dns, ip },
        } => Command::TenantAdd { name, dns, ip },
        Cmd::Tenant {
            command: TenantCmd::List,
        } => Command::TenantList,
        Cmd::Tenant {
            command: TenantCmd::Remove { name, dry_run },
        } => match dry_run {
            true => Command::TenantRemovePreview { name },
            false => Command::TenantRemove { name },
        },
        Cmd::Tenant {
            command:
                TenantCmd::Set {
                    name,
                    dns,
                    ip,
                    acme_challenge,
                    acme_key_type,
                    acme_profile,
                },
        } => Command::TenantSet {
            name,
            dns: ops::replacement_list(dns),
            ip: ops::replacement_list(ip),
            acme_challenge: acme_challenge.as_deref().map(ops::parse_word).transpose()?,
            acme_key_type: acme_key_type.as_deref().map(ops::parse_word).transpose()?,
            acme_profile,
        },
        Cmd::System {
            command:
                SystemCmd::Set {
                    dns,
                    admin_email,
                    default_cert,
                    aia_fetch,
                },
        } => Command::SystemSet {
            dns,
            admin_email,
            default_cert,
            aia_fetch,
        },
        Cmd::System {
            command: SystemCmd::Show,
        } => Command::SystemShow,
        Cmd::Import {
            cert,
            key,
            kind,
            replace,
        } => Command::Import {
            cert: read_box(&cert)?,
            key: key.as_deref().map(read_box).transpose()?,
            kind,
            replace,
        },
        Cmd::PhoneRoots { command } => match command {
            None | Some(TrustCmd::List) => Command::PhoneRoots,
            Some(TrustCmd::Import { cert }) => Command::PhoneRootsImport {
                cert: read_box(&cert)?,
            },
            Some(TrustCmd::Show { id }) => Command::PhoneRootsShow { id },
            Some(TrustCmd::Delete { id }) => Command::PhoneRootsDelete { id },
        },
        Cmd::ClientCas { command } => match command {
            None | Some(TrustCmd::List) => Command::ClientCas,
            Some(TrustCmd::Import { cert }) => Command::ClientCasImport {
                cert: read_box(&cert)?,
            },
            Some(TrustCmd::Show { id }) => Command::ClientCasShow { id },
            Some(TrustCmd::Delete { id }) => Command::ClientCasDelete { id },
        },
        Cmd::Certs => Command::Certs,
        Cmd::Served => Command::Served,
        Cmd::Handshakes { listener } => Command::Handshakes { listener },
        Cmd::Cert {
            command: CertCmd::Show { id },
        } => Command::CertShow { id },
        Cmd::Cert {
            command: CertCmd::Delete { id, dry_run },
        } => match dry_run {
            true => Command::CertDeletePreview { id },
            false => Command::CertDelete { id },
        },
        Cmd::Cert {
            command: CertCmd::Check { id },
        } => Command::CertCheck { id },
        Cmd::Cert {
            command: CertCmd::Reissue { id },
        } => Command::CertReissue { id },
        Cmd::Acme {
            command:
                AcmeCmd::Set {
                    directory,
                    email,
                    enabled,
                    challenge,
                    eab_kid,
                    eab_hmac,
                    check_interval,
                    profile,
                },
        } => Command::AcmeSet(crate::acme::AcmeChange {
            directory,
            email,
            enabled,
            challenge,
            eab_kid,
            eab_hmac,
            check_interval,
            profile,
        }),
        Cmd::Acme {
            command: AcmeCmd::Show,
        } => Command::AcmeShow,
        Cmd::Acme {
            command: AcmeCmd::Retry { key },
        } => Command::AcmeRetry { key },
        Cmd::Acme {
            command: AcmeCmd::Status,
        } => Command::AcmeStatus,
        Cmd::Roots { command: None } => Command::Roots,
        Cmd::Roots {
            command: Some(RootsCmd::Show { id }),
        } => Command::RootsShow { id },
        Cmd::Roots {
            command: Some(RootsCmd::Delete { ids }),
        } => Command::RootsDelete { ids },
        Cmd::Roots {
            command: Some(RootsCmd::Reset),
        } => Command::RootsReset,
        Cmd::Resolve { sni, local_address } => Command::Resolve { sni, local_address },
        Cmd::StirShaken { command } => match command {
            StirCmd::Select { tenant } => Command::StirShakenSelect { tenant },
            StirCmd::Sign {
                tenant,
                orig,
                dest,
                attest,
                origid,
                iat,
            } => Command::StirShakenSign(crate::stir::SignRequest {
                tenant,
                orig,
                dest,
                attest,
                origid,
                iat,
            }),
            StirCmd::Verify {
                identity,
                orig,
                dest,
                now,
            } => Command::StirShakenVerify(crate::stir::VerifyRequest {
                identity,
                orig,
                dest,
                now,
            }),
            StirCmd::Set { x5u_base, iat_skew } => {
                Command::StirShakenSet(crate::stir::StirChange { x5u_base, iat_skew })
            }
        },
        Cmd::StiRoots { command } => match command {
            None | Some(TrustCmd::List) => Command::StiRoots,
            Some(TrustCmd::Import { cert }) => Command::StiRootsImport {
                cert: read_box(&cert)?,
            },
            Some(TrustCmd::Show { id }) => Command::StiRootsShow { id },
            Some(TrustCmd::Delete { id }) => Command::StiRootsDelete { id },
        },
        Cmd::Dns { command } => dns_command(command)?,
        Cmd::Alert { command } => alert_command(command)?,
        Cmd::Alerts => Command::Alerts,
        Cmd::Csr {
            names,
            key_type,
            organization,
            organizational_unit,
            locality,
            state,
            country,
        } => Command::Csr {
            names,
            key_type,
            subject: crate::localca::CsrSubject {
                organization,
                organizational_unit,
                locality,
                state,
                country,
            },
        },
        Cmd::CsrKeys {
            command: CsrKeysCmd::List,
        } => Command::CsrKeys,
        Cmd::CsrKeys {
            command: CsrKeysCmd::Delete { key_id },
        } => Command::CsrKeyDelete { key_id },
        Cmd::Ca {
            command: CaCmd::Init,
        } => Command::CaInit,
        Cmd::Ca {
            command: CaCmd::Show,
        } => Command::CaShow,
        Cmd::Ca {
            command: CaCmd::Issue { tenant, client },
        } => Command::CaIssue { tenant, client },
        Cmd::Admin {
            command: AdminCmd::Password,
        } => Command::AdminPassword {
            password: read_password()?,
        },
        Cmd::Cluster {
            command: ClusterCmd::Status,
        } => Command::ClusterStatus,
        Cmd::Backup { out, sealed } => Command::Backup {
            out: absolute_text(&out, "--out")?,
            sealed,
        },
        Cmd::Restore { input, replace } => Command::Restore {
            input: absolute_text(&input, "--in")?,
            replace,
        },
        Cmd::Store {
            command: StoreCmd::Rekey,
        } => Command::StoreRekey,
        Cmd::Store {
            command: StoreCmd::Keygen { .. },
        } => {
            return Err(Error::BadSetting(
                "`store keygen` runs in the CLI and opens no store".into(),
            ))
        }
        Cmd::Store {
            command:
                StoreCmd::Copy {
                    to,
                    replace,
                    to_ca,
                    to_cert,
                    to_key,
                },
        } => Command::StoreCopy {
            to: match to.starts_with("etcd+") {
                true => to,
                false => absolute_text(std::path::Path::new(&to), "--to")?,
            },
            replace,
            tls: crate::etcd::StoreTls {
                ca: to_ca,
                cert: to_cert,
                key: to_key,
            },
        },
    })
}

fn alert_command(command: AlertCmd) -> Result<Command, Error> {
    Ok(match command {
        AlertCmd::Set {
            smtp_server,
            smtp_tls,
            smtp_user,
            smtp_password,
            from,
            webhook,
            webhook_secret,
            failures,
        } => Command::AlertSet(crate::alert::AlertChange {
            smtp_server,
            smtp_tls,
            smtp_user,
            smtp_password: smtp_password.map(|p| secret_arg(Some(p))).transpose()?,
            from,
            webhook,
            webhook_secret: webhook_secret.map(|p| secret_arg(Some(p))).transpose()?,
            failures,
        }),
        AlertCmd::Show => Command::AlertShow,
        AlertCmd::Test => Command::AlertTest,
    })
}

fn dns_command(command: DnsCmd) -> Result<Command, Error> {
    Ok(match command {
        DnsCmd::Add {
            name,
            provider,
            zone,
            server,
            tsig_name,
            tsig_algorithm,
            tsig_secret,
            token,
            api_base,
        } => {
            let secret = |v: Option<String>| v.map(|v| secret_arg(Some(v))).transpose();
            let spec = crate::dns::ProviderSpec {
                name,
                provider: provider.word().to_owned(),
                zone,
                server,
                tsig_name,
                tsig_algorithm,
                tsig_secret: secret(tsig_secret)?,
                token: secret(token)?,
                api_base,
            };
            let config = spec.config()?;
            let crate::dns::ProviderSpec { name, zone, .. } = spec;
            Command::DnsAdd { name, zone, config }
        }
        DnsCmd::List => Command::DnsList,
        DnsCmd::Remove { name } => Command::DnsRemove { name },
        DnsCmd::Propagation => Command::DnsPropagation,
        DnsCmd::Set {
            propagation_timeout,
            propagation_interval,
            check_ns,
        } => Command::DnsSet {
            propagation_timeout,
            propagation_interval,
            check_ns,
        },
    })
}

/// One line from stdin (a prompt on stderr when it is a terminal).
fn read_password() -> Result<String, Error> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("New admin password: ");
    }
    let mut line = String::new();
    let limit = u64::try_from(crate::limits::MAX_PASSWORD_LEN * 4 + 2).unwrap_or(u64::MAX);
    stdin
        .lock()
        .take(limit)
        .read_line(&mut line)
        .map_err(|e| Error::ReadFailed("stdin".into(), e.to_string()))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// An optional value, `-` when absent.
fn or_dash(v: Option<&str>) -> &str {
    v.unwrap_or("-")
}

/// The text of an import (or `ca issue`).
fn render_imported(v: &crate::certs::Imported) -> String {
    let mut out = format!(
        "imported {} certificate {}{}\n  names: {}\n  expires: {}\n  usage: {}\n",
        v.kind,
        v.id,
        v.tenant
            .as_deref()
            .map(|t| format!(" for tenant {t}"))
            .unwrap_or_default(),
        v.names.join(", "),
        v.not_after,
        v.eku.join(", "),
    );
    if let Some(ids) = v.ids.as_ref().filter(|ids| ids.len() > 1) {
        out += &format!("  {} roots added\n", ids.len());
    }
    for w in &v.warnings {
        out += &format!("warning [{}]: {}\n", w.code, w.message);
    }
    out
}

/// A list's text, or `empty` when it has no line.
fn lines_or(out: String, empty: &str) -> String {
    if out.is_empty() {
        empty.to_owned()
    } else {
        out
    }
}

/// Human-readable text for a successful command's reply.
pub fn render(command: &Command, reply: &Reply) -> String {
    match reply {
        Reply::Done(_) => match command {
            Command::TenantAdd { name, dns, ip } => {
                let names: Vec<&str> = dns.iter().chain(ip).map(String::as_str).collect();
                format!("tenant {name} added ({})\n", names.join(", "))
            }
            _ => "ok\n".into(),
        },
        Reply::Tenants(tenants) => {
            let mut out = String::new();
            for t in tenants {
                let names: Vec<&str> = t.dns.iter().chain(&t.ip).map(String::as_str).collect();
                out += &format!("{}\t{}", t.name, names.join(", "));
                for (label, word) in [
                    ("challenge", t.acme_challenge.word()),
                    ("key", t.acme_key_type.word()),
                ] {
                    if word != "default" {
                        out += &format!("\tacme {label} {word}");
                    }
                }
                out += "\n";
            }
            lines_or(out, "no tenants\n")
        }
        Reply::System(v) => {
            let mut out = format!(
                "dns:           {}\nadmin e-mail:  {}\ndefault cert:  {}\nroot CA list:  {} roots stored (last reset to {})\n",
                or_dash(v.dns.as_deref()),
                or_dash(v.admin_email.as_deref()),
                or_dash(v.default_cert.as_deref()),
                v.roots_stored,
                or_dash(v.roots_version.as_deref()),
            );
            out += &match &v.seal_key_id {
                Some(id) if v.keys_sealed => format!("keys sealed:   yes, with key {id}\n"),
                _ => "keys sealed:   no (no --store-key-file)\n".to_owned(),
            };
            if v.roots_update_available {
                out += &roots_update_note(&v.bundled_roots_version);
            }
            out
        }
        Reply::Check(v) => {
            let mut out = match &v.error {
                None => format!("certificate {}: clients accept the chain\n", v.id),
                Some(e) => format!(
                    "certificate {}: clients refuse the chain [{}]: {}\n",
                    v.id, e.code, e.message
                ),
            };
            for w in &v.warnings {
                out += &format!("warning [{}]: {}\n", w.code, w.message);
            }
            out
        }
        Reply::Csr(v) => v.csr.clone(),
        Reply::PendingCsrs(list) => lines_or(
            list.iter()
                .map(|p| {
                    format!(
                        "{}  {}  {}  {}\n",
                        p.key_id.get(..16).unwrap_or(&p.key_id),
                        p.created,
                        p.key_type.as_str(),
                        p.names.join(", ")
                    )
                })
                .collect(),
            "no CSR keys waiting for a certificate\n",
        ),
        Reply::PendingCsrDeleted(p) => format!(
            "CSR key {} ({}) deleted\n",
            p.key_id.get(..16).unwrap_or(&p.key_id),
            p.names.join(", ")
        ),
        Reply::Ca(v) => v.pem.clone(),
        Reply::Imported(v) => render_imported(v),
        Reply::Certs(certs) => {
            let mut out = String::new();
            for c in certs {
                out += &format!(
                    "{}  {:<11} {:<8} {}  expires {}{}  [{}]\n",
                    c.id.get(..16).unwrap_or_default(),
                    c.kind,
                    c.key_type,
                    c.names.join(", "),
                    c.not_after,
                    c.tenant
                        .as_deref()
                        .map(|t| format!("  tenant {t}"))
                        .unwrap_or_default(),
                    c.source.as_str(),
                );
            }
            lines_or(out, "no certificates\n")
        }
        Reply::Handshakes(listeners) => {
            let mut out = String::new();
            for l in listeners {
                if !l.enabled {
                    out += &format!("{}: off (serve --handshake-log off)\n", l.listener);
                    continue;
                }
                let counts: Vec<String> = l
                    .counters
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(rule, n)| format!("{rule} {n}"))
                    .collect();
                out += &format!("{}: {}\n", l.listener, counts.join(", "));
                for h in &l.recent {
                    let sni = match (&h.sni, h.sni_kind) {
                        (Some(s), crate::handshakes::SniKind::IpLiteral) => format!("ip-literal {s}"),
                        (Some(s), _) => s.clone(),
                        (None, _) => "no SNI".into(),
                    };
                    let what = match (&h.failure, &h.cert) {
                        (Some(f), _) => format!("failed: {f}"),
                        (None, Some(c)) => format!(
                            "{} [{}] {}{}",
                            c.get(..16).unwrap_or(c),
                            h.rule,
                            h.version.as_deref().unwrap_or(""),
                            h.alpn.as_deref().map(|a| format!(" alpn {a}")).unwrap_or_default()
                        ),
                        (None, None) => format!("[{}]", h.rule),
                    };
                    out += &format!(
                        "  {} {} -> {} {sni}: {what}\n",
                        h.time,
                        h.peer.as_deref().unwrap_or("?"),
                        h.local.as_deref().unwrap_or("?"),
                    );
                }
            }
            lines_or(out, "no TLS listeners\n")
        }
        Reply::DeletePreview(p) => {
            let mut out = format!(
                "deleting {} ({}{}, expires {}) changes:\n",
                p.cert.id.get(..16).unwrap_or_default(),
                p.cert.names.join(", "),
                p.cert
                    .tenant
                    .as_deref()
                    .map(|t| format!(", tenant {t}"))
                    .unwrap_or_default(),
                p.cert.not_after
            );
            if p.changes.is_empty() {
                out += "  nothing: no name is served this certificate\n";
            }
            out + &changes_text(&p.changes)
        }
        Reply::TenantRemovePreview(p) => {
            let t = &p.tenant;
            let mut out = format!(
                "removing tenant {} (DNS names: {}; addresses: {})\n",
                t.name,
                or_none(&t.dns),
                or_none(&t.ip)
            );
            for c in &p.certs {
                out += &format!(
                    "  its {} certificate {} ({}, expires {})\n",
                    c.kind,
                    c.id.get(..16).unwrap_or_default(),
                    c.names.join(", "),
                    c.not_after
                );
            }
            out += "changes:\n";
            if p.changes.is_empty() {
                out += "  nothing for any client\n";
            }
            out + &changes_text(&p.changes)
        }
        Reply::Served(v) => {
            let mut out = String::new();
            for r in &v.names {
                let cert = match (&r.cert_name, &r.id, &r.not_after) {
                    (Some(n), Some(id), Some(end)) => {
                        format!("{n} ({}, expires {end})", id.get(..16).unwrap_or_default())
                    }
                    _ => "nothing".into(),
                };
                out += &format!(
                    "{:<32} -> {cert}  [{}]{}\n",
                    r.asked,
                    r.matched,
                    r.owner
                        .as_deref()
                        .map(|o| format!("  {o}"))
                        .unwrap_or_default()
                );
                for w in &r.warnings {
                    out += &format!("    warning [{}]: {}\n", w.code, w.message);
                }
            }
            for s in &v.stir_shaken {
                out += &format!(
                    "stir-shaken {:<20} -> {}  [{}]\n",
                    s.tenant,
                    s.id.as_deref()
                        .and_then(|i| i.get(..16))
                        .unwrap_or("nothing"),
                    s.matched
                );
            }
            for id in &v.not_served {
                out += &format!("not served: {}\n", id.get(..16).unwrap_or_default());
            }
            out
        }
        Reply::Pem(v) => v.pem.clone(),
        Reply::Roots(roots) => {
            let mut out = String::new();
            for r in roots {
                out += &format!(
                    "{}  {}  expires {}\n",
                    r.id.get(..16).unwrap_or_default(),
                    r.subject,
                    r.not_after
                );
            }
            out
        }
        Reply::Resolved(v) => match &v.id {
            Some(id) => format!(
                "{id} ({}{})\n",
                v.matched,
                v.tenant
                    .as_deref()
                    .map(|t| format!(", tenant {t}"))
                    .unwrap_or_default()
            ),
            None => "no certificate to serve\n".into(),
        },
        Reply::Stir(v) => match &v.id {
            Some(id) => format!("{id} ({})\n", v.matched),
            None => "no STIR/SHAKEN certificate\n".into(),
        },
        Reply::Signed(v) => format!("{}\n", v.identity),
        Reply::Verdict(v) => match (&v.reason, &v.error) {
            (Some(r), Some(e)) => format!(
                "{}: {} {} [{}]: {}\n",
                v.verstat, r.code, r.text, e.code, e.message
            ),
            _ => format!(
                "{} (attest {}, origid {})\n",
                v.verstat,
                or_dash(v.attest.as_deref()),
                or_dash(v.origid.as_deref())
            ),
        },
        Reply::StirSettings(v) => format!(
            "x5u base:  {}{}\niat skew:  {} s\n",
            or_dash(v.x5u_base_effective.as_deref()),
            if v.x5u_base.is_none() { " (default)" } else { "" },
            v.iat_skew
        ),
        Reply::Acme(v) => format!(
            "enabled:        {}\ndirectory:      {}\ncontact:        {}\nchallenge:      {}\neab:            {}\ncheck interval: {}\naccount:        {} {}\n",
            v.enabled,
            v.directory,
            or_dash(v.contact.as_deref()),
            v.challenge.as_str(),
            or_dash(v.eab_kid.as_deref()),
            crate::clock::duration_text(v.check_interval),
            v.account.state,
            v.account.url.as_deref().unwrap_or_default(),
        ),
        Reply::AcmeStatus(rows) => {
            let mut out = String::new();
            for r in rows {
                out += &format!(
                    "{:<8} {}  next {}{}\n",
                    r.state,
                    r.names.join(", "),
                    or_dash(r.next_attempt.as_deref()),
                    r.last_error
                        .as_ref()
                        .map(|e| format!("  error [{}]: {}", e.code, e.message))
                        .unwrap_or_default(),
                );
            }
            lines_or(
                out,
                "no names for ACME (set a system DNS name or add tenants)\n",
            )
        }
        Reply::Reissued(v) => format!(
            "renewal of {} requested (runs at the daemon's next check)\n",
            v.names.join(", ")
        ),
        Reply::DnsList(providers) => {
            use crate::model::ProviderConfig;
            let mut out = String::new();
            for p in providers {
                let (provider, how) = match &p.access {
                    ProviderConfig::Rfc2136 {
                        server,
                        tsig_name,
                        tsig_algorithm,
                        tsig_secret,
                    } => (
                        "rfc2136",
                        format!(
                            "server {server}  key {tsig_name} ({})  secret {tsig_secret}",
                            tsig_algorithm.as_str()
                        ),
                    ),
                    ProviderConfig::Cloudflare { token, .. } => ("cloudflare", format!("token {token}")),
                    ProviderConfig::Digitalocean { token, .. } => {
                        ("digitalocean", format!("token {token}"))
                    }
                };
                out += &format!("{}\t{provider}\tzone {}\t{how}\n", p.name, p.zone);
            }
            lines_or(out, "no DNS providers\n")
        }
        Reply::Propagation(v) => format!(
            "propagation timeout {} s, interval {} s, check NS servers: {}\n",
            v.propagation_timeout, v.propagation_interval, v.check_ns
        ),
        Reply::Tenant(t) => format!(
            "tenant {}: DNS names {}; addresses {}; acme challenge {}, key type {}\n",
            t.name,
            or_none(&t.dns),
            or_none(&t.ip),
            t.acme_challenge.word(),
            t.acme_key_type.word()
        ),
        Reply::AlertSettings(v) => format!(
            "smtp server:    {} ({})\nsmtp user:      {}\nsmtp password:  {}\nfrom:           {}\nto:             {}\nwebhook:        {}\nwebhook secret: {}\nfailures:       {}\n",
            or_dash(v.smtp_server.as_deref()),
            v.smtp_tls.as_str(),
            or_dash(v.smtp_user.as_deref()),
            or_dash(v.smtp_password.as_deref()),
            or_dash(v.from.as_deref()),
            or_dash(v.to.as_deref()),
            or_dash(v.webhook.as_deref()),
            or_dash(v.webhook_secret.as_deref()),
            v.failures
        ),
        Reply::Alerts(alerts) => {
            let state = |c: &Option<crate::alert::ChannelView>| match c {
                Some(crate::alert::ChannelView { sent: Some(t), .. }) => format!("sent {t}"),
                Some(crate::alert::ChannelView {
                    last_error: Some(e),
                    ..
                }) => format!("retrying ({e})"),
                _ => "-".into(),
            };
            let mut out = String::new();
            for a in alerts {
                out += &format!(
                    "{}  {}\n  e-mail: {}  webhook: {}\n",
                    a.alert.code,
                    a.alert.subject,
                    state(&a.email),
                    state(&a.webhook)
                );
            }
            lines_or(out, "no open alerts\n")
        }
        Reply::Cluster(c) => render_cluster(c),
        Reply::Rekeyed(r) => format!(
            "sealed with key {}: {} values (private keys and secret settings)\n",
            r.key_id, r.resealed
        ),
        Reply::Transfer(t) => {
            let counts: Vec<String> = t.entries.iter().map(|(tree, n)| format!("{tree} {n}")).collect();
            let head = match command {
                Command::Backup { .. } => format!(
                    "backed up to {} ({} bytes, mode 0600{})",
                    t.location,
                    t.bytes,
                    t.sealed
                        .as_ref()
                        .map_or(String::new(), |id| format!(", keys sealed with store key {id}"))
                ),
                Command::Restore { .. } => format!("restored {} (made {})", t.location, t.created),
                _ => format!("copied to {}", t.location),
            };
            let replaced = match t.replaced {
                true => "  what the store held before was replaced\n",
                false => "",
            };
            format!("{head}\n  entries: {}\n{replaced}", counts.join(", "))
        }
        Reply::AlertTest(r) => {
            let mut out = String::new();
            for (channel, o) in [("email", &r.email), ("webhook", &r.webhook)] {
                match o {
                    Some(o) if o.ok => out += &format!("{channel}: sent\n"),
                    Some(o) => {
                        out += &format!(
                            "{channel}: failed [{}] {}\n",
                            or_dash(o.code.as_deref()),
                            or_dash(o.message.as_deref())
                        )
                    }
                    None => {}
                }
            }
            out
        }
    }
}

/// The note that a newer Root CA list is bundled.
fn roots_update_note(bundled: &str) -> String {
    format!(
        "note: this release bundles a newer Root CA list ({bundled}); `pbx-certd roots reset` would update it\n"
    )
}

/// Where a command ran: locally on the store, or in the running daemon.
enum Ran {
    Local(Store),
    Daemon,
}

/// Run a command locally, or through the daemon's control socket when the
/// daemon holds the store. An etcd store is never held: a daemon running
/// on the data dir is asked first (so its effects and its memory, e.g.
/// `handshakes`, are as with sled), else the command runs here.
fn execute(
    data_dir: &std::path::Path,
    etcd: Option<&crate::etcd::EtcdUrl>,
    tls: &crate::etcd::StoreTls,
    key_file: Option<&std::path::Path>,
    command: &Command,
) -> Result<(Reply, Ran), Error> {
    if etcd.is_some() {
        match crate::control::request(data_dir, command) {
            Ok(Ok(value)) => return Ok((value, Ran::Daemon)),
            Ok(Err(error)) => {
                return Err(Error::Remote(crate::control::RemoteError::from_json(
                    &error,
                )))
            }
            Err(crate::control::ClientError::NoDaemon) => {}
            Err(e) => return Err(e.into()),
        }
    }
    match crate::ops::open_location(data_dir, etcd, tls, key_file) {
        Ok(store) => {
            let value = match command {
                // Sent from here when no daemon runs (it needs the network).
                Command::AlertTest => Reply::AlertTest(smol::block_on(crate::notify::test(
                    &crate::notify::channels(&store)?,
                ))?),
                _ => ops::execute(&store, command)?,
            };
            Ok((value, Ran::Local(store)))
        }
        Err(crate::store::StoreError::Locked(dir)) => {
            match crate::control::request(data_dir, command) {
                Ok(Ok(value)) => Ok((value, Ran::Daemon)),
                Ok(Err(error)) => Err(Error::Remote(crate::control::RemoteError::from_json(
                    &error,
                ))),
                Err(crate::control::ClientError::NoDaemon) => {
                    Err(Error::Store(crate::store::StoreError::Locked(dir)))
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Run the CLI for already-parsed arguments; returns the exit code.
pub fn run(cli: Cli) -> i32 {
    let json = cli.json;
    let tls = crate::etcd::StoreTls {
        ca: cli.store_ca,
        cert: cli.store_cert,
        key: cli.store_key,
    };
    if let Cmd::Serve(mut args) = cli.command {
        args.store = cli.store;
        args.store_tls = tls;
        args.store_key_file = cli.store_key_file;
        return run_serve(cli.data_dir, args, json);
    }
    if let Cmd::Store {
        command: StoreCmd::Keygen { out },
    } = &cli.command
    {
        return keygen(out, json);
    }
    let key_file = cli.store_key_file.as_deref();
    let result = to_command(cli.command).and_then(|command| {
        if let Command::StoreCopy { to, .. } = &command {
            refuse_copy_to_itself(to, &cli.data_dir, cli.store.as_ref())?;
        }
        let (value, ran) = execute(&cli.data_dir, cli.store.as_ref(), &tls, key_file, &command)?;
        if let (Reply::Rekeyed(r), Ran::Daemon) = (&value, &ran) {
            rekeyed_by_another_key(r, key_file);
        }
        // No daemon answered: this data dir's node, as far as it has one.
        let value = match (value, &ran) {
            (Reply::Cluster(view), Ran::Local(_)) => {
                Reply::Cluster(view.answered_by(crate::ops::existing_node_id(&cli.data_dir)))
            }
            (value, _) => value,
        };
        Ok((command, value, ran))
    });
    match result {
        Ok((command, value, ran)) => {
            let extra = match (&command, ran) {
                (Command::Roots, Ran::Local(store)) if !json => roots_note(&store),
                (Command::Roots, Ran::Daemon) if !json => {
                    match execute(
                        &cli.data_dir,
                        cli.store.as_ref(),
                        &tls,
                        key_file,
                        &Command::SystemShow,
                    ) {
                        Ok((Reply::System(v), _)) if v.roots_update_available => {
                            roots_update_note(&v.bundled_roots_version)
                        }
                        _ => String::new(),
                    }
                }
                _ => String::new(),
            };
            if json {
                println!("{}", value.to_json());
            } else {
                print!("{}{extra}", render(&command, &value));
            }
            0
        }
        Err(e) => {
            if json {
                println!("{}", e.to_json());
            }
            eprintln!("pbx-certd: error [{}]: {e}", e.code_str());
            1
        }
    }
}

/// A `store rekey` the daemon ran with its own key file: say so on stderr
/// when the CLI was given another sealing key (rotation step 3, restarting
/// the daemon with the new key file, was skipped).
fn rekeyed_by_another_key(r: &crate::seal::Rekeyed, key_file: Option<&std::path::Path>) {
    let Some(path) = key_file else { return };
    let Ok(Some(mine)) = crate::seal::KeyRing::load(Some(path)).map(|k| k.sealing_id()) else {
        return;
    };
    if mine != r.key_id {
        eprintln!(
            "note: the running daemon sealed with its own key file (key {}), not with the first \
             key of {} ({mine}): restart it with that file to seal with it",
            r.key_id,
            path.display()
        );
    }
}

/// `store keygen --out FILE`: no store is opened.
fn keygen(out: &std::path::Path, json: bool) -> i32 {
    match crate::seal::keygen(out) {
        Ok(made) => {
            if json {
                println!("{}", serde_json::to_value(&made).unwrap_or_default());
            } else {
                println!(
                    "key {} written to {} (mode 0600)\n\
                     keep a copy off this machine: without it the sealed store cannot be read",
                    made.key_id, made.file
                );
            }
            0
        }
        Err(e) => {
            let e = Error::Store(e);
            if json {
                println!("{}", e.to_json());
            }
            eprintln!("pbx-certd: error [{}]: {e}", e.code_str());
            1
        }
    }
}

fn roots_note(store: &Store) -> String {
    match crate::roots::update_available(store) {
        Ok(true) => roots_update_note(&crate::roots::bundled_version()),
        _ => String::new(),
    }
}

/// A config-file value for a setting the command line did not give (flags
/// win), parsed by the setting's one parser.
fn unless_flagged<T: std::str::FromStr<Err = String>>(
    slot: &mut Option<T>,
    value: &str,
) -> Result<(), String> {
    if slot.is_none() {
        *slot = Some(value.parse()?);
    }
    Ok(())
}

/// Read `key = value` lines of a serve config file.
fn read_config(path: &std::path::Path, args: &mut ServeArgs) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| format!("{}:{}: expected `key = value`", path.display(), n + 1))?;
        match key {
            "https" => {
                args.https.get_or_insert_with(|| value.to_owned());
            }
            "http" => {
                args.http.get_or_insert_with(|| value.to_owned());
            }
            "max-conns-per-ip" => unless_flagged(&mut args.max_conns_per_ip, value)
                .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?,
            "workers" => unless_flagged(&mut args.workers, value)
                .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?,
            "handshake-log" => unless_flagged(&mut args.handshake_log, value)
                .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?,
            "tls-forward" => args.tls_forward.push(
                value
                    .parse()
                    .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?,
            ),
            "store" => {
                if args.store.is_none() {
                    args.store = Some(
                        value
                            .parse()
                            .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?,
                    );
                }
            }
            "store-ca" => {
                let tls = &mut args.store_tls;
                tls.ca.get_or_insert_with(|| value.into());
            }
            "store-cert" => {
                let tls = &mut args.store_tls;
                tls.cert.get_or_insert_with(|| value.into());
            }
            "store-key" => {
                let tls = &mut args.store_tls;
                tls.key.get_or_insert_with(|| value.into());
            }
            // Read (and judged) with the flag's file by `seal::KeyRing::load`.
            "store-key-file" => {
                args.store_key_file.get_or_insert_with(|| value.into());
            }
            "tls-connect" => args.tls_connect.push(
                value
                    .parse()
                    .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?,
            ),
            other => {
                return Err(format!(
                    "{}:{}: unknown setting `{other}`",
                    path.display(),
                    n + 1
                ))
            }
        }
    }
    Ok(())
}

fn listen_addr(value: Option<&str>, default: &str) -> Result<Option<std::net::SocketAddr>, String> {
    match value.unwrap_or(default) {
        "none" => Ok(None),
        addr => addr
            .parse()
            .map(Some)
            .map_err(|e| format!("bad listen address {addr}: {e}")),
    }
}

fn run_serve(data_dir: PathBuf, mut args: ServeArgs, json: bool) -> i32 {
    crate::logger::init();
    let config = (|| {
        if let Some(path) = args.config.clone() {
            read_config(&path, &mut args)?;
        }
        Ok::<_, String>(crate::serve::ServeConfig {
            data_dir,
            store: args.store.clone(),
            store_tls: args.store_tls.clone(),
            store_key_file: args.store_key_file.clone(),
            https: listen_addr(args.https.as_deref(), "0.0.0.0:443")?,
            http: listen_addr(args.http.as_deref(), "0.0.0.0:80")?,
            forwards: args.tls_forward.clone(),
            connects: args.tls_connect.clone(),
            max_conns_per_ip: args.max_conns_per_ip.unwrap_or_default(),
            workers: args.workers.unwrap_or_default(),
            handshake_log: args.handshake_log.unwrap_or_default(),
        })
    })();
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pbx-certd: {e}");
            return 2;
        }
    };
    let shutdown = async {
        use async_signal::{Signal, Signals};
        use smol::stream::StreamExt;
        match Signals::new([Signal::Term, Signal::Int]) {
            Ok(mut signals) => {
                if let Some(Ok(sig)) = signals.next().await {
                    log::info!("received {sig:?}");
                }
            }
            Err(e) => {
                log::error!("cannot watch signals ({e}); stop with SIGKILL");
                smol::future::pending::<()>().await;
            }
        }
    };
    match crate::serve::run(config, shutdown) {
        Ok(()) => 0,
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"error": {"code": e.code(), "message": e.to_string()}})
                );
            }
            eprintln!("pbx-certd: error [{}]: {e}", e.code());
            1
        }
    }
}
