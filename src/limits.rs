//! Every fixed limit of pbx-certd, in one place, each with the reason it exists.
//!
//! What must hold: code elsewhere never repeats one of these numbers; hitting a
//! limit produces a named error (never a truncation or a panic).

use std::time::Duration;

/// sled's page cache (default; env `PBX_CERTD_CACHE_BYTES` overrides it):
/// the store of 1000 tenants is ~2 MiB, so 4 MiB keeps it all hot while
/// bounding RSS on small boards (sled's own default is 1 GiB).
pub const DEFAULT_CACHE_BYTES: u64 = 4 * 1024 * 1024;

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

/// Most IP addresses one tenant may own (RFC 8738 names): the few addresses
/// its phones are provisioned with, not a subnet.
pub const MAX_IPS_PER_TENANT: usize = 16;

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

/// Largest control-socket request line: an import of two boxes of
/// `MAX_BOX_BYTES` + 1 (the CLI's bounded read) grows to 4/3 in Base64, so
/// 2.67 MiB of JSON; 3 MiB leaves room. Replies: `MAX_CONTROL_REPLY_BYTES`.
pub const MAX_CONTROL_REQUEST_BYTES: usize = 3 * MAX_BOX_BYTES;

/// How long the CLI waits for the daemon's reply (an import with a full
/// snapshot rebuild of thousands of certificates takes well under this).
pub const CONTROL_CLIENT_TIMEOUT_SECS: u64 = 120;

// Connection slots: per listener, see "Connection admission" at the end.

/// How long a `--tls-forward` connection to its local target may take.
pub const FORWARD_CONNECT_TIMEOUT_SECS: u64 = 5;

/// How long a `--tls-connect` connection to its trunk (TCP connect and TLS
/// handshake together) may take: a trunk across the internet answers in
/// well under a second; the SIP server's transaction timer (RFC 3261 timer
/// B, 32 s) should see a failure long before it gives up on its own.
pub const TRUNK_CONNECT_TIMEOUT_SECS: u64 = 10;

/// Established connections of each `--tls-connect` listener: the SIP
/// server opens one or a few connections per trunk; two fds each (the local
/// SIP server and the trunk).
pub const MAX_ESTABLISHED_PER_CONNECT: usize = 64;

/// One `--tls-forward` copy buffer per direction: a full TLS record's
/// plaintext is 16 KiB, but SIP messages are small; 8 KiB keeps two per
/// connection cheap for phones that hold connections for hours.
pub const FORWARD_COPY_BUFFER_BYTES: usize = 8 * 1024;

/// Longest value of one PROXY v2 TLV written (SNI, TLS version, client
/// certificate CN): a DNS name is at most 253 bytes and X.520's
/// ub-common-name 64 characters (256 bytes of UTF-8); a longer value is left
/// out, never cut.
pub const MAX_PROXY_TLV_VALUE_BYTES: usize = 256;

/// How often a forward with `client-auth` rereads its client trust set (the
/// local CA's root or the Root CA list) and rebuilds its verifier when it
/// changed: a deleted root stops admitting its clients within this; one
/// store scan per period is negligible.
pub const CLIENT_TRUST_REFRESH_SECS: u64 = 5;

/// After one side of a forwarded connection closed, how long the other
/// direction may still run before both sockets are closed: long enough for
/// a last reply in flight, short enough that a silent peer cannot hold a
/// half-closed connection (and its slot and two fds) forever.
pub const FORWARD_HALF_CLOSE_SECS: u64 = 10;

/// TCP keepalive on both sockets of a forwarded connection: the first probe
/// after this much silence. SIP-TLS connections idle for minutes between
/// REGISTERs; a probe a minute keeps NAT bindings and finds dead phones.
pub const FORWARD_KEEPALIVE_IDLE_SECS: u64 = 60;

/// Seconds between unanswered keepalive probes.
pub const FORWARD_KEEPALIVE_INTERVAL_SECS: u64 = 15;

/// Unanswered probes before the kernel gives the connection up: a dead peer
/// is found within 60 + 4 x 15 = 120 s of silence.
pub const FORWARD_KEEPALIVE_PROBES: u32 = 4;

/// After SIGTERM/SIGINT, how long open connections get to finish.
pub const SHUTDOWN_GRACE_SECS: u64 = 5;

/// Validity of the first-start self-signed certificate (825 days, the most
/// Apple platforms accept); it is regenerated at start once expired.
pub const SELF_SIGNED_DAYS: i64 = 825;

