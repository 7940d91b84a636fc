//! The shape of the source, checked: no function outside tests over 120 lines, no file of core's
//! `jobs/` over 800 lines, the CLI's `main.rs` at most 400 lines (docs/architecture.md says why).
//! Core's layer rules are checked in core itself (`crates/core/src/layers.rs`).
//!
//! Lengths are counted from a function's `fn` line (its attributes and doc comment excluded) to
//! its closing brace, on the parsed source (`syn`), so strings and comments holding braces do not
//! confuse it. Test code (`#[cfg(test)]` modules, `#[test]` functions, `tests/` directories) is
//! not measured.

use std::path::{Path, PathBuf};

use syn::spanned::Spanned;
use syn::visit::Visit;

const MAX_FN_LINES: usize = 120;
const MAX_JOBS_FILE_LINES: usize = 800;
const MAX_CLI_MAIN_LINES: usize = 400;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

/// Every `.rs` file under `dir`, recursively, skipping `tests/` directories.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read a source directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "tests") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The production sources: every crate's and every function's `src/`.
fn sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for parent in ["crates", "functions"] {
        for entry in std::fs::read_dir(root().join(parent)).expect("read crates/ and functions/") {
            let src = entry.expect("a directory entry").path().join("src");
            if src.is_dir() {
                files.extend(rust_files(&src));
            }
        }
    }
    assert!(files.len() > 50, "found the sources ({} files)", files.len());
    files
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        let path = attr.path();
        path.is_ident("test")
            || path.segments.last().is_some_and(|s| s.ident == "test" && path.segments.len() == 2)
            || (path.is_ident("cfg") && attr.meta.require_list().is_ok_and(|l| l.tokens.to_string() == "test"))
    })
}

/// (name, first line, lines) of every function outside test code.
#[derive(Default)]
struct Functions(Vec<(String, usize, usize)>);

impl Functions {
    fn record(&mut self, name: &syn::Ident, sig: &syn::Signature, body: &syn::Block) {
        let first = sig.fn_token.span().start().line;
        let last = body.span().end().line;
        self.0.push((name.to_string(), first, last - first + 1));
    }
}

impl<'ast> Visit<'ast> for Functions {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if !is_test_only(&item.attrs) {
            syn::visit::visit_item_mod(self, item);
        }
    }
    fn visit_item_impl(&mut self, item: &'ast syn::ItemImpl) {
        if !is_test_only(&item.attrs) {
            syn::visit::visit_item_impl(self, item);
        }
    }
    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        if !is_test_only(&item.attrs) {
            self.record(&item.sig.ident, &item.sig, &item.block);
            syn::visit::visit_item_fn(self, item);
        }
    }
    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        if !is_test_only(&item.attrs) {
            self.record(&item.sig.ident, &item.sig, &item.block);
            syn::visit::visit_impl_item_fn(self, item);
        }
    }
    fn visit_trait_item_fn(&mut self, item: &'ast syn::TraitItemFn) {
        if let Some(body) = &item.default {
            self.record(&item.sig.ident, &item.sig, body);
        }
        syn::visit::visit_trait_item_fn(self, item);
    }
}

/// (file, function, first line, lines) of every function in `files`, longest first.
fn functions(files: &[PathBuf]) -> Vec<(String, String, usize, usize)> {
    let mut all = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(file).expect("read a source file");
        let parsed = syn::parse_file(&source).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut found = Functions::default();
        found.visit_file(&parsed);
        let name = file.strip_prefix(root()).expect("under the workspace").display().to_string();
        all.extend(found.0.into_iter().map(|(f, line, len)| (name.clone(), f, line, len)));
    }
    all.sort_by_key(|f| std::cmp::Reverse(f.3));
    all
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).expect("read a file").lines().count()
}

#[test]
fn no_function_outside_tests_is_over_120_lines() {
    let all = functions(&sources());
    let over: Vec<String> = all
        .iter()
        .filter(|(_, _, _, len)| *len > MAX_FN_LINES)
        .map(|(file, f, line, len)| format!("{file}:{line} {f}: {len} lines"))
        .collect();
    assert!(over.is_empty(), "functions over {MAX_FN_LINES} lines (split them):\n{}", over.join("\n"));
    // The measure itself works: the longest function is found and has a plausible length.
    let (file, f, _, len) = &all[0];
    println!("longest function: {file} {f}, {len} lines");
    assert!(*len > 40, "the longest function ({f}) is {len} lines: is the measure broken?");
}

#[test]
fn the_measure_counts_from_fn_to_the_closing_brace_and_skips_tests() {
    let source = "/// doc\n#[inline]\nfn a() {\n    let s = \"}}}\";\n    // }\n}\n\
                  #[cfg(test)]\nmod tests {\n    fn long() {\n\n\n\n    }\n}\n\
                  impl X {\n    fn b(&self)\n    {\n    }\n}\n";
    let mut found = Functions::default();
    found.visit_file(&syn::parse_file(source).unwrap());
    assert_eq!(found.0, vec![("a".to_string(), 3, 4), ("b".to_string(), 16, 3)]);
}

#[test]
fn no_file_of_the_jobs_is_over_800_lines() {
    let files = rust_files(&root().join("crates/core/src/jobs"));
    assert!(files.len() >= 3, "found the jobs");
    let over: Vec<String> = files
        .iter()
        .map(|f| (f, lines(f)))
        .filter(|(_, n)| *n > MAX_JOBS_FILE_LINES)
        .map(|(f, n)| format!("{}: {n} lines", f.display()))
        .collect();
    assert!(over.is_empty(), "jobs files over {MAX_JOBS_FILE_LINES} lines:\n{}", over.join("\n"));
}

#[test]
fn the_cli_main_only_dispatches() {
    let main = lines(&root().join("crates/cli/src/main.rs"));
    assert!(main <= MAX_CLI_MAIN_LINES, "crates/cli/src/main.rs is {main} lines (at most {MAX_CLI_MAIN_LINES})");
}
