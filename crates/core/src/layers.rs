//! The layer table of `lib.rs`'s doc, enforced. Every `crate::` path in `src/` (in `use`
//! declarations, in code, in macro arguments; `super::` paths resolved) names the top-level
//! module it reaches; a module may reach only the modules of the rows below its own. Every
//! top-level module, and every file and folder of `src/`, must be in the table, and each folder's
//! `mod.rs` names its submodules in its doc. Tests are code like any other: they obey the layers too.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use syn::spanned::Spanned;
use syn::visit::{self, Visit};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The table's rows, top first: the modules each names (as ``[`module`]`` links).
fn rows(lib: &str) -> Vec<Vec<String>> {
    table(lib)
        .map(|row| {
            let modules = row.split('|').nth(1).unwrap_or_default();
            modules
                .split(',')
                .filter_map(|m| m.trim().strip_prefix("[`")?.strip_suffix("`]"))
                .map(String::from)
                .collect()
        })
        .collect()
}

/// The table's rows as text, top first.
fn table(lib: &str) -> impl Iterator<Item = &str> {
    lib.lines().filter_map(|line| line.strip_prefix("//! |")).skip(2) // the header and the `|---|` line
}

/// Whether each row is *wiring*: its modules are named only by the cold start (the top row).
fn wiring(lib: &str) -> Vec<bool> {
    table(lib).map(|row| row.split('|').next().unwrap_or_default().contains("*wiring*")).collect()
}