// --- Web admin and HTTP listeners -------------------------------------------

/// picoserve's per-connection buffer on HTTPS: the request line and headers
/// must fit (browsers send 1–4 KiB, cookies included); bodies are read
/// separately into a buffer of their declared size.
pub const HTTPS_HEAD_BUFFER_BYTES: usize = 16 * 1024;

/// The same on port 80, where only short ACME and redirect requests come.
pub const HTTP_HEAD_BUFFER_BYTES: usize = 8 * 1024;

/// Largest login form body: one password field (`MAX_PASSWORD_LEN` characters,
/// up to 4 bytes each, %-encoded to 3 bytes per byte) and slack.
pub const MAX_LOGIN_BODY_BYTES: usize = 4 * 1024;

/// Largest body of the other admin forms and API writes: the Root CA page
/// posts ~70 bytes per ticked root, so 64 KiB covers ~900 roots.
pub const MAX_FORM_BODY_BYTES: usize = 64 * 1024;

/// Largest body of the import form or `POST /api/import`: two boxes of
/// `MAX_BOX_BYTES` (certificate and key), grown by form encoding (PEM text
/// grows ~12 %: `+`, `/`, `=` and CR LF are %-escaped), plus slack; a box
/// over 1 MiB still gets the import rule's own `too-large`.
pub const MAX_IMPORT_BODY_BYTES: usize = MAX_BOX_BYTES * 5 / 2 + 64 * 1024;

/// Most fields in one form or query string.
pub const MAX_FORM_FIELDS: usize = 1024;

/// Time for a new connection to send its first request (slowloris bound).
pub const HTTP_FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle time allowed between requests on a kept-alive connection.
pub const HTTP_KEEP_ALIVE_IDLE: Duration = Duration::from_secs(15);

/// Time to read one whole request, head and body: a 2.6 MiB import at
/// ~45 KB/s still fits.
pub const HTTP_READ_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Time for one write to the client to make progress.
pub const HTTP_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests served on one kept-alive connection before it is closed.
pub const HTTP_MAX_REQUESTS_PER_CONNECTION: usize = 100;

/// Longest life of one connection, whatever it does.
pub const HTTP_MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// A web admin session ends after this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);

/// A web admin session ends this long after login in any case.
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(12 * 3600);

/// Most live sessions; the least recently used is dropped beyond it.
pub const MAX_SESSIONS: usize = 64;

/// Random bytes in a session ID or CSRF token (256 bits).
pub const TOKEN_BYTES: usize = 32;

/// Client IPs whose failed logins are remembered (oldest replaced when full).
pub const LOGIN_LIMITER_SLOTS: usize = 256;

/// Failed logins from one IP before lockouts start (typos happen).
pub const LOGIN_FREE_FAILURES: u32 = 5;

/// First lockout; each further failure doubles it.
pub const LOGIN_LOCKOUT_BASE: Duration = Duration::from_secs(2);

/// Longest lockout.
pub const LOGIN_LOCKOUT_MAX: Duration = Duration::from_secs(15 * 60);

/// Failures older than this are forgotten.
pub const LOGIN_LOCKOUT_RESET: Duration = Duration::from_secs(3600);

/// Longest ACME HTTP-01 token looked up (RFC 8555 tokens are ~43 characters).
pub const MAX_ACME_TOKEN_LEN: usize = 256;

// ---- Outgoing HTTPS client (ACME, DNS provider APIs) ----

/// Time to open a TCP connection to a CA or API (a dead host must not stall renewal).
pub const CLIENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whole request (connect, TLS, send, receive); a slow CA is retried later.
pub const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest response head (status line + headers) accepted.
pub const CLIENT_MAX_HEAD: usize = 32 * 1024;

/// Largest response accepted (a certificate chain is a few KiB; a directory less).
pub const CLIENT_MAX_RESPONSE: usize = 1024 * 1024;

/// Most headers in one response.
pub const CLIENT_MAX_HEADERS: usize = 64;

// ---- ACME (RFC 8555) ----

/// Default directory: Let's Encrypt production (issue 5).
pub const ACME_DEFAULT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// Let's Encrypt staging (a preset on the ACME page; untrusted test certificates).
pub const ACME_STAGING_DIRECTORY: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Default interval between renewal checks (issue 5: 6 h, with jitter).
pub const ACME_DEFAULT_CHECK_INTERVAL_SECS: u64 = 6 * 3600;

