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
use serde_json::Value;

use crate::error::Error;
use crate::limits::MAX_BOX_BYTES;
use crate::ops::{self, Command};
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
        /// What the certificate is.
        #[arg(long, value_enum, default_value_t = KindArg::Auto)]
        kind: KindArg,
    },
    /// List domain, server and STIR/SHAKEN certificates in import order.
    Certs,
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
    /// ACME: settings, account, status.
    Acme {
        #[command(subcommand)]
        command: AcmeCmd,
    },
    /// Which certificate a TLS client with this SNI gets.
    Resolve {
        /// The SNI host name; omitted: a client sending no SNI.
        sni: Option<String>,
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
        /// Key type.
        #[arg(long, value_enum, default_value_t = KeyTypeArg::P256)]
        key_type: KeyTypeArg,
    },
    /// The local CA for closed networks (init, issue, show).
    Ca {
        #[command(subcommand)]
        command: CaCmd,
    },
    /// STIR/SHAKEN certificate choice.
    #[command(name = "stir-shaken")]
    StirShaken {
        #[command(subcommand)]
        command: StirCmd,
    },
}

/// `tenant` subcommands.
#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Add a tenant owning DNS names.
    Add {
        /// Tenant name.
        name: String,
        /// A DNS name of the tenant (repeatable).
        #[arg(long = "dns", required = true)]
        dns: Vec<String>,
    },
    /// List tenants.
    List,
    /// Remove a tenant (refused while it owns domain certificates).
    Remove {
        /// Tenant name.
        name: String,
    },
    /// Change a tenant's ACME options ('default' follows `acme set`).
    Set {
        /// Tenant name.
        name: String,
        /// auto, http-01, dns-01, tls-alpn-01 or default.
        #[arg(long)]
        acme_challenge: Option<String>,
        /// p256, rsa2048 or default (P-256).
        #[arg(long)]
        acme_key_type: Option<String>,
    },
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
        #[arg(long, value_parser = ["auto", "http-01", "dns-01", "tls-alpn-01"])]
        challenge: Option<String>,
        /// External Account Binding key ID (`none` removes the binding).
        #[arg(long, requires = "eab_hmac")]
        eab_kid: Option<String>,
        /// External Account Binding HMAC key (base64url).
        #[arg(long, requires = "eab_kid")]
        eab_hmac: Option<String>,
        /// Seconds between renewal checks (1 to 86400; default 21600).
        #[arg(long)]
        check_interval: Option<u64>,
    },
    /// Settings and account state.
    Show,
    /// Per certificate name set: valid|pending|failed, last error, next attempt.
    Status,
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

/// `serve` options (each also settable in `--config FILE`; flags win).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// HTTPS admin listener address, or `none` [default: 0.0.0.0:443].
    #[arg(long)]
    pub https: Option<String>,
    /// Port-80 listener (ACME HTTP-01, redirect to HTTPS), or `none` [default: 0.0.0.0:80].
    #[arg(long)]
    pub http: Option<String>,
    /// Extra TLS listener forwarding to a local TCP service (repeatable).
    #[arg(long = "tls-forward", value_name = "LISTEN=TARGET")]
    pub tls_forward: Vec<crate::serve::Forward>,
    /// Established connections from one client IP (IPv6: one /64) per listener [default: 128].
    #[arg(long = "max-conns-per-ip", value_name = "N")]
    pub max_conns_per_ip: Option<crate::serve::MaxConnsPerIp>,
    /// Threads serving the TLS listeners [default: the CPUs this process may run on].
    #[arg(long, value_name = "N")]
    pub workers: Option<crate::serve::Workers>,
    /// Config file with `https = ADDR`, `http = ADDR`, `tls-forward = L=T`,
    /// `max-conns-per-ip = N` lines.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `admin` subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Set the web admin password (read as one line from stdin).
    Password,
}

/// `--key-type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyTypeArg {
    /// ECDSA P-256.
    P256,
    /// RSA 2048 (not available in this build: unsupported-key-type).
    Rsa2048,
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
    },
    /// Print the local CA's root certificate (PEM), to load onto phones.
    Show,
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
        /// rfc2136: TSIG algorithm.
        #[arg(long, value_enum, required_if_eq("provider", "rfc2136"))]
        tsig_algorithm: Option<TsigArg>,
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
    /// DNS-01 propagation check settings.
    Set {
        /// Seconds to wait for the TXT record on the zone's servers.
        #[arg(long)]
        propagation_timeout: Option<u64>,
        /// Seconds between two checks.
        #[arg(long)]
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

/// `--tsig-algorithm` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TsigArg {
    /// HMAC-SHA256.
    HmacSha256,
    /// HMAC-SHA512.
    HmacSha512,
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
}

