//! The store survives a process killed at any instant (issue 9, item 1).
//!
//! sled 0.34.7 writes a snapshot file (`db/snap.LSN.generating`, then renamed
//! to `db/snap.LSN`) in the first open after the log grew, and writes its
//! `db/conf` file at the first-ever open. A `kill -9` inside either write used
//! to leave a file the next open read as authoritative: `store-error: Read
//! corrupted data` on every command, `serve` would not start.
//!
//! The tests drive the real binary as a user does: they fill a store through
//! the CLI (tenants, imported certificates), kill store-opening commands
//! (`certs`, `tenant list`, `tenant add`, `serve`) at random instants or the
//! moment a `.generating` file appears, and after each kill check that the
//! store opens and lists everything committed. A deterministic test rebuilds
//! the exact on-disk states a kill inside sled's snapshot and config writes
//! leaves (the file names and bytes come from the binary itself), since a
//! random kill only sometimes lands in those windows and strace cannot trace
//! the binary under qemu-user.
//!
//! Bounds: every kill loop stops at a count and at a time budget, both
//! smaller when `PBX_CERTD_EMULATED` is set (qemu-user runs 5-20x slower);
//! the budgets bound the run time, nothing asserts on speed. The seed of the
//! random instants is printed for replay (`STORE_CRASH_SEED=N`).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

fn emulated() -> bool {
    std::env::var_os("PBX_CERTD_EMULATED").is_some()
}

/// (most kills, time budget) of one loop, native or emulated.
fn bounds(native: (usize, u64), emulated_: (usize, u64)) -> (usize, Duration) {
    let (n, secs) = if emulated() { emulated_ } else { native };
    (n, Duration::from_secs(secs))
}

/// Upper end of the random kill instant: the binary's start-up (store open
/// included) takes a few ms natively, ten times that emulated.
fn max_delay_us() -> u64 {
    if emulated() {
        80_000
    } else {
        8_000
    }
}

/// Longest wait for a victim's snapshot write (a bound on the loop, not a
/// timing assertion: a missed window just makes a kill at a later instant).
const GENERATING_WAIT: Duration = Duration::from_secs(2);

/// xorshift64*: reproducible random kill instants without a dependency.
struct Rng(u64);

impl Rng {
    fn new(test: &str) -> Rng {
        let seed = std::env::var("STORE_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{test}: STORE_CRASH_SEED={seed}");
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// When a victim is killed.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// After this many microseconds.
    Delay(u64),
    /// As soon as a `db/snap.*.generating` file exists (sled is inside its
    /// snapshot write), or when the process ends without one.
    Generating,
}

/// What a kill hit.
#[derive(Debug, Default)]
struct Tally {
    kills: usize,
    /// Killed while a `.generating` file existed (then torn as by a power
    /// cut).
    in_snapshot_write: usize,
    /// The victim had already exited when the kill came.
    finished_first: usize,
}

/// Names of the files in sled's directory `data/db` that `keep` keeps.
fn db_names(data: &Path, keep: impl Fn(&str) -> bool) -> BTreeSet<String> {
    fs::read_dir(data.join("db"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| keep(n))
                .collect()
        })
        .unwrap_or_default()
}

/// Unfinished snapshots: `db/snap.*.generating`.
fn generating_files(data: &Path) -> BTreeSet<String> {
    db_names(data, |n| {
        n.starts_with("snap.") && n.ends_with(".generating")
    })
}

/// Every snapshot file, finished or not.
fn snapshot_names(data: &Path) -> BTreeSet<String> {
    db_names(data, |n| n.starts_with("snap."))
}