/// Shortest check interval (tests use seconds).
pub const ACME_MIN_CHECK_INTERVAL_SECS: u64 = 1;

/// Longest check interval: the seed asks for a check at least daily.
pub const ACME_MAX_CHECK_INTERVAL_SECS: u64 = 24 * 3600;

/// Jitter added to each check: up to this fraction (1/N) of the interval, so
/// many appliances do not hit the CA at the same second.
pub const ACME_JITTER_DIVISOR: u64 = 10;

/// Extra badNonce retries per ACME request, on top of instant-acme's own 3
/// (RFC 8555 §6.5: the client retries with the fresh nonce it got).
pub const ACME_BAD_NONCE_RETRIES: u32 = 10;

/// Longest wait for a challenge or order to change state (polling with refresh).
pub const ACME_POLL_TIMEOUT: Duration = Duration::from_secs(120);

/// First wait between polls when the CA sends no Retry-After.
pub const ACME_POLL_FIRST_DELAY: Duration = Duration::from_millis(250);

/// Longest wait between polls (also caps a CA's Retry-After while polling).
pub const ACME_POLL_MAX_DELAY: Duration = Duration::from_secs(10);

/// First back-off after a failed order.
pub const ACME_BACKOFF_BASE_SECS: i64 = 60;

/// Back-off cap after repeated failures (a day: retries still happen daily).
pub const ACME_BACKOFF_MAX_SECS: i64 = 24 * 3600;

/// The ordering lease on a name set lasts this long unless its node renews
/// it (every third of it while the order runs): a node that died mid-order
/// is replaced by another about this long after.
pub const ACME_LEASE_SECS: i64 = 30;

/// Renew when less than 1/N of the lifetime is left (issue 5: 1/3).
pub const ACME_RENEW_FRACTION: i64 = 3;

/// Longest error message kept in the status (CA problem details can be long).
pub const ACME_MAX_ERROR_LEN: usize = 1024;
// --- DNS-01 providers (src/dns/) --------------------------------------------

/// Largest UDP DNS answer read: we send no EDNS(0), so servers answer in
/// 512 bytes or set TC (then TCP); 4 KiB also takes servers that ignore that.
pub const MAX_DNS_UDP_BYTES: usize = 4096;

/// Time for one DNS exchange on one transport (UDP, then TCP) with one server:
/// a primary on the LAN answers in milliseconds, one across the world in < 1 s.
pub const DNS_EXCHANGE_TIMEOUT_SECS: u64 = 5;

/// TTL of the challenge TXT record: short, so a stale value is not cached
/// long by the CA's resolvers if a retry puts a new one.
pub const DNS01_TXT_TTL: u32 = 60;

/// Default time to wait for the TXT record on the zone's servers (setting
/// `dns set --propagation-timeout`): secondaries get NOTIFY within seconds,
/// a SOA refresh can take minutes.
pub const DNS_PROPAGATION_TIMEOUT_SECS: u64 = 120;

/// Longest propagation timeout accepted: an ACME order's authorizations stay
/// pending for hours, but a renewal must not hang for longer than this.
pub const DNS_PROPAGATION_MAX_TIMEOUT_SECS: u64 = 3600;

/// Default pause between propagation checks (setting `--propagation-interval`).
pub const DNS_PROPAGATION_INTERVAL_SECS: u64 = 2;

/// Shortest pause between propagation checks: do not hammer the servers.
pub const DNS_PROPAGATION_MIN_INTERVAL_SECS: u64 = 1;

/// Most DNS providers configured: one per zone; a PBX hosts few zones.
pub const MAX_DNS_PROVIDERS: usize = 256;

/// Longest provider name: an identifier for humans and scripts.
pub const MAX_DNS_PROVIDER_NAME_LEN: usize = 64;

/// Longest TSIG secret or API token (Base64 of a 512-bit HMAC key is 88
/// characters; API tokens are < 200).
pub const MAX_DNS_SECRET_LEN: usize = 1024;

// --- CSR and local CA (src/localca.rs) --------------------------------------

/// Most DNS names in one CSR: public CAs allow 100 SANs per certificate.
pub const MAX_CSR_NAMES: usize = 100;

/// Longest CSR organization (O) or organizational unit (OU), in characters:
/// RFC 5280 Appendix A, ub-organization-name / ub-organizational-unit-name.
pub const CSR_MAX_ORG_LEN: usize = 64;