/// `--kind` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Classify automatically.
    Auto,
    /// Root CA list.
    Root,
    /// Serves all tenants.
    Server,
    /// Belongs to one tenant.
    Domain,
    /// STIR/SHAKEN signing certificate.
    StirShaken,
}

impl From<KindArg> for KindRequest {
    fn from(k: KindArg) -> KindRequest {
        match k {
            KindArg::Auto => KindRequest::Auto,
            KindArg::Root => KindRequest::Root,
            KindArg::Server => KindRequest::Server,
            KindArg::Domain => KindRequest::Domain,
            KindArg::StirShaken => KindRequest::StirShaken,
        }
    }
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
            command: TenantCmd::Add { name, dns },
        } => Command::TenantAdd { name, dns },
        Cmd::Tenant {
            command: TenantCmd::List,
        } => Command::TenantList,
        Cmd::Tenant {
            command: TenantCmd::Remove { name },
        } => Command::TenantRemove { name },
        Cmd::Tenant {
            command:
                TenantCmd::Set {
                    name,
                    acme_challenge,
                    acme_key_type,
                },
        } => Command::TenantSet {
            name,
            acme_challenge,
            acme_key_type,
        },
        Cmd::System {
            command:
                SystemCmd::Set {
                    dns,
                    admin_email,
                    default_cert,
                },
        } => Command::SystemSet {
            dns,
            admin_email,
            default_cert,
        },
        Cmd::System {
            command: SystemCmd::Show,
        } => Command::SystemShow,
        Cmd::Import { cert, key, kind } => Command::Import {
            cert: read_box(&cert)?,
            key: key.as_deref().map(read_box).transpose()?,
            kind: kind.into(),
        },
        Cmd::Certs => Command::Certs,
        Cmd::Cert {
            command: CertCmd::Show { id },
        } => Command::CertShow { id },
        Cmd::Cert {
            command: CertCmd::Delete { id },
        } => Command::CertDelete { id },
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
                },
        } => Command::AcmeSet(crate::acme::AcmeChange {
            directory,
            email,
            enabled,
            challenge,
            eab_kid,
            eab_hmac,
            check_interval,
        }),
        Cmd::Acme {
            command: AcmeCmd::Show,
        } => Command::AcmeShow,
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
        Cmd::Resolve { sni } => Command::Resolve { sni },
        Cmd::StirShaken {
            command: StirCmd::Select { tenant },
        } => Command::StirShakenSelect { tenant },
        Cmd::Dns { command } => dns_command(command)?,
        Cmd::Csr { names, key_type } => Command::Csr {
            names,
            key_type: match key_type {
                KeyTypeArg::P256 => crate::model::KeyType::P256,
                KeyTypeArg::Rsa2048 => crate::model::KeyType::Rsa2048,
            },
        },
        Cmd::Ca {
            command: CaCmd::Init,
        } => Command::CaInit,
        Cmd::Ca {
            command: CaCmd::Show,
        } => Command::CaShow,
        Cmd::Ca {
            command: CaCmd::Issue { tenant },
        } => Command::CaIssue { tenant },
        Cmd::Admin {
            command: AdminCmd::Password,
        } => Command::AdminPassword {
            password: read_password()?,
        },
    })
}

