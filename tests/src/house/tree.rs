//! Reads a crate's sources into its files and the imports between them:
//! the module tree from `mod` declarations, every path its non-test code
//! names, each resolved through `use` and `pub use` to the file that
//! defines what it names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use syn::visit::Visit;

/// A crate as files and imports.
#[derive(Debug, Default)]
pub struct Crate {
    /// Its files, the root first.
    pub files: Vec<File>,
    /// Imports between files (indices into `files`): the first path seen.
    pub edges: BTreeMap<(usize, usize), String>,
}

/// One source file.
#[derive(Debug)]
pub struct File {
    /// Where it is.
    pub path: PathBuf,
    /// Its lines outside `#[cfg(test)]` items.
    pub lines: usize,
    /// Its functions longer than `read`'s `max_fn_lines`: (name, lines).
    pub long_fns: Vec<(String, usize)>,
}

/// Reads the crate whose root file is `root`, noting functions longer than
/// `max_fn_lines`; a file that cannot be read or parsed is named in `errors`
/// (and left out).
pub fn read(root: &Path, max_fn_lines: usize, errors: &mut Vec<String>) -> Crate {
    let mut tree = Tree {
        max_fn_lines,
        ..Tree::default()
    };
    if let Some(r) = tree.load(root, errors) {
        tree.root = r;
    }
    let edges = tree.edges();
    Crate {
        files: tree.files,
        edges,
    }
}

/// A module: a file, or an inline `mod name { … }` within one.
#[derive(Debug, Default)]
struct Module {
    /// Index of its file in `Tree::files`.
    file: usize,
    parent: Option<usize>,
    children: BTreeMap<String, usize>,
    /// Names bound by `use` (the name, and the path it stands for).
    uses: BTreeMap<String, Vec<String>>,
    /// `use path::*`: the paths.
    globs: Vec<Vec<String>>,
    /// Paths named in code (not `use`), to resolve once the tree is known.
    paths: Vec<Vec<String>>,
}

#[derive(Debug, Default)]
struct Tree {
    modules: Vec<Module>,
    files: Vec<File>,
    root: usize,
    max_fn_lines: usize,
}

impl Tree {
    /// Reads `file` as a module (and the child files it declares); returns
    /// its index.
    fn load(&mut self, file: &Path, errors: &mut Vec<String>) -> Option<usize> {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{}: {e}", file.display()));
                return None;
            }
        };
        let ast = match syn::parse_file(&text) {
            Ok(a) => a,
            Err(e) => {
                errors.push(format!("{}: {e}", file.display()));
                return None;
            }
        };
        let test_lines: usize = ast
            .items
            .iter()
            .filter(|i| is_test(attrs(i)))
            .map(lines_of)
            .sum();
        let total = text.lines().count();
        let file_idx = self.files.len();
        let mut long_fns = Vec::new();
        LongFns {
            max: self.max_fn_lines,
            out: &mut long_fns,
        }
        .visit_file(&ast);
        self.files.push(File {
            path: file.to_path_buf(),
            lines: total - test_lines.min(total),
            long_fns,
        });
        let dir = child_dir(file);
        let m = self.modules.len();
        self.modules.push(Module {
            file: file_idx,
            ..Module::default()
        });
        self.load_items(m, &ast.items, &dir, errors);
        Some(m)
    }

    fn load_items(&mut self, m: usize, items: &[syn::Item], dir: &Path, errors: &mut Vec<String>) {
        for item in items {
            if is_test(attrs(item)) {
                continue;
            }
            match item {
                syn::Item::Mod(md) => {
                    let name = md.ident.to_string();
                    let child = match &md.content {
                        None => {
                            let flat = dir.join(format!("{name}.rs"));
                            let nested = dir.join(&name).join("mod.rs");
                            let path = if flat.exists() { flat } else { nested };
                            match self.load(&path, errors) {
                                Some(c) => c,
                                None => continue,
                            }
                        }
                        Some((_, inner)) => {
                            let c = self.modules.len();
                            let file = self.modules[m].file;
                            self.modules.push(Module {
                                file,
                                ..Module::default()
                            });
                            self.load_items(c, inner, &dir.join(&name), errors);
                            c
                        }
                    };
                    self.modules[child].parent = Some(m);
                    self.modules[m].children.insert(name, child);
                }
                syn::Item::Use(u) => {
                    let mut out = Vec::new();
                    flatten_use(&u.tree, &mut Vec::new(), &mut out);
                    for (name, path) in out {
                        match name {
                            Some(n) if n != "_" => {
                                self.modules[m].uses.insert(n, path);
                            }
                            Some(_) => self.modules[m].paths.push(path),
                            None => self.modules[m].globs.push(path),
                        }
                    }
                }
                other => {
                    let mut v = PathCollector { paths: Vec::new() };
                    v.visit_item(other);
                    self.modules[m].paths.extend(v.paths);
                }
            }
        }
    }

    /// The module a path names, starting from module `m`, and whether the
    /// whole path was walked (`Some(target)`), or `None` when it leaves the
    /// crate or names nothing of it.
    fn resolve(&self, m: usize, path: &[String], depth: usize) -> Option<usize> {
        if depth > 16 || path.is_empty() {
            return None;
        }
        let (mut cur, rest) = match path[0].as_str() {
            "crate" => (self.root, &path[1..]),
            "self" => (m, &path[1..]),
            "super" => {
                let mut cur = m;
                let mut i = 0;
                while path.get(i).map(String::as_str) == Some("super") {
                    cur = self.modules[cur].parent?;
                    i += 1;
                }
                (cur, &path[i..])
            }
            first => {
                if let Some(&c) = self.modules[m].children.get(first) {
                    (c, &path[1..])
                } else if let Some(target) = self.modules[m].uses.get(first) {
                    if target.len() == 1 && target[0] == first {
                        return None; // `use tokio;`: an extern crate
                    }
                    let mut full = target.clone();
                    full.extend_from_slice(&path[1..]);
                    return self.resolve(m, &full, depth + 1);
                } else {
                    return None; // an extern crate, a prelude name or a local item
                }
            }
        };
        for (i, seg) in rest.iter().enumerate() {
            if let Some(&c) = self.modules[cur].children.get(seg) {
                cur = c;
                continue;
            }
            if let Some(target) = self.modules[cur].uses.get(seg) {
                let mut full = target.clone();
                full.extend_from_slice(&rest[i + 1..]);
                return self.resolve(cur, &full, depth + 1).or(Some(cur));
            }
            for glob in &self.modules[cur].globs {
                let mut full = glob.clone();
                full.extend_from_slice(&rest[i..]);
                if let Some(t) = self.resolve(cur, &full, depth + 1) {
                    if self.modules[t].file != self.modules[cur].file || t != cur {
                        return Some(t);
                    }
                }
            }
            return Some(cur); // an item defined in `cur`
        }
        Some(cur)
    }

    /// The imports between files: (from, to) -> the first path seen.
    fn edges(&self) -> BTreeMap<(usize, usize), String> {
        let mut edges = BTreeMap::new();
        for (m, module) in self.modules.iter().enumerate() {
            let named = module
                .uses
                .values()
                .chain(&module.globs)
                .chain(&module.paths);
            for path in named {
                let Some(t) = self.resolve(m, path, 0) else {
                    continue;
                };
                let (from, to) = (module.file, self.modules[t].file);
                if from != to {
                    edges.entry((from, to)).or_insert_with(|| path.join("::"));
                }
            }
        }
        edges
    }
}