/// Longest CSR locality (L) or state (ST), in characters: RFC 5280
/// Appendix A, ub-locality-name / ub-state-name.
pub const CSR_MAX_PLACE_LEN: usize = 128;

/// Validity of the local CA's root: ten years, so phones loaded with it
/// keep working for the life of the appliance.
pub const LOCAL_CA_DAYS: u64 = 3650;

/// Validity of a certificate issued by the local CA: 825 days, the most
/// Apple platforms accept for a TLS server certificate.
pub const LOCAL_CA_LEAF_DAYS: u64 = 825;

/// Most name servers of a zone checked for propagation: real zones have 2–6;
/// this bounds the work a hostile NS RRset can cause.
pub const MAX_ZONE_NAME_SERVERS: usize = 16;

/// Cloudflare's API v4 base URL (a `dns add --api-base` may point elsewhere,
/// e.g. a test server or a proxy).
pub const CLOUDFLARE_DEFAULT_API_BASE: &str = "https://api.cloudflare.com/client/v4";

/// TTL of a challenge TXT record at Cloudflare: its API accepts 1 (automatic)
/// or 60..=86400 (60 only on some plans, 120 on all).
pub const CLOUDFLARE_TXT_TTL: u32 = 120;

/// Longest Cloudflare API base URL accepted.
pub const MAX_CLOUDFLARE_API_BASE_LEN: usize = 512;

/// DigitalOcean's API v2 base URL (a `dns add --api-base` may point
/// elsewhere, e.g. a test server or a proxy).
pub const DIGITALOCEAN_DEFAULT_API_BASE: &str = "https://api.digitalocean.com/v2";

/// TTL of a challenge TXT record at DigitalOcean: its API's minimum is 30;
/// 60 keeps a stale value short-lived without hammering the resolvers.
pub const DIGITALOCEAN_TXT_TTL: u32 = 60;

/// Longest DigitalOcean API base URL accepted.
pub const MAX_DIGITALOCEAN_API_BASE_LEN: usize = 512;

/// TXT records at one name read when removing ours (`per_page`; the API's
/// maximum is 200): one name holds a handful of challenge values at most.
pub const MAX_DIGITALOCEAN_RECORDS_LISTED: usize = 200;
/// RSA modulus size of generated keys (`--key-type rsa2048`, per-tenant
/// ACME `rsa2048`).
pub const RSA_KEY_BITS: usize = 2048;

// --- HTTP request heads (smuggling gate, src/http/io.rs) ----------------------
// A head must arrive whole within HTTP_FIRST_REQUEST_TIMEOUT (first request)
// or HTTP_KEEP_ALIVE_IDLE (later ones) and fit HTTP(S)_HEAD_BUFFER_BYTES;
// bigger heads get 431, late ones 408, and the connection is closed.

/// Bytes read from the socket at a time while a request head comes in: most
/// heads are under 2 KiB, so one read usually holds the whole head.
pub const HTTP_HEAD_READ_CHUNK: usize = 2048;

// --- Login limit (src/http/session.rs) --------------------------------------

/// Password checks (PBKDF2, ~0.1 s of one core each on a Cortex-A53) running
/// at once over all clients: 2 keeps at least half of a 2-4 core appliance
/// for TLS handshakes and the PBX under a guessing attack from many
/// addresses; one admin (and the API scripts) need one at a time. Beyond
/// it a login gets 503 `busy` with `Retry-After`.
pub const MAX_CONCURRENT_PASSWORD_CHECKS: usize = 2;

/// `Retry-After` of a login refused because a check is running (from the
/// same address, 429, or `MAX_CONCURRENT_PASSWORD_CHECKS` in all, 503): a
/// check takes ~0.1 s, so a second is enough.
pub const LOGIN_BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

// --- Connection admission and the control socket (src/admission.rs, --------
// --- src/serve.rs, src/control.rs) -------------------------------------------

/// Unproven connections (in their TLS handshake, or a whole port-80
/// connection) one listener holds at once; when full, the oldest is dropped
/// for the newcomer. A handshake takes one or two round trips, so 64 covers
/// a burst of 64 phones re-registering at the same instant (the dropped ones
/// retry) at ~64 fds and ~2.5 MiB of buffers per listener.
pub const MAX_UNPROVEN_PER_LISTENER: usize = 64;