/// Runs `cmd` (stdio discarded) and SIGKILLs it at `at`.
///
/// A kill that finds sled inside its snapshot write (a `.generating` file,
/// not yet renamed) also models a power cut at that instant: sled's
/// `write_snapshot` has not returned from `sync_all` (the rename follows it
/// at once), so the file's data may not be on disk; after the cut it holds
/// any prefix, most often nothing (ext4 delayed allocation). Everything else
/// sled wrote at open (the zeroed segment tail) was synced before, and each
/// committed batch was flushed, so the file is the only thing a cut can
/// tear. A plain kill leaves the file whole (its bytes are in the page
/// cache), which the old code happened to read correctly.
fn kill_run(mut cmd: Command, data: &Path, at: KillAt, rng: &mut Rng, tally: &mut Tally) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the victim");
    match at {
        KillAt::Delay(us) => std::thread::sleep(Duration::from_micros(us)),
        KillAt::Generating => {
            // Until the file shows, or the window has passed unseen (a new
            // renamed snapshot; the victim exited; `serve` is up by then).
            let before = snapshot_names(data);
            let start = Instant::now();
            while generating_files(data).is_empty() {
                if child.try_wait().expect("try_wait").is_some()
                    || snapshot_names(data) != before
                    || start.elapsed() > GENERATING_WAIT
                {
                    break;
                }
                std::thread::yield_now();
            }
        }
    }
    let exited = child.try_wait().expect("try_wait").is_some();
    let _ = child.kill();
    let _ = child.wait();
    tally.kills += 1;
    if exited {
        tally.finished_first += 1;
    }
    for name in generating_files(data) {
        let path = data.join("db").join(&name);
        let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let kept = if rng.below(2) == 0 {
            0
        } else {
            rng.below(len + 1)
        };
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(kept).unwrap();
        tally.in_snapshot_write += 1;
    }
}

/// What the store must hold: tenants and certificate IDs.
#[derive(Debug, Clone, Default)]
struct Committed {
    tenants: BTreeSet<String>,
    certs: BTreeSet<String>,
}

/// A store holding data: tenants and imported certificates, made through the
/// CLI.
fn populate(pbx: &Pbx) -> Committed {
    let pki = Pki::new();
    let mut c = Committed::default();
    for t in ["alpha", "bravo", "charlie"] {
        let dns = format!("pbx.{t}.example.com");
        pbx.tenant_add(t, &[dns.as_str()]);
        c.tenants.insert(t.to_string());
        let leaf = pki.leaf(leaf(&[dns.as_str()]));
        let out = pki.import(pbx, &leaf, &[]);
        c.certs
            .insert(out["id"].as_str().expect("import id").to_string());
    }
    let server = pki.leaf(leaf(&["pbx.example.net"]));
    let out = pki.import(pbx, &server, &[]);
    c.certs
        .insert(out["id"].as_str().expect("import id").to_string());
    c
}

/// `ARGS --json` on `data`, which must succeed: the store opens.
#[track_caller]
fn ok_on(data: &Path, args: &[&str], context: &str) -> Value {
    let mut cmd = cli_cmd(data, args);
    cmd.arg("--json");
    let out = run_command(cmd, None);
    assert_eq!(
        out.status,
        0,
        "after {context}: the store must open and answer\n{}",
        out.describe()
    );
    out.json()
}

fn names(list: &Value, key: &str) -> BTreeSet<String> {
    list.as_array()
        .expect("a JSON list")
        .iter()
        .map(|v| v[key].as_str().expect("string field").to_string())
        .collect()
}

/// `tenant list` shows every committed tenant and nothing but them or
/// `maybe` (a killed `tenant add`, which may or may not have committed).
/// Returns whether `maybe` is there.
#[track_caller]
fn check_tenants(data: &Path, c: &Committed, maybe: Option<&str>, context: &str) -> bool {
    let listed = names(&ok_on(data, &["tenant", "list"], context), "name");
    let mut expected = c.tenants.clone();
    let present = maybe.is_some_and(|m| listed.contains(m));
    if present {
        expected.extend(maybe.map(str::to_string));
    }
    assert_eq!(
        listed, expected,
        "after {context}: `tenant list` must show exactly the committed tenants"
    );
    present
}

/// `certs` shows every committed certificate; extra ones only if
/// `self_signed_ok` and they are the daemon's first-start self-signed one.
#[track_caller]
fn check_certs(data: &Path, c: &Committed, self_signed_ok: bool, context: &str) {
    let list = ok_on(data, &["certs"], context);
    let listed = names(&list, "id");
    assert!(
        c.certs.is_subset(&listed),
        "after {context}: `certs` lost committed certificates: missing {:?}",
        c.certs.difference(&listed).collect::<Vec<_>>()
    );
    for cert in list.as_array().expect("list") {
        let id = cert["id"].as_str().expect("id");
        if !c.certs.contains(id) {
            assert!(
                self_signed_ok && cert["source"] == "self-signed",
                "after {context}: `certs` lists a certificate nobody committed: {cert}"
            );
        }
    }
}

fn cli_cmd(data: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("PBX_CERTD_DATA_DIR")
        .arg("--data-dir")
        .arg(data)
        .args(args);
    cmd
}

/// Every second kill waits for the snapshot write, the others land at a
/// random instant of the start-up.
fn pick_instant(rng: &mut Rng, i: usize) -> KillAt {
    if i % 2 == 0 {
        KillAt::Generating
    } else {
        KillAt::Delay(rng.below(max_delay_us()))
    }
}

