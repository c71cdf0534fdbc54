//! Every fixed limit of pbx-certd, in one place, each with the reason it exists.
//!
//! What must hold: code elsewhere never repeats one of these numbers; hitting a
//! limit produces a named error (never a truncation or a panic).

/// Largest certificate or key box accepted by `import`: a full chain with a
/// Root CA bundle is < 300 KiB, so 1 MiB leaves room without inviting abuse.
pub const MAX_BOX_BYTES: usize = 1024 * 1024;

/// Most PEM blocks read from one box: the whole Mozilla list is ~150 certs.
pub const MAX_PEM_BLOCKS: usize = 512;

/// Longest DNS name, RFC 1035 §2.3.4 (presentation form without trailing dot).
pub const MAX_DNS_NAME_LEN: usize = 253;

/// Longest DNS label, RFC 1035 §2.3.4.
pub const MAX_DNS_LABEL_LEN: usize = 63;

/// Longest tenant name: an identifier for humans and scripts, not a DNS name.
pub const MAX_TENANT_NAME_LEN: usize = 64;

/// Most DNS names one tenant may own: a tenant is one customer, not a hoster.
pub const MAX_DNS_NAMES_PER_TENANT: usize = 100;

/// Smallest RSA modulus accepted (CA/Browser Forum baseline, and ring's floor).
pub const MIN_RSA_BITS: usize = 2048;

/// Days left under which an import warns `expiring-soon` (two weeks to act).
pub const EXPIRING_SOON_DAYS: i64 = 14;

/// Shortest ID prefix accepted on the CLI: 8 hex digits = 32 bits, so
/// accidental collisions among a few thousand IDs are negligible.
pub const MIN_ID_PREFIX_LEN: usize = 8;

/// Length of a full certificate ID (hex SHA-256).
pub const ID_LEN: usize = 64;

/// Most certificates in one stored chain (leaf + intermediates): real chains
/// have 2–4; anything longer is a mistake or an attack on chain building.
pub const MAX_CHAIN_LEN: usize = 8;

/// Shortest admin password: below this, guessing beats the rate limit.
pub const MIN_PASSWORD_LEN: usize = 10;

/// Longest admin password: bounds the work of one login attempt.
pub const MAX_PASSWORD_LEN: usize = 256;

/// PBKDF2-HMAC-SHA256 iterations for the admin password: ~0.1 s on a
/// Cortex-A53, slow enough for a stolen store, fast enough for a login.
pub const PBKDF2_ITERATIONS: u32 = 100_000;

/// Largest control-socket request or reply: an import of two 1 MiB boxes,
/// Base64-encoded in JSON, plus room; also bounds `certs --json` replies.
pub const MAX_CONTROL_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// How long the CLI waits for the daemon's reply (an import with a full
/// snapshot rebuild of thousands of certificates takes well under this).
pub const CONTROL_CLIENT_TIMEOUT_SECS: u64 = 120;

/// Most simultaneous TCP connections over all listeners: bounds memory on a
/// small appliance (each TLS connection costs ~40 KiB of buffers).
pub const MAX_CONNECTIONS: usize = 512;

/// Longest time a TLS handshake may take before the connection is dropped,
/// so half-open or slow clients cannot hold connection slots.
pub const TLS_HANDSHAKE_TIMEOUT_SECS: u64 = 10;

/// How long a `--tls-forward` connection to its local target may take.
pub const FORWARD_CONNECT_TIMEOUT_SECS: u64 = 5;

/// After SIGTERM/SIGINT, how long open connections get to finish.
pub const SHUTDOWN_GRACE_SECS: u64 = 5;

/// Validity of the first-start self-signed certificate (825 days, the most
/// Apple platforms accept); it is regenerated at start once expired.
pub const SELF_SIGNED_DAYS: i64 = 825;