/// Unproven connections one client IP (IPv6: one /64) holds at once on one
/// listener; the newcomer over it is refused at once (no handshake work), so
/// one host cannot push everyone else's handshakes out of the budget.
/// Phones behind one NAT that all reboot at once retry the refused ones.
pub const MAX_UNPROVEN_PER_IP: usize = 16;

/// Time an unproven TLS connection gets to finish its handshake: one or two
/// round trips plus the signature, well under a second even on a slow link;
/// 5 s also covers emulated test builds. Idle or slow connections go quickly.
pub const UNPROVEN_TLS_DEADLINE: Duration = Duration::from_secs(5);

/// Whole life of a port-80 connection: an ACME HTTP-01 check or a redirect
/// is one short request, so a slowloris holds a slot at most this long; 2 s
/// past `HTTP_FIRST_REQUEST_TIMEOUT`, so a slow head still gets its 408.
pub const PLAIN_HTTP_DEADLINE: Duration =
    Duration::from_secs(HTTP_FIRST_REQUEST_TIMEOUT.as_secs() + 2);

/// Established TLS connections of the HTTPS listener (web admin, API): a few
/// admins with ~6 browser connections each need far fewer; ~10 MiB at most.
pub const MAX_ESTABLISHED_HTTPS: usize = 256;

/// Established connections of each `--tls-forward` listener: one long-lived
/// SIP-TLS connection per phone; ~60 KiB and two fds (client and target)
/// each, so ~30 MiB and 1024 fds when full.
pub const MAX_ESTABLISHED_PER_FORWARD: usize = 512;

/// Largest `max-conns=N` of a `--tls-forward`: ~60 KiB and two fds per
/// connection make 16 384 about 1 GiB and 32 768 fds, already more than an
/// appliance serves; a larger number is more likely a typo.
pub const MAX_ESTABLISHED_PER_FORWARD_SETTING: usize = 16_384;

/// Largest `idle=SECONDS` of a `--tls-forward`: one week; a longer idle
/// timeout is as good as none (`idle=none`), which says so.
pub const MAX_FORWARD_IDLE_SECS: u64 = 7 * 86_400;

/// Most protocols in a forward's `alpn=` list: WSS needs one (`http/1.1`),
/// a front for HTTP two or three; the list is sent in every ServerHello
/// decision, so it stays short.
pub const MAX_ALPN_PROTOCOLS: usize = 8;

/// Default established connections from one client IP (IPv6: one /64) per
/// listener (`serve --max-conns-per-ip`): generous, since an office's phones
/// share their NAT's address; half the HTTPS budget, so one address cannot
/// hold all of it.
pub const DEFAULT_MAX_CONNS_PER_IP: usize = 128;

/// Largest `--max-conns-per-ip` accepted: above every listener's budget, so a
/// larger number would mean nothing and is more likely a typo.
pub const MAX_CONNS_PER_IP_SETTING: usize = 65_536;

/// At most one admission summary line per listener this often (each drop is
/// logged at debug), so a flood cannot fill the log.
pub const ADMISSION_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// File descriptors kept for the store, listeners, logs and the blocking
/// pool on top of the connection budgets when `serve` sizes RLIMIT_NOFILE.
pub const FD_RESERVE: u64 = 128;

/// Control-socket clients served at once; more get `busy`. The CLI opens one
/// per command, so 16 covers parallel scripts.
pub const MAX_CONTROL_CLIENTS: usize = 16;

/// Bytes all control clients together may hold in unfinished request lines:
/// two maximal imports at once. A third large line gets `busy` instead of
/// making N clients hold N x `MAX_CONTROL_REQUEST_BYTES`.
pub const MAX_CONTROL_BUFFERED_BYTES: usize = 2 * MAX_CONTROL_REQUEST_BYTES;

/// Bytes read from a control client per read call (the line grows from it).
pub const CONTROL_READ_CHUNK: usize = 64 * 1024;

