//! The paths a file uses into its own crate, resolved from the crate root:
//! `crate::a::b`, `super::…`, `self::…`, a child module's name, `use`
//! trees (`crate::{a, b::{c, d}}`), and serde's `with = "crate::…"`
//! strings, which name functions as surely as code does.

use crate::lexer::{tokens, Kind, Token};

#[derive(Debug, Clone)]
pub struct Reference {
    pub line: usize,
    /// From the crate root: `["audit", "Auditor"]`.
    pub path: Vec<String>,
    /// As written: `crate::audit::Auditor`.
    pub written: String,
}

/// `module` is the file's module path (`["service", "tokens"]`);
/// `is_module` says whether a module path exists, so that a bare
/// `child::item` can be told from an external crate's `serde::Serialize`.
pub fn references(
    source: &str,
    module: &[String],
    is_module: &dyn Fn(&[String]) -> bool,
) -> Vec<Reference> {
    let toks = tokens(source);
    let mut out = Vec::new();
    // Inline modules (`mod tests { … }`): their name and the brace depth
    // inside them, so `super::` inside one means the file's own module.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let current: Vec<String> = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(name, _)| name.clone()))
            .collect();
        let t = &toks[i];
        match t.kind {
            Kind::Open => depth += 1,
            Kind::Close => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Kind::Ident if t.text == "mod" => {
                if let (Some(name), Some(open)) = (toks.get(i + 1), toks.get(i + 2)) {
                    if name.kind == Kind::Ident && open.kind == Kind::Open {
                        inline.push((name.text.clone(), depth + 1));
                    }
                }
            }
            Kind::Str => out.extend(string_path(t, &current)),
            Kind::Ident if starts_path(&toks, i, &current, is_module) => {
                let (trees, next) = parse_tree(&toks, i);
                out.extend(trees.into_iter().filter_map(|(written, line)| {
                    resolve(&written, &current).map(|path| Reference {
                        line,
                        path,
                        written: as_written(&written),
                    })
                }));
                i = next.max(i + 1);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn starts_path(
    toks: &[Token],
    i: usize,
    current: &[String],
    is_module: &dyn Fn(&[String]) -> bool,
) -> bool {
    let followed = toks.get(i + 1).is_some_and(|t| t.kind == Kind::PathSep);
    let continues = i > 0 && matches!(toks[i - 1].kind, Kind::PathSep);
    let after_dot = i > 0 && toks[i - 1].text == ".";
    if !followed || continues || after_dot {
        return false;
    }
    let name = toks[i].text.as_str();
    matches!(name, "crate" | "super" | "self") || {
        let mut child = current.to_vec();
        child.push(name.to_owned());
        is_module(&child)
    }
}

/// A whole string literal that is a path, as serde's `with = "…"` takes.
fn string_path(t: &Token, current: &[String]) -> Option<Reference> {
    let inner = tokens(&t.text);
    let is_path = inner.len() >= 3
        && matches!(inner[0].text.as_str(), "crate" | "super" | "self")
        && inner
            .iter()
            .all(|x| matches!(x.kind, Kind::Ident | Kind::PathSep));
    if !is_path {
        return None;
    }
    let written: Vec<String> = inner
        .iter()
        .filter(|x| x.kind == Kind::Ident)
        .map(|x| x.text.clone())
        .collect();
    let path = resolve(&written, current)?;
    Some(Reference {
        line: t.line,
        path,
        written: as_written(&written),
    })
}

/// `crate::domain::{self}` reads as `crate::domain`.
fn as_written(segments: &[String]) -> String {
    let end = segments.len() - usize::from(segments.last().is_some_and(|s| s == "self"));
    segments[..end].join("::")
}

type Trees = Vec<(Vec<String>, usize)>;

/// One path or `use` tree from `toks[i]`: every leaf as its segments and
/// the line of its last segment, and the index after the tree.
fn parse_tree(toks: &[Token], mut i: usize) -> (Trees, usize) {
    let mut prefix: Vec<String> = Vec::new();
    let mut line = toks[i].line;
    loop {
        match toks.get(i).map(|t| &t.kind) {
            Some(Kind::Ident) => {
                prefix.push(toks[i].text.clone());
                line = toks[i].line;
                i += 1;
            }
            Some(Kind::Star) => return (vec![(prefix, line)], i + 1),
            Some(Kind::Open) => return parse_group(toks, i + 1, &prefix),
            _ => return (vec![(prefix, line)], i),
        }
        if toks.get(i).is_some_and(|t| t.kind == Kind::PathSep) {
            i += 1;
        } else {
            return (vec![(prefix, line)], i);
        }
    }
}

/// `{a, b::c, self, d as e}` after `prefix::`; `i` is just inside the brace.
fn parse_group(toks: &[Token], mut i: usize, prefix: &[String]) -> (Trees, usize) {
    let mut out = Vec::new();
    while let Some(t) = toks.get(i) {
        match t.kind {
            Kind::Close => return (out, i + 1),
            Kind::Comma => i += 1,
            _ => {
                let (leaves, next) = parse_tree(toks, i);
                for (leaf, line) in leaves {
                    out.push((prefix.iter().cloned().chain(leaf).collect(), line));
                }
                i = next.max(i + 1);
                // `as name` and anything else up to the next item.
                while toks
                    .get(i)
                    .is_some_and(|t| !matches!(t.kind, Kind::Comma | Kind::Close))
                {
                    i += 1;
                }
            }
        }
    }
    (out, i)
}

/// The path from the crate root, or `None` when `super` climbs above it.
fn resolve(written: &[String], current: &[String]) -> Option<Vec<String>> {
    let mut base: Vec<String> = Vec::new();
    let mut rest = written;
    match written.first().map(String::as_str) {
        Some("crate") => rest = &written[1..],
        Some("self") => {
            base = current.to_vec();
            rest = &written[1..];
        }
        Some("super") => {
            base = current.to_vec();
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => base = current.to_vec(),
    }
    base.extend(rest.iter().filter(|s| *s != "self").cloned());
    Some(base)
}