/// Where the files of a module's children live: next to `lib.rs`, `main.rs`
/// and `mod.rs`, else in the folder named after the file.
fn child_dir(file: &Path) -> PathBuf {
    let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    match file.file_stem().and_then(|s| s.to_str()) {
        Some("lib" | "main" | "mod") => dir,
        Some(stem) => dir.join(stem),
        None => dir,
    }
}

/// `use a::{b, c::d as e, f::*}` as (bound name, path) pairs; `None` for a
/// glob.
fn flatten_use(
    tree: &syn::UseTree,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Option<String>, Vec<String>)>,
) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten_use(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            if name == "self" {
                out.push((prefix.last().cloned(), prefix.clone()));
            } else {
                let mut path = prefix.clone();
                path.push(name.clone());
                out.push((Some(name), path));
            }
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            let ident = r.ident.to_string();
            if ident != "self" {
                path.push(ident);
            }
            out.push((Some(r.rename.to_string()), path));
        }
        syn::UseTree::Glob(_) => out.push((None, prefix.clone())),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                flatten_use(t, prefix, out);
            }
        }
    }
}

/// Collects every path of two or more segments (`a::b`), and the ones that
/// start with `crate`, `self` or `super`.
struct PathCollector {
    paths: Vec<Vec<String>>,
}

impl<'ast> Visit<'ast> for PathCollector {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.segments.len() >= 2 {
            self.paths
                .push(p.segments.iter().map(|s| s.ident.to_string()).collect());
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {
        // Inline modules are walked as modules of their own.
    }

    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {}
}

/// Collects the functions and methods over `max` lines, skipping
/// `#[cfg(test)]` code.
struct LongFns<'a> {
    max: usize,
    out: &'a mut Vec<(String, usize)>,
}

impl LongFns<'_> {
    fn measure(&mut self, name: &syn::Ident, sig: &syn::Signature, block: &syn::Block) {
        use syn::spanned::Spanned;
        let lines = block.span().end().line + 1 - sig.span().start().line;
        if lines > self.max {
            self.out.push((name.to_string(), lines));
        }
    }
}

impl<'ast> Visit<'ast> for LongFns<'_> {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_test(&f.attrs) {
            self.measure(&f.sig.ident, &f.sig, &f.block);
            syn::visit::visit_item_fn(self, f);
        }
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_test(&f.attrs) {
            self.measure(&f.sig.ident, &f.sig, &f.block);
            syn::visit::visit_impl_item_fn(self, f);
        }
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        // A child file is measured when it is loaded; an inline one here.
        if !is_test(&m.attrs) && m.content.is_some() {
            syn::visit::visit_item_mod(self, m);
        }
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if !is_test(&i.attrs) {
            syn::visit::visit_item_impl(self, i);
        }
    }
}

fn attrs(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::ExternCrate(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::ForeignMod(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Macro(i) => &i.attrs,
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::TraitAlias(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Union(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// `#[cfg(test)]`, alone or inside `all(…)`.
fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg") && {
            let text = a
                .meta
                .require_list()
                .map(|l| l.tokens.to_string())
                .unwrap_or_default();
            text == "test"
                || (text.starts_with("all") && text.contains("test") && !text.contains("not"))
        }
    })
}

/// The lines an item spans, its attributes and doc comments included.
fn lines_of(item: &syn::Item) -> usize {
    use syn::spanned::Spanned;
    let end = item.span().end().line;
    let start = attrs(item)
        .iter()
        .map(|a| a.span().start().line)
        .chain([item.span().start().line])
        .min()
        .unwrap_or(end);
    end + 1 - start
}