fn dns_command(command: DnsCmd) -> Result<Command, Error> {
    use crate::model::{ProviderConfig, TsigAlgorithm};
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
            let config = match provider {
                ProviderArg::Rfc2136 => ProviderConfig::Rfc2136 {
                    server: server.unwrap_or_default(),
                    tsig_name: tsig_name.unwrap_or_default(),
                    tsig_algorithm: match tsig_algorithm {
                        Some(TsigArg::HmacSha512) => TsigAlgorithm::HmacSha512,
                        _ => TsigAlgorithm::HmacSha256,
                    },
                    tsig_secret: secret_arg(tsig_secret)?,
                },
                ProviderArg::Cloudflare => ProviderConfig::Cloudflare {
                    token: secret_arg(token)?,
                    api_base: api_base.unwrap_or_else(crate::model::cloudflare_api_base),
                },
                ProviderArg::Digitalocean => ProviderConfig::Digitalocean {
                    token: secret_arg(token)?,
                    api_base: api_base.unwrap_or_else(crate::model::digitalocean_api_base),
                },
            };
            Command::DnsAdd { name, zone, config }
        }
        DnsCmd::List => Command::DnsList,
        DnsCmd::Remove { name } => Command::DnsRemove { name },
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

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// Human-readable text for a successful command's JSON value.
pub fn render(command: &Command, v: &Value) -> String {
    let rows = || v.as_array().cloned().unwrap_or_default();
    match command {
        Command::TenantAdd { name, dns } => format!("tenant {name} added ({})\n", dns.join(", ")),
        Command::TenantList => {
            let mut out = String::new();
            for t in rows() {
                out += &format!("{}\t{}", s(&t["name"]), list(&t["dns"]));
                for (label, field) in [("challenge", "acme_challenge"), ("key", "acme_key_type")] {
                    if t[field].as_str().is_some_and(|v| v != "default") {
                        out += &format!("\tacme {label} {}", s(&t[field]));
                    }
                }
                out += "\n";
            }
            if out.is_empty() {
                out = "no tenants\n".into();
            }
            out
        }
        Command::SystemShow => {
            let mut out = format!(
                "dns:           {}\nadmin e-mail:  {}\ndefault cert:  {}\nroot CA list:  {}\n",
                s(&v["dns"]),
                s(&v["admin_email"]),
                s(&v["default_cert"]),
                s(&v["roots_version"]),
            );
            if v["roots_update_available"].as_bool() == Some(true) {
                out += &format!(
                    "note: this release bundles a newer Root CA list ({}); `pbx-certd roots reset` would update it\n",
                    s(&v["bundled_roots_version"])
                );
            }
            out
        }
        Command::Csr { .. } => s(&v["csr"]).to_owned(),
        Command::CaInit | Command::CaShow => s(&v["pem"]).to_owned(),
        Command::Import { .. } | Command::CaIssue { .. } => {
            let mut out = format!(
                "imported {} certificate {}{}\n  names: {}\n  expires: {}\n",
                s(&v["kind"]),
                s(&v["id"]),
                v["tenant"]
                    .as_str()
                    .map(|t| format!(" for tenant {t}"))
                    .unwrap_or_default(),
                list(&v["names"]),
                s(&v["not_after"]),
            );
            if let Some(ids) = v["ids"].as_array().filter(|ids| ids.len() > 1) {
                out += &format!("  {} roots added\n", ids.len());
            }
            for w in v["warnings"].as_array().into_iter().flatten() {
                out += &format!("warning [{}]: {}\n", s(&w["code"]), s(&w["message"]));
            }
            out
        }
        Command::Certs => {
            let now = crate::clock::now();
            let mut out = String::new();
            for c in rows() {
                out += &format!(
                    "{}  {:<11} {:<8} {}  expires {}{}  [{}]\n",
                    s(&c["id"]).get(..16).unwrap_or_default(),
                    s(&c["kind"]),
                    s(&c["key_type"]),
                    list(&c["names"]),
                    s(&c["not_after"]),
                    c["tenant"]
                        .as_str()
                        .map(|t| format!("  tenant {t}"))
                        .unwrap_or_default(),
                    s(&c["source"]),
                );
            }
            let _ = now;
            if out.is_empty() {
                out = "no certificates\n".into();
            }
            out
        }
        Command::CertShow { .. } | Command::RootsShow { .. } => s(&v["pem"]).to_owned(),
        Command::Roots => {
            let mut out = String::new();
            for r in rows() {
                out += &format!(
                    "{}  {}  expires {}\n",
                    s(&r["id"]).get(..16).unwrap_or_default(),
                    s(&r["subject"]),
                    s(&r["not_after"])
                );
            }
            out
        }
        Command::Resolve { .. } => match v["id"].as_str() {
            Some(id) => format!(
                "{id} ({}{})\n",
                s(&v["match"]),
                v["tenant"]
                    .as_str()
                    .map(|t| format!(", tenant {t}"))
                    .unwrap_or_default()
            ),
            None => "no certificate to serve\n".into(),
        },
        Command::StirShakenSelect { .. } => match v["id"].as_str() {
            Some(id) => format!("{id} ({})\n", s(&v["match"])),
            None => "no STIR/SHAKEN certificate\n".into(),
        },
        Command::AcmeShow => format!(
            "enabled:        {}\ndirectory:      {}\ncontact:        {}\nchallenge:      {}\neab:            {}\ncheck interval: {} s\naccount:        {} {}\n",
            v["enabled"],
            s(&v["directory"]),
            s(&v["contact"]),
            s(&v["challenge"]),
            s(&v["eab_kid"]),
            v["check_interval"],
            s(&v["account"]["state"]),
            v["account"]["url"].as_str().unwrap_or_default(),
        ),
        Command::AcmeStatus => {
            let mut out = String::new();
            for r in rows() {
                out += &format!(
                    "{:<8} {}  next {}{}\n",
                    s(&r["state"]),
                    list(&r["names"]),
                    s(&r["next_attempt"]),
                    r["last_error"]["code"]
                        .as_str()
                        .map(|c| format!("  error [{c}]: {}", s(&r["last_error"]["message"])))
                        .unwrap_or_default(),
                );
            }
            if out.is_empty() {
                out = "no names for ACME (set a system DNS name or add tenants)\n".into();
            }
            out
        }
        Command::CertReissue { .. } => format!(
            "renewal of {} requested (runs at the daemon's next check)\n",
            list(&v["names"])
        ),
        Command::DnsList => {
            let mut out = String::new();
            for p in rows() {
                let how = match s(&p["provider"]) {
                    "rfc2136" => format!(
                        "server {}  key {} ({})  secret {}",
                        s(&p["server"]),
                        s(&p["tsig_name"]),
                        s(&p["tsig_algorithm"]),
                        s(&p["tsig_secret"])
                    ),
                    _ => format!("token {}", s(&p["token"])),
                };
                out += &format!(
                    "{}\t{}\tzone {}\t{how}\n",
                    s(&p["name"]),
                    s(&p["provider"]),
                    s(&p["zone"])
                );
            }
            if out.is_empty() {
                out = "no DNS providers\n".into();
            }
            out
        }
        Command::DnsSet { .. } => format!(
            "propagation timeout {} s, interval {} s, check NS servers: {}\n",
            v["propagation_timeout"], v["propagation_interval"], v["check_ns"]
        ),
        Command::TenantSet { .. } => format!(
            "tenant {}: acme challenge {}, key type {}\n",
            s(&v["name"]),
            s(&v["acme_challenge"]),
            s(&v["acme_key_type"])
        ),
        Command::TenantRemove { .. }
        | Command::AcmeSet(_)
        | Command::DnsAdd { .. }
        | Command::DnsRemove { .. }
        | Command::AdminPassword { .. }
        | Command::SystemSet { .. }
        | Command::CertDelete { .. }
        | Command::RootsDelete { .. }
        | Command::RootsReset => "ok\n".into(),
    }
}