/// Runs `kill` for kill number 0, 1, ... until the count or the time budget
/// of `bounds` is reached; then at least 3 kills must have run.
fn kill_loop(
    test: &str,
    (most, budget): (usize, Duration),
    mut kill: impl FnMut(usize, &mut Rng, &mut Tally),
) {
    let mut rng = Rng::new(test);
    let mut tally = Tally::default();
    let start = Instant::now();
    let mut i = 0;
    while i < most && start.elapsed() < budget {
        kill(i, &mut rng, &mut tally);
        i += 1;
    }
    eprintln!("{test}: {tally:?}");
    assert!(tally.kills >= 3, "{test}: too few kills: {tally:?}");
}

/// A fresh store: no certificates, the bundled Root CA list seeded.
#[track_caller]
fn assert_fresh_store(data: &Path, context: &str) {
    let certs = ok_on(data, &["certs"], context);
    assert_eq!(certs, serde_json::json!([]), "after {context}");
    let roots = ok_on(data, &["roots"], context);
    assert!(
        roots.as_array().expect("list").len() >= 100,
        "after {context}: the bundled Root CA list is seeded"
    );
}

#[test]
fn cli_commands_killed_at_random_instants_never_brick_the_store() {
    let pbx = Pbx::new();
    let mut c = populate(&pbx);
    let bounds = bounds((60, 6), (20, 40));
    kill_loop("cli_commands_killed", bounds, |i, rng, tally| {
        // The victim: read-only commands (they write a snapshot at open too)
        // and a write.
        let victim = format!("k{i}");
        let args: Vec<&str> = match i % 3 {
            0 => vec!["certs"],
            1 => vec!["tenant", "list"],
            _ => vec!["tenant", "add", &victim, "--dns", "k.example.org"],
        };
        let at = pick_instant(rng, i);
        kill_run(cli_cmd(&pbx.data, &args), &pbx.data, at, rng, tally);
        let context = format!("kill {i} of `{}` at {at:?}", args.join(" "));
        let maybe = (args[0] == "tenant" && args[1] == "add").then_some(victim.as_str());
        if check_tenants(&pbx.data, &c, maybe, &context) {
            // Committed by the killed process: remove it again so the next
            // killed `tenant add` (same DNS name) is a real write.
            pbx.ok(&["tenant", "remove", &victim]);
        }
        check_certs(&pbx.data, &c, false, &context);
        // A committed write, so that the next victim's open finds a grown
        // log and writes a snapshot (sled writes one only then).
        let name = format!("w{i}");
        pbx.tenant_add(&name, &[&format!("{name}.example.org")]);
        c.tenants.insert(name);
    });
}

#[test]
fn first_open_killed_at_random_instants_leaves_a_usable_store() {
    let pbx = Pbx::new();
    let bounds = bounds((15, 3), (5, 30));
    kill_loop("first_open_killed", bounds, |i, rng, tally| {
        let data = pbx.tmp.path().join(format!("fresh{i}"));
        // The first-ever open creates the directory, sled's conf and log,
        // and seeds the bundled Root CA list in one batch.
        let at = KillAt::Delay(rng.below(max_delay_us() * 2));
        kill_run(cli_cmd(&data, &["certs"]), &data, at, rng, tally);
        assert_fresh_store(&data, &format!("kill {i} of a first open at {at:?}"));
    });
}