/// The modules a file declares (`mod name;`, `pub mod name;`), except those only for tests.
fn declared(file: &syn::File) -> Vec<String> {
    file.items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Mod(m) if m.content.is_none() && !is_test_only(&m.attrs) => Some(m.ident.to_string()),
            _ => None,
        })
        .collect()
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && a.meta.require_list().is_ok_and(|l| l.tokens.to_string() == "test"))
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The module path of a file of `src/`: `jobs/sync.rs` is `["jobs", "sync"]`, `ports/mod.rs` is `["ports"]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    if last != "mod.rs" {
        parts.push(last.trim_end_matches(".rs").to_string());
    }
    parts
}

/// The top-level modules one file reaches through `crate::` and `super::` paths, with their lines.
struct Reach {
    /// The module the code being visited is in (the file's path, then inline modules).
    at: Vec<String>,
    found: Vec<(String, usize)>,
}

impl Reach {
    /// The top-level module a path starting with `segments` reaches, if it leaves the file's own.
    fn resolve(&mut self, segments: &[String], line: usize) {
        let target = match segments.first().map(String::as_str) {
            Some("crate") => segments.get(1).cloned(),
            Some("super") => {
                let ups = segments.iter().take_while(|s| *s == "super").count();
                let base = &self.at[..self.at.len().saturating_sub(ups)];
                base.first().cloned().or_else(|| segments.get(ups).cloned())
            }
            _ => None,
        };
        if let Some(target) = target {
            self.found.push((target, line));
        }
    }

    /// Whether `segments` (`crate`, or enough `super`s) is the crate root.
    fn is_root(&self, segments: &[String]) -> bool {
        segments == ["crate"] || (segments.iter().all(|s| s == "super") && segments.len() >= self.at.len())
    }

    fn use_tree(&mut self, tree: &syn::UseTree, prefix: &mut Vec<String>, line: usize) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(&p.tree, prefix, line);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.resolve(&[&prefix[..], &[n.ident.to_string()]].concat(), line),
            syn::UseTree::Rename(r) => self.resolve(&[&prefix[..], &[r.ident.to_string()]].concat(), line),
            // A glob of the crate root reaches `*`, which no row lists: what it brings in could
            // be named without a path the table can check.
            syn::UseTree::Glob(_) if self.is_root(prefix) => self.found.push(("*".to_string(), line)),
            syn::UseTree::Glob(_) => self.resolve(prefix, line),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.use_tree(t, prefix, line)),
        }
    }
}

impl<'ast> Visit<'ast> for Reach {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.at.push(m.ident.to_string());
        visit::visit_item_mod(self, m);
        self.at.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&u.tree, &mut Vec::new(), u.span().start().line);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.resolve(&segments, p.span().start().line);
        visit::visit_path(self, p);
    }

    /// Macro arguments are tokens, not paths: `crate :: a :: b` and `super :: …` runs are looked
    /// for in them and resolved as paths.
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        let tokens = m.tokens.to_string();
        let words: Vec<&str> = tokens.split_whitespace().collect();
        let mut i = 0;
        while i < words.len() {
            let starts = matches!(words[i], "crate" | "super") && (i == 0 || words[i - 1] != "::");
            if !starts {
                i += 1;
                continue;
            }
            let mut segments = vec![words[i].to_string()];
            while i + 2 < words.len() && words[i + 1] == "::" {
                let ident = words[i + 2].trim_end_matches(|c: char| !c.is_alphanumeric() && c != '_');
                if ident.is_empty() {
                    break;
                }
                segments.push(ident.to_string());
                i += 2;
            }
            self.resolve(&segments, m.span().start().line);
            i += 1;
        }
        visit::visit_macro(self, m);
    }
}

/// What breaks the table: upward or sideways paths, and modules or files it does not list.
fn problems() -> Vec<String> {
    problems_in(&src())
}

/// [`problems`] of the crate whose sources are in `src`.
fn problems_in(src: &Path) -> Vec<String> {
    let lib = fs::read_to_string(src.join("lib.rs")).expect("read lib.rs");
    let rows = rows(&lib);
    let wiring = wiring(&lib);
    let row_of: BTreeMap<&str, usize> =
        rows.iter().enumerate().flat_map(|(i, row)| row.iter().map(move |m| (m.as_str(), i))).collect();
    let lib_file = syn::parse_file(&lib).expect("parse lib.rs");
    let modules = declared(&lib_file);
    let mut problems = Vec::new();
    for module in &modules {
        if !row_of.contains_key(module.as_str()) {
            problems.push(format!("lib.rs: module {module} is not in the layer table"));
        }
    }
    for module in row_of.keys() {
        if !modules.iter().any(|m| m == module) {
            problems.push(format!("lib.rs: the layer table lists {module}, which lib.rs does not declare"));
        }
    }
    let test_only: Vec<String> = lib_file
        .items
        .iter()
        .filter_map(|i| match i {
            syn::Item::Mod(m) if is_test_only(&m.attrs) => Some(m.ident.to_string()),
            _ => None,
        })
        .collect();
    // Every file is a module some file declares (a leftover file that nothing declares is no code).
    let mut files = Vec::new();
    let mut declared_paths: Vec<Vec<String>> = modules.iter().map(|m| vec![m.clone()]).collect();
    declared_paths.extend(test_only.iter().map(|m| vec![m.clone()]));
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).expect("under src/").to_path_buf();
        let text = fs::read_to_string(&file).expect("read a source file");
        let parsed = syn::parse_file(&text).unwrap_or_else(|e| panic!("parse {}: {e}", relative.display()));
        let path = module_path(&relative);
        if relative != Path::new("lib.rs") {
            declared_paths.extend(declared(&parsed).into_iter().map(|sub| [&path[..], &[sub]].concat()));
        }
        files.push((relative, path, text, parsed));
    }
    for (relative, path, text, parsed) in &files {
        if relative == Path::new("lib.rs") || test_only.contains(&path[0]) {
            continue;
        }
        if !declared_paths.contains(path) {
            problems.push(format!("src/{}: no module declares it (not in the layer table)", relative.display()));
            continue;
        }
        if relative.ends_with("mod.rs") {
            problems.extend(undocumented(relative, text, parsed));
        }
        let own = &path[0];
        let mut reach = Reach { at: path.clone(), found: Vec::new() };
        reach.visit_file(parsed);
        for (target, line) in reach.found.into_iter().filter(|(target, _)| target != own) {
            let at = format!("{}:{line}", relative.display());
            match row_of.get(target.as_str()) {
                None => problems.push(format!(
                    "{at}: crate::{target} is not a module of the layer table (name the module, not a re-export)"
                )),
                Some(&row) if row <= row_of[own.as_str()] => {
                    problems.push(format!("{at}: {own} uses {target}, which is not in a layer below it"))
                }
                Some(&row) if wiring[row] && row_of[own.as_str()] != 0 => problems.push(format!(
                    "{at}: {own} uses {target}, which only the cold start names (reach it through a port)"
                )),
                Some(_) => {}
            }
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

/// A folder's `mod.rs` names each of its submodules in its doc.
fn undocumented(relative: &Path, text: &str, parsed: &syn::File) -> Vec<String> {
    let doc: String = text.lines().filter_map(|l| l.strip_prefix("//!")).collect::<Vec<_>>().join(" ");
    declared(parsed)
        .into_iter()
        .filter(|sub| !doc.contains(&format!("`{sub}`")))
        .map(|sub| format!("{}: the module doc does not name `{sub}`", relative.display()))
        .collect()
}

#[test]
fn every_module_uses_only_the_layers_below_it_and_is_in_the_table() {
    let problems = problems();
    assert!(problems.is_empty(), "the layer table in lib.rs and the code disagree:\n{}", problems.join("\n"));
}

#[test]
fn the_table_lists_every_layer_top_first() {
    let lib = fs::read_to_string(src().join("lib.rs")).unwrap();
    let rows = rows(&lib);
    assert_eq!(rows.first().map(Vec::as_slice), Some(&["runtime".to_string()][..]));
    assert_eq!(rows.last().map(Vec::as_slice), Some(&["error".to_string()][..]));
    assert!(rows.iter().all(|row| !row.is_empty()), "every row names its modules: {rows:?}");
    let wired: Vec<&String> = rows.iter().zip(wiring(&lib)).filter(|(_, w)| *w).flat_map(|(r, _)| r).collect();
    assert_eq!(wired, ["config", "aws"], "the adapters and the environment are wiring");
}

#[test]
fn paths_are_resolved_to_the_module_they_reach() {
    let code = "use crate::{a::X, b::{self, Y}};\nmod tests { use super::super::c::Z; fn f() { crate::d::g(); \
                assert!(crate::e::h()); } }";
    let mut reach = Reach { at: vec!["m".into()], found: Vec::new() };
    reach.visit_file(&syn::parse_file(code).unwrap());
    let reached: Vec<&str> = reach.found.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(reached, ["a", "b", "b", "c", "d", "e"]);
}

#[test]
fn the_checker_reports_each_way_to_break_the_table() {
    let dir = std::env::temp_dir().join(format!("appcreds-layers-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let files = [
        (
            "lib.rs",
            "//! | layer | modules | what |\n//! |---|---|---|\n//! | top | [`top`] | |\n\
             //! | middle | [`middle`] | |\n//! | adapters (*wiring*) | [`adapters`] | |\n\
             //! | bottom | [`bottom`], [`side`] | |\npub mod top;\npub mod middle;\npub mod adapters;\n\
             pub mod bottom;\npub mod side;\npub mod unlisted;\n",
        ),
        ("top.rs", "use crate::adapters::A;\n"),
        ("middle.rs", "use crate::top::T;\nuse crate::adapters::A;\nfn f() { assert!(super::top::g()); }\n"),
        ("adapters.rs", "use crate::bottom::B;\n"),
        ("bottom/mod.rs", "//! Holds `kept`.\npub mod kept;\npub mod forgotten;\n"),
        ("bottom/kept.rs", "use crate::side::S;\nuse crate::*;\n"),
        ("bottom/forgotten.rs", ""),
        ("bottom/stray.rs", ""),
        ("side.rs", ""),
        ("unlisted.rs", ""),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    let found = problems_in(&dir);
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        found,
        [
            "bottom/kept.rs:1: bottom uses side, which is not in a layer below it",
            "bottom/kept.rs:2: crate::* is not a module of the layer table (name the module, not a re-export)",
            "bottom/mod.rs: the module doc does not name `forgotten`",
            "lib.rs: module unlisted is not in the layer table",
            "middle.rs:1: middle uses top, which is not in a layer below it",
            "middle.rs:2: middle uses adapters, which only the cold start names (reach it through a port)",
            "middle.rs:3: middle uses top, which is not in a layer below it",
            "src/bottom/stray.rs: no module declares it (not in the layer table)",
        ]
    );
}