/// Time a control client gets to send its whole request line: the CLI
/// writes at once, and 3 MiB over a Unix socket take milliseconds.
pub const CONTROL_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Time a persistent control client (a SIP server signing calls, one
/// connection, one request line after another) may stay idle between
/// requests before the daemon closes it; it holds one of
/// `MAX_CONTROL_CLIENTS` meanwhile, and reconnecting is cheap.
pub const CONTROL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Pipelined control requests already read that run in one trip to the
/// blocking pool (one thread hand-over per burst instead of per request);
/// bounds how long the first of them waits for its reply.
pub const MAX_CONTROL_BATCH: usize = 64;

/// Time the daemon's reply write may take: the CLI reads at once.
pub const CONTROL_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest control-socket reply the CLI reads (`certs --json` of thousands
/// of certificates, a full `roots show`).
pub const MAX_CONTROL_REPLY_BYTES: usize = 8 * 1024 * 1024;

// ---------------------------------------------------------------------------
// Storage (issue 10, item 5): cache bounds, leases.

/// Smallest `PBX_CERTD_CACHE_BYTES` accepted: below 256 KiB sled would evict
/// the tree index of a small store on every read (a typo such as `4` is
/// refused, not honoured).
pub const MIN_CACHE_BYTES: u64 = 256 * 1024;

/// Largest `PBX_CERTD_CACHE_BYTES` accepted: sled's own default (1 GiB); a
/// bigger cache only serves stores far beyond this daemon's scale.
pub const MAX_CACHE_BYTES: u64 = 1024 * 1024 * 1024;

/// Compare-and-swap rounds `lease_acquire` tries before it reports the lease
/// as taken: each lost round means another contender wrote in between, so a
/// handful settles any real race.
pub const LEASE_CAS_ATTEMPTS: usize = 4;

// ---- etcd store backend (issue 16, `etcd`) ----

/// Time to open a TCP connection to one etcd member: a dead member is
/// skipped for the next one quickly (loopback or LAN).
pub const ETCD_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest wait for one etcd answer (send or receive); etcd answers a
/// request it cannot commit (no leader) within its own ~5 s request timeout.
pub const ETCD_IO_TIMEOUT: Duration = Duration::from_secs(8);

/// Rounds over the listed endpoints before a request is reported as
/// `store-unavailable` (each round tries every endpoint once).
pub const ETCD_ROUNDS: usize = 2;

/// Pause between two rounds over the endpoints (a leader election takes
/// about a second; the second round may then find one).
pub const ETCD_ROUND_PAUSE: Duration = Duration::from_millis(300);

/// Largest etcd answer read (head + body): one page of a scan is bounded by
/// `ETCD_SCAN_PAGE` records of a few KiB each, Base64 in JSON.
pub const ETCD_MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Records per Range request of a scan (pages at one revision, so a scan
/// stays one consistent view).
pub const ETCD_SCAN_PAGE: usize = 512;

/// Most endpoints in one `--store` URL (a cluster has 3 or 5 members).
pub const ETCD_MAX_ENDPOINTS: usize = 16;

/// TCP keepalive of a watch stream (silent while nothing changes): the
/// first probe after this much silence, so a member that vanished without
/// closing (power cut, partition) is found and the node fails over.
pub const ETCD_WATCH_KEEPALIVE_IDLE: Duration = Duration::from_secs(10);

/// Seconds between unanswered probes of a watch stream.
pub const ETCD_WATCH_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// Unanswered probes before a watch stream is given up: a dead member is
/// found within 10 + 3 x 5 = 25 s of silence.
pub const ETCD_WATCH_KEEPALIVE_PROBES: u32 = 3;

/// Longest single wait of a cluster node's watch for the next change (it
/// only bounds the follower loop's idle wake-ups).
pub const STORE_FOLLOW_POLL: Duration = Duration::from_secs(60);

/// Pause before a cluster node re-opens its watch after losing it (etcd
/// down): it keeps serving its last snapshot meanwhile.
pub const ETCD_WATCH_RETRY: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------
// Input parsing (issue 10, item 4): one parser per input.

/// Longest e-mail address accepted (admin e-mail, ACME contact): the SMTP
/// path limit of RFC 5321 §4.5.3.1.3 (256 with the angle brackets).
pub const MAX_EMAIL_LEN: usize = 254;

// ACME scheduler, account sync and profiles (issue 11, task S).

/// Certificates living less than this are renewed at 1/2 of their lifetime
/// instead of 1/3 (short-lived profiles, e.g. 6 days: a day or two of retries
/// is too little margin for an outage).
pub const ACME_SHORT_LIVED_SECS: i64 = 10 * 86_400;

/// Renew short-lived certificates when less than 1/N of the lifetime is left.
pub const ACME_SHORT_RENEW_FRACTION: i64 = 2;

/// Shortest sleep of the renewal loop when a name set is still due right
/// after a pass (its lease is held elsewhere, or the store failed): keeps
/// such a set from turning the loop into a busy loop.
pub const ACME_MIN_RESCHEDULE_SECS: u64 = 10;

/// Longest ACME profile name accepted (Let's Encrypt's are under 16 bytes;
/// draft-ietf-acme-profiles sets no limit, this bounds the stored setting).
pub const ACME_MAX_PROFILE_LEN: usize = 64;

// Alerts (issue 11, "Alerts"): thresholds, back-off, SMTP bounds.

/// Days before expiry at which a served certificate is alerted (each once):
/// a month to buy an uploaded one, then ever more urgent reminders.
pub const ALERT_EXPIRY_DAYS: [i64; 4] = [30, 14, 7, 1];

/// Failed renewals in a row before the admin is told (default): one failure
/// is often a CA hiccup that the back-off cures.
pub const ALERT_DEFAULT_FAILURES: u32 = 3;

/// Any renewal failure with less validity than this left is alerted at once.
pub const ALERT_FAILURE_VALIDITY_SECS: i64 = 7 * 86_400;

/// First retry of a channel that failed; doubled per failure.
pub const ALERT_RETRY_FIRST_SECS: i64 = 2;

/// Longest wait between two retries of a failing channel.
pub const ALERT_RETRY_MAX_SECS: i64 = 3_600;

/// How often the alert loop looks for a changed snapshot or a due retry
/// (cheap: a pointer compare when nothing is due).
pub const ALERT_TICK: Duration = Duration::from_secs(1);

/// Full evaluation at least this often (ACME status and time move on
/// without a snapshot change).
pub const ALERT_EVAL_INTERVAL_SECS: i64 = 300;

/// Whole SMTP transaction (connect, TLS, AUTH, DATA) bound.
pub const ALERT_SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest SMTP reply (all lines of one multi-line reply) read.
pub const ALERT_SMTP_MAX_REPLY: usize = 16 * 1024;

/// Longest alert setting value (server, user, password, address, URL,
/// secret): far above any real one, bounds the stored record.
pub const ALERT_MAX_SETTING_LEN: usize = 1024;

// Chain doctor (issue 17): AIA caIssuers fetches at import.

/// Whole-fetch bound of one caIssuers download: an import waits for it (and
/// holds the store's write lock), so well below the client's 60 s request
/// bound; a CA's AIA server answers in well under a second.
pub const AIA_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Largest caIssuers answer accepted: one intermediate is 1-2 KiB and a
/// PKCS#7 bundle of a few certificates under 10 KiB.
pub const AIA_MAX_BYTES: usize = 64 * 1024;

/// caIssuers downloads per import: leaf -> intermediate -> cross-sign covers
/// real CAs; a URL that leads nowhere stops the chase.
pub const AIA_MAX_FETCHES: usize = 3;

// Performance (issue 13): workers, TLS session resumption.

/// Largest `serve --workers N`: one executor thread per core; beyond 64 a
/// PBX appliance has no cores to give them, and each costs a stack.
pub const MAX_WORKERS: usize = 64;

/// TLS 1.2 sessions kept for stateful resumption (session IDs, clients
/// without ticket support); about 200 B each, so at most ~100 KiB. TLS 1.3
/// and ticket-capable TLS 1.2 clients resume statelessly with tickets.
pub const TLS12_SESSION_CACHE_ENTRIES: usize = 512;

/// Local addresses one TLS listener keeps a config for (a client without SNI
/// gets the certificate of the address it connected to): a wildcard listener
/// on an appliance sees its few interface addresses; past this, connections
/// to further addresses are served as if the address were unknown.
pub const MAX_LOCAL_ADDRESSES: usize = 64;

/// Handshakes kept per TLS listener for `handshakes` (about 560 B each, so
/// ~36 KiB per listener): enough to see which phones send no SNI after a
/// re-provisioning, small enough for the appliance.
pub const HANDSHAKE_RING_RECORDS: usize = 64;

// STIR/SHAKEN (issue 15).

/// Most digits of a telephone number in a PASSporT: E.164 has at most 15;
/// national dial strings with prefixes a few more.
pub const MAX_TN_DIGITS: usize = 20;

/// Loaded STIR/SHAKEN signing keys kept in memory (by key ID): a PBX has
/// one per tenant at most; past this the oldest is loaded again when used.
pub const MAX_STIR_SIGNERS: usize = 256;

/// Most destination numbers of one PASSporT (`dest.tn`, RFC 8225 §5.2.1): a
/// call forks to a handful; the header must fit a SIP message.
pub const MAX_DEST_TNS: usize = 16;

/// Longest Identity header value `stir-shaken verify` reads: a PASSporT with
/// its x5u is under 1 KiB; SIP messages stay under a UDP datagram.
pub const MAX_IDENTITY_LEN: usize = 8 * 1024;

/// Largest x5u answer (a PEM chain of leaf and intermediates is 2-5 KiB): a
/// larger one is refused (`x5u-too-large`, 436 Bad Identity Info).
pub const MAX_X5U_BYTES: usize = 32 * 1024;

/// Whole-fetch bound of one x5u download: a verification holds a SIP
/// transaction, whose timer B is 32 s; ATIS-1000074 expects ~1 s answers.
pub const X5U_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// x5u answers kept (by URL) for their Cache-Control max-age: a PBX sees
/// calls from a few dozen signing providers.
pub const MAX_X5U_CACHE_ENTRIES: usize = 64;

/// Longest time an x5u answer is kept, whatever its max-age says: a revoked
/// or replaced certificate is noticed within a day.
pub const MAX_X5U_CACHE_SECS: u64 = 24 * 3600;

/// Default allowed distance between `iat` and now (RFC 8224 §6.2.1: 60 s).
pub const DEFAULT_IAT_SKEW_SECS: u64 = 60;

/// Largest configurable `iat` skew: past a few minutes a replayed header
/// would pass (RFC 8224 §12.1).
pub const MAX_IAT_SKEW_SECS: u64 = 600;

/// Cache-Control max-age of the published x5u chain (`GET /sti/ID.pem`):
/// verifiers re-fetch hourly, so a replaced certificate shows within an hour.
pub const STI_PUBLISH_MAX_AGE_SECS: u64 = 3600;

/// Characters of a download's file name taken from a certificate's name
/// (a DNS name is at most 253; a root's CN may be anything).
pub const MAX_DOWNLOAD_NAME_LEN: usize = 100;

// ---- backup, restore, store copy (issue 16, `backup`) ----

/// The backup file format this release writes and the newest it reads; a
/// newer file is refused (`backup-too-new`) rather than half understood.
pub const BACKUP_FORMAT_VERSION: u32 = 1;

/// Largest backup file `restore` reads: 10 000 tenants' chains, keys and
/// records are about 60 MB in Base64 JSON; a larger file is not ours.
pub const MAX_BACKUP_BYTES: u64 = 256 * 1024 * 1024;

/// Operations per batch when restoring into a store whose transactions are
/// bounded: etcd's default `--max-txn-ops` (a sled store takes one batch).
pub const ETCD_MAX_TXN_OPS: usize = 128;

// ---- cluster status (issue 16) ----

/// How often a node of a shared store renews its heartbeat lease.
pub const NODE_HEARTBEAT_SECS: u64 = 5;

/// Lifetime of a node's heartbeat lease: three missed heartbeats and the
/// node is no longer listed by `cluster status`.
pub const NODE_HEARTBEAT_TTL_SECS: u64 = 15;

/// Lifetime of a challenge answer published in a shared store: an order
/// polls at most `ACME_POLL_TIMEOUT` per step, so its answers are withdrawn
/// long before; a node that died mid-order leaves none answered after it.
pub const ACME_CHALLENGE_TTL_SECS: i64 = 10 * 60;

/// Wait between publishing a challenge answer in a shared store and asking
/// the CA to validate it: every node rebuilds within it (the import-to-served
/// median is about 30 ms, README "Cluster"; 1 s is the promise).
pub const CLUSTER_CHALLENGE_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

// ---- keys sealed at rest (issue 16, `seal`) ----

/// Bytes of one store key: AES-256 (NIST SP 800-38D with a 256-bit AES key,
/// ring's `AES_256_GCM.key_len()`).
pub const SEAL_KEY_BYTES: usize = 32;

/// Most keys one `--store-key-file` holds: a rotation needs two (new, old);
/// a few more cover a rotation interrupted twice. Bounds the read.
pub const MAX_SEAL_KEYS: usize = 8;

/// Bytes of a key ID stored beside each sealed value (the first bytes of
/// SHA-256 of the key): enough to tell a handful of keys apart, and the ID
/// says nothing usable about the key.
pub const SEAL_KEY_ID_BYTES: usize = 8;