#[test]
fn serve_killed_during_start_up_never_bricks_the_store() {
    let pbx = Pbx::new();
    let mut c = populate(&pbx);
    let bounds = bounds((12, 5), (5, 40));
    kill_loop("serve_killed", bounds, |i, rng, tally| {
        // A grown log: the daemon's open writes a snapshot.
        let name = format!("s{i}");
        pbx.tenant_add(&name, &[&format!("{name}.example.org")]);
        c.tenants.insert(name);
        let at = pick_instant(rng, i);
        let serve = pbx.daemon().command();
        kill_run(serve, &pbx.data, at, rng, tally);
        let context = format!("kill {i} of `serve` at {at:?}");
        check_tenants(&pbx.data, &c, None, &context);
        check_certs(&pbx.data, &c, true, &context);
    });
    // And the daemon starts and serves the whole store.
    let _daemon = pbx.serve(false);
    check_tenants(&pbx.data, &c, None, "the kills, through the daemon");
    check_certs(&pbx.data, &c, true, "the kills, through the daemon");
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Everything the CLI shows of the store.
#[track_caller]
fn listing(data: &Path, context: &str) -> Value {
    serde_json::json!({
        "tenants": ok_on(data, &["tenant", "list"], context),
        "certs": ok_on(data, &["certs"], context),
        "roots": ok_on(data, &["roots"], context).as_array().map(Vec::len),
    })
}

#[test]
fn leftovers_of_a_kill_inside_the_snapshot_write_are_not_read() {
    let pbx = Pbx::new();
    let c = populate(&pbx);
    // The log grows after the last snapshot: the next open writes one.
    pbx.tenant_add("delta", &["pbx.delta.example.com"]);
    let before = snapshot_names(&pbx.data);

    // Let a copy finish that open to learn the file it writes: its name
    // (sled: `snap.{stable_lsn:016X}`, first as `...generating`) and bytes.
    let probe = pbx.tmp.path().join("probe");
    copy_dir(&pbx.data, &probe);
    let expected = listing(&probe, "a completed open");
    let written: Vec<String> = snapshot_names(&probe)
        .difference(&before)
        .cloned()
        .collect();
    assert_eq!(
        written.len(),
        1,
        "the open after a write writes one new snapshot (before {before:?}, after {:?})",
        snapshot_names(&probe)
    );
    let snap = &written[0];
    let bytes = fs::read(probe.join("db").join(snap)).unwrap();
    assert!(bytes.len() > 12, "a snapshot holds data and a CRC");

    // What sled's write_snapshot leaves when killed after creating the file
    // (empty), during its write_all calls (a prefix; without the trailing
    // length and CRC), and between sync_all and rename (all of it).
    let leftovers: [(&str, &[u8]); 4] = [
        ("empty", &[]),
        ("half", &bytes[..bytes.len() / 2]),
        ("no crc", &bytes[..bytes.len() - 4]),
        ("complete", &bytes),
    ];
    for (i, (what, content)) in leftovers.iter().enumerate() {
        let data = pbx.tmp.path().join(format!("left{i}"));
        copy_dir(&pbx.data, &data);
        let leftover = data.join("db").join(format!("{snap}.generating"));
        fs::write(&leftover, content).unwrap();
        let context = format!("a kill inside the snapshot write ({what} `{snap}.generating`)");
        assert_eq!(listing(&data, &context), expected, "after {context}");
        check_tenants(&data, &c_with(&c, "delta"), None, &context);
        assert!(
            generating_files(&data).is_empty(),
            "after {context}: the leftover is gone: {:?}",
            snapshot_names(&data)
        );
    }

    // And the daemon starts on such a store.
    let data = pbx.tmp.path().join("left-serve");
    copy_dir(&pbx.data, &data);
    fs::write(data.join("db").join(format!("{snap}.generating")), []).unwrap();
    let daemon = Serve::on(&data).start();
    check_tenants(&data, &c_with(&c, "delta"), None, "serve on a leftover");
    check_certs(&data, &c, true, "serve on a leftover");
    drop(daemon);
}

fn c_with(c: &Committed, tenant: &str) -> Committed {
    let mut c = c.clone();
    c.tenants.insert(tenant.to_string());
    c
}

#[test]
fn a_kill_inside_the_config_write_of_the_first_open_is_recovered() {
    let pbx = Pbx::new();
    // sled's conf file as the binary writes it: text lines + CRC-32.
    ok_on(&pbx.data, &["certs"], "a first open");
    let conf = fs::read(pbx.data.join("db").join("conf")).unwrap();
    assert!(conf.len() > 8, "conf: parameters and a CRC");

    // sled's first open: create_dir_all(db/blobs), write_config (two
    // write_all calls, no fsync), then the log. A kill between the two
    // writes leaves the text without its CRC; a power cut may leave any
    // prefix.
    let states: [(&str, &[u8]); 3] = [
        ("no crc", &conf[..conf.len() - 4]),
        ("half", &conf[..conf.len() / 2]),
        ("empty", &[]),
    ];
    for (i, (what, content)) in states.iter().enumerate() {
        let data: PathBuf = pbx.tmp.path().join(format!("first{i}"));
        fs::create_dir_all(data.join("db").join("blobs")).unwrap();
        fs::write(data.join("db").join("conf"), content).unwrap();
        let context = format!("a kill inside the first open's conf write ({what})");
        assert_fresh_store(&data, &context);
        assert_eq!(
            fs::read(data.join("db").join("conf")).unwrap(),
            conf,
            "after {context}: conf is whole again"
        );
    }
}
