//! The checker itself, on small trees written for each test: what it must
//! catch, and what it must not mistake for an import.

use std::fs;
use std::path::Path;

use crate::check;

const TABLE: &str = "
<!-- layers -->
| layer | modules | |
|---|---|---|
| 0 foundation | `domain` `clock` | (`state` in a note is not a module) |
| 1 storage | `store` | |
| 2 runtime | `audit` `keyring` | |
| 3 use cases | `service` | |
| client | `client` | |
<!-- /layers -->
";

const LIB: &str = "pub mod audit;\npub mod clock;\npub mod domain;\npub mod keyring;\n\
                   pub mod service;\npub mod store;\n";

/// Writes `files` (path under the crate root, contents) and checks them.
fn check_tree(files: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (path, text) in files {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().expect("a parent")).expect("directories");
        fs::write(&path, text).expect("a source file");
    }
    check(dir.path(), TABLE)
}

fn base<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut files = vec![
        ("src/lib.rs", LIB),
        ("src/main.rs", "use asapd::service; mod client;\n"),
        ("src/domain.rs", "pub struct Name;\n"),
        ("src/clock.rs", "use crate::domain::Name;\n"),
        ("src/store/mod.rs", "pub mod rows;\nuse crate::domain;\n"),
        ("src/store/rows.rs", "use super::super::clock;\n"),
        (
            "src/audit.rs",
            "use crate::{store::rows, domain::{self, Name}};\n",
        ),
        ("src/keyring.rs", "pub fn load() {}\n"),
        ("src/service/mod.rs", "pub mod tokens;\npub mod auth;\n"),
        ("src/service/auth.rs", "use crate::audit;\n"),
        ("src/service/tokens.rs", "use super::auth;\n"),
        (
            "src/client/mod.rs",
            "use crate::service; use asapd::audit;\n",
        ),
    ];
    files.extend_from_slice(extra);
    files
}

#[test]
fn a_tree_that_follows_the_table_passes() {
    assert_eq!(check_tree(&base(&[])), Vec::<String>::new());
}

#[test]
fn an_upward_import_is_named_with_its_file_line_and_layers() {
    let found = check_tree(&base(&[(
        "src/store/rows.rs",
        "use super::super::clock;\n\nfn f() -> crate::audit::Event { todo!() }\n",
    )]));
    assert_eq!(
        found[0],
        "src/store/rows.rs:3 imports audit (layer 2) from layer 1: crate::audit::Event"
    );
    // audit imports store, so the upward import also closes a cycle.
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[1].starts_with(
        "import cycle among top-level modules: audit, store import one another, \
         e.g. audit → store → audit"
    ));
}

#[test]
fn use_trees_super_and_serde_strings_are_imports() {
    let found = check_tree(&base(&[
        ("src/domain.rs", "use crate::{clock, store::{rows::Row}};\n"),
        (
            "src/clock.rs",
            "mod inner { use super::super::keyring::load; }\n",
        ),
        (
            "src/keyring.rs",
            "#[serde(with = \"crate::service::codec\")]\nstruct S;\n",
        ),
    ]));
    let upward: Vec<&String> = found
        .iter()
        .filter(|v| !v.starts_with("import cycle"))
        .collect();
    assert_eq!(
        upward,
        [
            "src/clock.rs:1 imports keyring (layer 2) from layer 0: super::super::keyring::load",
            "src/domain.rs:1 imports store (layer 1) from layer 0: crate::store::rows::Row",
            "src/keyring.rs:1 imports service (layer 3) from layer 2: crate::service::codec",
        ]
    );
}

#[test]
fn comments_strings_and_test_modules_are_not_imports() {
    let text = "//! Unlike `crate::service`, this …\n\
                /* crate::audit /* nested */ crate::service */\n\
                const S: &str = \"see crate::service::x\";\n\
                const R: &str = r#\"crate::audit \"quoted\" \"#;\n\
                const C: char = '{';\n\
                fn f<'a>(x: &'a str) -> &'a str { x }\n\
                #[cfg(test)]\nmod tests { use super::*; use super::Name; }\n";
    assert_eq!(
        check_tree(&base(&[("src/domain.rs", text)])),
        Vec::<String>::new()
    );
}

#[test]
fn cycles_are_found_within_a_layer_and_within_service() {
    let found = check_tree(&base(&[
        ("src/keyring.rs", "use crate::audit::Event;\n"),
        ("src/audit.rs", "pub fn f() { crate::keyring::load() }\n"),
        (
            "src/service/auth.rs",
            "use crate::service::tokens::Token;\n",
        ),
    ]));
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found[0].starts_with(
        "import cycle among top-level modules: audit, keyring import one another, \
         e.g. audit → keyring → audit\n    \
         audit → keyring: src/audit.rs:1 crate::keyring::load (1 site(s))"
    ));
    assert!(found[1].starts_with(
        "import cycle among src/service/: auth, tokens import one another, \
         e.g. auth → tokens → auth"
    ));
}

#[test]
fn the_library_must_not_declare_or_import_the_client_tree() {
    let found = check_tree(&base(&[
        (
            "src/lib.rs",
            &format!("{LIB}pub mod client;\npub mod error;\n"),
        ),
        ("src/audit.rs", "use crate::client::Args;\n"),
    ]));
    assert_eq!(
        found,
        [
            "src/lib.rs:7 declares `client`, which is in the client tree: \
             it belongs to the binary (src/main.rs), not the library",
            "src/lib.rs:8 declares `error`, which has no layer in docs/ARCHITECTURE.md",
            "src/audit.rs:1 imports the client tree (client) from layer 2: crate::client::Args",
        ]
    );
}

#[test]
fn the_table_must_be_there_and_name_each_module_once() {
    let dir = Path::new("/nonexistent");
    assert_eq!(
        check(dir, "no table here"),
        ["docs/ARCHITECTURE.md: no `<!-- layers -->` marker before the layer table"]
    );
    let twice = TABLE.replace("`keyring`", "`keyring` `domain`");
    assert_eq!(
        check(dir, &twice),
        ["docs/ARCHITECTURE.md: `domain` is in the layer table twice"]
    );
}
