//! The layering fitness test (`make lint` runs it): reads every file of
//! src/ and fails when a library module imports from a layer above its own,
//! when modules import one another in a cycle (top-level modules, and the
//! use cases inside src/service/), or when the library imports the client
//! tree. The layers are declared once, in docs/ARCHITECTURE.md ("Layers").
//!
//! Files are read as text with a small lexer of our own (no `syn`, no
//! compilation): comments and string literals are dropped first, so a doc
//! comment that mentions `crate::state` is not an import.

mod graph;
mod lexer;
mod paths;
mod selftest;
mod table;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use graph::Graph;
use table::Layers;

/// One source file of the library or the binary, with its module path:
/// src/service/tokens/mod.rs is `["service", "tokens"]`.
struct SourceFile {
    rel: String,
    module: Vec<String>,
    text: String,
}

/// An import of one module by another, where it is written.
struct Site {
    file: String,
    line: usize,
    written: String,
}

type Sites = BTreeMap<(String, String), Vec<Site>>;

#[derive(Default)]
struct Findings {
    violations: Vec<String>,
    top: Sites,
    service: Sites,
}

/// Every violation in the crate whose root is `root` (src/ and the
/// markdown of the layer table), one line each (a cycle takes several).
pub fn check(root: &Path, table_markdown: &str) -> Vec<String> {
    let layers = match table::parse(table_markdown) {
        Ok(layers) => layers,
        Err(e) => return vec![format!("docs/ARCHITECTURE.md: {e}")],
    };
    let src = root.join("src");
    let files = read_tree(&src, &src);
    let modules: BTreeSet<Vec<String>> = files
        .iter()
        .flat_map(|f| (1..=f.module.len()).map(|n| f.module[..n].to_vec()))
        .collect();
    let lib_text = fs::read_to_string(src.join("lib.rs")).unwrap_or_default();
    let library = declared_modules(&lib_text);
    // The binary's own tree (modules lib.rs does not declare) and the
    // table's client row: only src/main.rs and that tree may use them.
    let mut client: BTreeSet<String> = layers.client.clone();
    client.extend(
        modules
            .iter()
            .filter(|m| m.len() == 1 && !library.contains_key(&m[0]))
            .map(|m| m[0].clone()),
    );
    let mut findings = Findings::default();
    check_declarations(&library, &layers, &client, &mut findings.violations);
    for file in files.iter().filter(|f| {
        let top = &f.module[0];
        library.contains_key(top) && !client.contains(top)
    }) {
        check_file(file, &modules, &layers, &client, &mut findings);
    }
    report_cycles("top-level modules", &findings.top, &mut findings.violations);
    report_cycles("src/service/", &findings.service, &mut findings.violations);
    findings.violations
}

/// lib.rs: what it declares must be in the table, and never the client.
fn check_declarations(
    library: &BTreeMap<String, usize>,
    layers: &Layers,
    client: &BTreeSet<String>,
    violations: &mut Vec<String>,
) {
    for (name, line) in library {
        if client.contains(name) {
            violations.push(format!(
                "src/lib.rs:{line} declares `{name}`, which is in the client tree: \
                 it belongs to the binary (src/main.rs), not the library"
            ));
        } else if !layers.layer_of.contains_key(name) {
            violations.push(format!(
                "src/lib.rs:{line} declares `{name}`, which has no layer in docs/ARCHITECTURE.md"
            ));
        }
    }
}