/// Where a command ran: locally on the store, or in the running daemon.
enum Ran {
    Local(Store),
    Daemon,
}

/// Run a command locally, or through the daemon's control socket when the
/// daemon holds the store.
fn execute(data_dir: &std::path::Path, command: &Command) -> Result<(Value, Ran), Error> {
    match crate::ops::open_store(data_dir) {
        Ok(store) => {
            let value = ops::execute(&store, command)?;
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
    if let Cmd::Serve(args) = cli.command {
        return run_serve(cli.data_dir, args, json);
    }
    let result = to_command(cli.command).and_then(|command| {
        let (value, ran) = execute(&cli.data_dir, &command)?;
        Ok((command, value, ran))
    });
    match result {
        Ok((command, value, ran)) => {
            let extra = match (&command, ran) {
                (Command::Roots, Ran::Local(store)) if !json => roots_note(&store),
                (Command::Roots, Ran::Daemon) if !json => execute(&cli.data_dir, &Command::SystemShow)
                    .ok()
                    .filter(|(v, _)| v["roots_update_available"].as_bool() == Some(true))
                    .map(|(v, _)| {
                        format!(
                            "note: this release bundles a newer Root CA list ({}); `pbx-certd roots reset` would update it\n",
                            s(&v["bundled_roots_version"])
                        )
                    })
                    .unwrap_or_default(),
                _ => String::new(),
            };
            if json {
                println!("{value}");
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

fn roots_note(store: &Store) -> String {
    match crate::roots::update_available(store) {
        Ok(true) => format!(
            "note: this release bundles a newer Root CA list ({}); `pbx-certd roots reset` would update it\n",
            crate::roots::bundled_version()
        ),
        _ => String::new(),
    }
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
            "max-conns-per-ip" => {
                if args.max_conns_per_ip.is_none() {
                    args.max_conns_per_ip = Some(
                        value
                            .parse()
                            .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?,
                    );
                }
            }
            "tls-forward" => args.tls_forward.push(
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
            https: listen_addr(args.https.as_deref(), "0.0.0.0:443")?,
            http: listen_addr(args.http.as_deref(), "0.0.0.0:80")?,
            forwards: args.tls_forward.clone(),
            max_conns_per_ip: args.max_conns_per_ip.unwrap_or_default(),
            workers: args.workers.unwrap_or_default(),
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
