//! The module layers of `src/` (README "Architecture"): a lower layer never
//! imports a higher one, and no two files import each other through any
//! chain (no cycle).
//!
//! How: every `.rs` file under `src/` is a module (`src/dns01/mod.rs` is
//! `dns01`, `src/dns01/wire.rs` is `dns01::wire`); its edges are the modules
//! named by `crate::…`, `super::…` and `self::…` paths outside comments and
//! outside its `#[cfg(test)] mod tests` (tests may reach anywhere). A path
//! names the longest module prefix that exists. Cycles are found with
//! Tarjan's strongly connected components over those files.
//!
//! Run alone: `cargo test --test layers -- --nocapture` prints every upward
//! import and every cycle; any of either fails the test. A new module must be
//! given its layer in `LAYERS` (the test fails until it is).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layer of each top-level module, bottom up (README "Architecture").
const LAYERS: &[(&str, u8)] = &[
    ("limits", 0),
    ("clock", 0),
    ("logger", 0),
    ("names", 0),
    ("pem", 0),
    ("admission", 0),
    ("settings", 0),
    ("model", 0),
    ("handshakes", 0),
    // The PROXY v2 header: a pure function of addresses and TLS facts.
    ("proxy", 0),
    ("pki", 1),
    ("store", 2),
    // The etcd backend of the store's `Kv` (issue 16).
    ("etcd", 2),
    // Keys sealed at rest: a `Kv` wrapper over any backend (issue 16).
    ("seal", 2),
    ("error", 3),
    ("snapshot", 3),
    ("certs", 4),
    ("tenant", 4),
    ("roots", 4),
    ("auth", 4),
    ("localca", 4),
    ("acme", 4),
    ("alert", 4),
    ("dns", 4),
    ("outbound", 4),
    // `--tls-connect`: its setting and TLS client config need the store and
    // `snapshot::certified_key`; `serve` runs its listeners.
    ("connect", 4),
    ("session", 4),
    ("served", 4),
    // PASSporT signing/verification: uses certs (the tenant's choice) and
    // outbound (x5u fetch), both layer 4; only ops above calls it.
    ("stir", 4),
    // Backup, restore, store copy: whole-store reads and writes over `Kv`.
    ("backup", 4),
    ("ops", 5),
    ("daemon", 6),
    ("tls", 7),
    ("renewal", 7),
    ("dns01", 7),
    ("notify", 7),
    ("control", 8),
    ("http", 8),
    ("serve", 9),
    ("fuzz_entry", 9),
    ("cli", 10),
    ("", 11), // lib.rs, the crate root
];

/// One module's file contents, minus comments and its test module.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |i| &after[i..]);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |i| &after[i + 2..]);
        } else if rest.starts_with('"') {
            // Skip string literals (a URL's `//` is not a comment).
            let bytes = rest.as_bytes();
            let mut i = 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            rest = rest.get(i + 1..).unwrap_or("");
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The paths a piece of code names after `root::` (`crate`, `super`,
/// `self`), with `{a, b::c}` groups expanded: `["a", "b::c"]`.
fn paths_after(code: &str, root: &str) -> Vec<String> {
    let mut found = Vec::new();
    let needle = format!("{root}::");
    let mut at = 0;
    while let Some(i) = code[at..].find(&needle) {
        let start = at + i;
        at = start + needle.len();
        let before = code[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `my_crate::`
        }
        expand(&code[at..], "", &mut found);
    }
    found
}

/// Expands one path (possibly a `{…}` group) at the start of `s`.
fn expand(s: &str, prefix: &str, out: &mut Vec<String>) {
    let s = s.trim_start();
    if let Some(inner) = s.strip_prefix('{') {
        // Split the group at depth-0 commas.
        let mut depth = 0;
        let mut item_start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    expand(&inner[item_start..i], prefix, out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&inner[item_start..i], prefix, out);
                    item_start = i + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let mut path = prefix.to_string();
    let mut rest = s;
    loop {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let seg = &rest[..end];
        if seg.is_empty() {
            break;
        }
        if !path.is_empty() {
            path.push_str("::");
        }
        path.push_str(seg);
        rest = &rest[end..];
        match rest.strip_prefix("::") {
            Some(r) if r.trim_start().starts_with('{') => {
                expand(r, &path, out);
                return;
            }
            Some(r) => rest = r,
            None => break,
        }
    }
    if !path.is_empty() {
        out.push(path);
    }
}

/// The module a path names: its longest prefix that is a module.
fn module_named(path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let segs: Vec<&str> = path.split("::").collect();
    (1..=segs.len())
        .rev()
        .map(|n| segs[..n].join("::"))
        .find(|m| modules.contains(m))
}

/// Module path of a file under `src/`.
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts.join("::")
}

/// Module → the modules it imports.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn graph_of(files: &BTreeMap<String, String>) -> Graph {
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let mut graph = Graph::new();
    for (module, text) in files {
        let code = code_of(text);
        let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
        let mut edges = BTreeSet::new();
        let named = paths_after(&code, "crate")
            .into_iter()
            .chain(paths_after(&code, "super").into_iter().map(|p| {
                if parent.is_empty() {
                    p
                } else {
                    format!("{parent}::{p}")
                }
            }))
            .chain(paths_after(&code, "self").into_iter().map(|p| {
                if module.is_empty() {
                    p
                } else {
                    format!("{module}::{p}")
                }
            }));
        for path in named {
            if let Some(m) = module_named(&path, &modules) {
                if &m != module {
                    edges.insert(m);
                }
            }
        }
        graph.insert(module.clone(), edges);
    }
    graph
}

/// Strongly connected components with more than one member (Tarjan).
fn cycles(graph: &Graph) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        found: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.insert(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found
}

fn layer(module: &str) -> Option<u8> {
    let top = module.split("::").next().unwrap_or("");
    LAYERS.iter().find(|(m, _)| *m == top).map(|(_, l)| *l)
}

/// Upward imports, as (from top-level module, to top-level module).
fn upward(graph: &Graph) -> BTreeSet<(String, String)> {
    let top = |m: &str| m.split("::").next().unwrap_or("").to_string();
    let mut up = BTreeSet::new();
    for (from, tos) in graph {
        for to in tos {
            if let (Some(a), Some(b)) = (layer(from), layer(to)) {
                if b > a {
                    up.insert((top(from), top(to)));
                }
            }
        }
    }
    up
}

fn read_src() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ readable") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(&root).expect("under src/");
                if rel == Path::new("main.rs") {
                    continue; // the binary: uses the library as `pbx_certd::`
                }
                let text = std::fs::read_to_string(&path).expect("source readable");
                files.insert(module_of(rel), text);
            }
        }
    }
    files
}