fn check_file(
    file: &SourceFile,
    modules: &BTreeSet<Vec<String>>,
    layers: &Layers,
    client: &BTreeSet<String>,
    findings: &mut Findings,
) {
    let from = &file.module[0];
    let is_module = |path: &[String]| modules.contains(path);
    for r in paths::references(&file.text, &file.module, &is_module) {
        let Some(to) = r.path.first() else { continue };
        if !modules.contains(&r.path[..1]) {
            continue; // an item at the crate root, not a module
        }
        let site = Site {
            file: file.rel.clone(),
            line: r.line,
            written: r.written.clone(),
        };
        if to == from {
            if from == "service" {
                if let Some(edge) = service_edge(&file.module, &r.path, modules) {
                    findings.service.entry(edge).or_default().push(site);
                }
            }
            continue;
        }
        if client.contains(to) {
            let layer = layers.layer_of[from];
            findings.violations.push(format!(
                "{}:{} imports the client tree ({to}) from layer {layer}: {}",
                site.file, site.line, site.written
            ));
        } else if let (Some(&n), Some(&m)) = (layers.layer_of.get(to), layers.layer_of.get(from)) {
            if n > m {
                findings.violations.push(format!(
                    "{}:{} imports {to} (layer {n}) from layer {m}: {}",
                    site.file, site.line, site.written
                ));
            }
        }
        findings
            .top
            .entry((from.clone(), to.clone()))
            .or_default()
            .push(site);
    }
}

/// The use cases of src/service/ by name (`tokens`, `caller_auth`), the
/// items of src/service/mod.rs itself as `mod.rs`; `None` within one.
fn service_edge(
    from: &[String],
    to: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> Option<(String, String)> {
    let node = |path: &[String]| match path {
        [_, sub, ..] if modules.contains(&path[..2]) => sub.clone(),
        _ => "mod.rs".to_owned(),
    };
    let (a, b) = (node(from), node(to));
    (a != b).then_some((a, b))
}

fn report_cycles(what: &str, sites: &Sites, violations: &mut Vec<String>) {
    let mut graph = Graph::new();
    for (from, to) in sites.keys() {
        graph.entry(from.clone()).or_default().insert(to.clone());
    }
    for tangle in graph::tangles(&graph) {
        let cycle = &tangle.example;
        let mut text = format!(
            "import cycle among {what}: {} import one another, e.g. {}",
            tangle.members.join(", "),
            cycle.join(" → ")
        );
        for pair in cycle.windows(2) {
            let at = &sites[&(pair[0].clone(), pair[1].clone())];
            let first = &at[0];
            text += &format!(
                "\n    {} → {}: {}:{} {} ({} site(s))",
                pair[0],
                pair[1],
                first.file,
                first.line,
                first.written,
                at.len()
            );
        }
        violations.push(text);
    }
}

/// `mod name;` declarations of lib.rs, with their lines.
fn declared_modules(lib: &str) -> BTreeMap<String, usize> {
    let toks = lexer::tokens(lib);
    toks.windows(3)
        .filter(|w| w[0].text == "mod" && w[1].kind == lexer::Kind::Ident && w[2].text == ";")
        .map(|w| (w[1].text.clone(), w[1].line))
        .collect()
}

/// Every .rs file under `dir` except the crate roots and src/bin/.
fn read_tree(src: &Path, dir: &Path) -> Vec<SourceFile> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    let mut out = Vec::new();
    for path in entries {
        let rel = path.strip_prefix(src).expect("under src/").to_path_buf();
        if path.is_dir() {
            if rel != Path::new("bin") {
                out.extend(read_tree(src, &path));
            }
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") || dir == src && is_crate_root(&rel) {
            continue;
        }
        let mut module: Vec<String> = rel
            .with_extension("")
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        if module.last().is_some_and(|m| m == "mod") {
            module.pop();
        }
        out.push(SourceFile {
            rel: Path::new("src").join(&rel).display().to_string(),
            module,
            text: fs::read_to_string(&path).expect("a readable source file"),
        });
    }
    out
}

fn is_crate_root(rel: &Path) -> bool {
    rel == Path::new("lib.rs") || rel == Path::new("main.rs")
}

#[test]
fn src_follows_the_layer_table_of_docs_architecture_md() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = fs::read_to_string(root.join("docs/ARCHITECTURE.md"))
        .expect("docs/ARCHITECTURE.md declares the layers");
    let violations = check(root, &table);
    assert!(
        violations.is_empty(),
        "{} layering violation(s); the layers are in docs/ARCHITECTURE.md, \"Layers\":\n{}",
        violations.len(),
        violations.join("\n")
    );
}