#[test]
fn src_has_no_upward_import_and_no_cycle() {
    let files = read_src();
    assert!(files.len() > 20, "src/ was read: {} modules", files.len());
    for module in files.keys() {
        assert!(
            layer(module).is_some(),
            "module `{module}` has no layer in tests/layers.rs LAYERS: give it one"
        );
    }
    let graph = graph_of(&files);
    let edges: usize = graph.values().map(BTreeSet::len).sum();
    assert!(edges > 50, "imports were found: {edges}");

    let up = upward(&graph);
    for (a, b) in &up {
        println!(
            "upward: {a} (layer {:?}) imports {b} (layer {:?})",
            layer(a),
            layer(b)
        );
    }
    let cyc = cycles(&graph);
    for c in &cyc {
        println!("cycle: {c:?}");
    }
    assert!(up.is_empty(), "a lower layer imports a higher one: {up:?}");
    assert!(cyc.is_empty(), "modules in an import cycle: {cyc:?}");
}

/// The checker itself: a deliberately added import is caught, both as an
/// upward import and as a cycle.
#[test]
fn the_checker_sees_a_deliberate_cycle_and_upward_import() {
    let mut files = BTreeMap::new();
    files.insert("pem".to_string(), "use crate::limits::MAX;\n".to_string());
    files.insert(
        "limits".to_string(),
        "pub const MAX: usize = 1;\n".to_string(),
    );
    files.insert(
        "store".to_string(),
        "use crate::{pem, limits::{MAX, OTHER}};\nfn f() { super::pki::x(); }\n".to_string(),
    );
    files.insert(
        "pki".to_string(),
        "// crate::serve in a comment\nuse crate::pem;\nconst U: &str = \"crate::serve\";\n"
            .to_string(),
    );
    let graph = graph_of(&files);
    assert_eq!(
        graph["store"],
        BTreeSet::from(["pem".into(), "limits".into(), "pki".into()])
    );
    assert_eq!(graph["pki"], BTreeSet::from(["pem".into()]));
    assert!(cycles(&graph).is_empty());
    assert!(upward(&graph).is_empty());

    // The deliberate import: limits (layer 0) uses store (layer 2), which
    // reaches limits again through pem.
    files.insert(
        "limits".to_string(),
        "use crate::store::Thing;\npub const MAX: usize = 1;\n".to_string(),
    );
    let graph = graph_of(&files);
    assert_eq!(
        upward(&graph),
        BTreeSet::from([("limits".to_string(), "store".to_string())])
    );
    let found = cycles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("limits") && found[0].contains("store"));

    // Submodules: `super::` and `self::` resolve to files.
    let mut files = BTreeMap::new();
    files.insert("http".to_string(), "use self::admin::X;\n".to_string());
    files.insert(
        "http::admin".to_string(),
        "use super::api::Y;\n".to_string(),
    );
    files.insert(
        "http::api".to_string(),
        "use crate::http::admin::Z;\n".to_string(),
    );
    let graph = graph_of(&files);
    assert_eq!(
        cycles(&graph),
        vec![BTreeSet::from([
            "http::admin".to_string(),
            "http::api".to_string()
        ])]
    );
}
