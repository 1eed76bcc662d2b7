//! The house rules, checked over the sources: no module file longer than
//! [`MAX_MODULE_LINES`] outside `#[cfg(test)]`, no function longer than
//! [`MAX_FN_LINES`] unless [`LONG_FNS`] gives its reason, and no import
//! circle between the files of a crate. `tests/house.rs` runs it on the workspace;
//! `cargo run -p raftlb-testkit --bin raftlb-house` prints the same report.
//!
//! A file's imports are every path its non-test code names (`use` items and
//! paths in code: `crate::proxy::Backend`, `super::scan::parse`, a child
//! module's `scan::Head`). Each is resolved, through re-exports (`pub use`),
//! to the file that defines the item, as rustc would; a path that leaves the
//! crate, or names a local item, is no import. Files that import each other,
//! directly or around a longer loop, form a circle. Declaring a child module
//! (`mod scan;`) is not an import: the parent owns the child.

mod doc;
mod scc;
mod tree;

pub use doc::check_links;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// The most lines a module file may have outside `#[cfg(test)]` items.
pub const MAX_MODULE_LINES: usize = 600;

/// The most lines a function may have (signature to closing brace, its doc
/// comment not counted) outside `#[cfg(test)]`, unless [`LONG_FNS`] lists it.
pub const MAX_FN_LINES: usize = 80;

/// Functions allowed past [`MAX_FN_LINES`]: (file, function, why).
pub const LONG_FNS: &[(&str, &str, &str)] = &[];

/// One crate to check: a name for the report and its root file.
#[derive(Debug, Clone)]
pub struct CrateRoot {
    /// How the report names the crate.
    pub name: String,
    /// `src/lib.rs` (or another root file).
    pub root: PathBuf,
}

/// What the check found.
#[derive(Debug, Default)]
pub struct Report {
    /// Files over the limit: (file, lines outside tests).
    pub long_files: Vec<(PathBuf, usize)>,
    /// Import circles: each the files of one strongly connected component,
    /// with the imports between them (`from -> to` as file paths).
    pub circles: Vec<Circle>,
    /// Functions over the limit and not in [`LONG_FNS`]: (file, name, lines).
    pub long_fns: Vec<(PathBuf, String, usize)>,
    /// Files that could not be read or parsed.
    pub errors: Vec<String>,
    /// Every file checked, with its lines outside tests.
    pub files: Vec<(PathBuf, usize)>,
}

/// Files of one crate that import each other in a loop.
#[derive(Debug)]
pub struct Circle {
    /// The crate.
    pub krate: String,
    /// The files in the loop.
    pub files: Vec<PathBuf>,
    /// The imports between them: (importer, imported, first path seen).
    pub edges: Vec<(PathBuf, PathBuf, String)>,
}

impl Report {
    /// True when nothing breaks the rules.
    pub fn is_clean(&self) -> bool {
        self.long_files.is_empty()
            && self.long_fns.is_empty()
            && self.circles.is_empty()
            && self.errors.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.errors {
            writeln!(f, "error: {e}")?;
        }
        for (file, lines) in &self.long_files {
            writeln!(
                f,
                "too long: {} has {lines} lines outside #[cfg(test)] (at most {MAX_MODULE_LINES})",
                file.display()
            )?;
        }
        for (file, name, lines) in &self.long_fns {
            writeln!(
                f,
                "too long: fn {name} in {} has {lines} lines (at most {MAX_FN_LINES}, or a reason in house::LONG_FNS)",
                file.display()
            )?;
        }
        for c in &self.circles {
            let names: Vec<_> = c.files.iter().map(|p| p.display().to_string()).collect();
            writeln!(f, "import circle in {}: {}", c.krate, names.join(" <-> "))?;
            for (from, to, via) in &c.edges {
                writeln!(f, "    {} -> {} ({via})", from.display(), to.display())?;
            }
        }
        if self.is_clean() {
            writeln!(
                f,
                "house: {} files, none over {MAX_MODULE_LINES} lines, no function over {MAX_FN_LINES} without a reason, no import circle",
                self.files.len()
            )?;
        }
        Ok(())
    }
}

/// Checks every crate; paths in the report are relative to `base`.
pub fn check(base: &Path, crates: &[CrateRoot]) -> Report {
    let mut report = Report::default();
    for krate in crates {
        let read = tree::read(&krate.root, MAX_FN_LINES, &mut report.errors);
        let rel = |f: usize| {
            let p = &read.files[f].path;
            p.strip_prefix(base).unwrap_or(p).to_path_buf()
        };
        for (f, file) in read.files.iter().enumerate() {
            report.files.push((rel(f), file.lines));
            if file.lines > MAX_MODULE_LINES {
                report.long_files.push((rel(f), file.lines));
            }
            for (name, lines) in &file.long_fns {
                let path = rel(f);
                let allowed = LONG_FNS
                    .iter()
                    .any(|(p, n, _)| Path::new(p) == path && n == name);
                if !allowed {
                    report.long_fns.push((path, name.clone(), *lines));
                }
            }
        }
        for comp in scc::strongly_connected(read.files.len(), &read.edges) {
            if comp.len() < 2 {
                continue;
            }
            let set: BTreeSet<usize> = comp.iter().copied().collect();
            let mut files: Vec<PathBuf> = comp.iter().map(|&f| rel(f)).collect();
            files.sort();
            let edges = read
                .edges
                .iter()
                .filter(|((a, b), _)| set.contains(a) && set.contains(b))
                .map(|((a, b), via)| (rel(*a), rel(*b), via.clone()))
                .collect();
            report.circles.push(Circle {
                krate: krate.name.clone(),
                files,
                edges,
            });
        }
    }
    report
}

/// The workspace's crates, from its top folder.
pub fn workspace_crates(top: &Path) -> Vec<CrateRoot> {
    [
        ("proto", "proto/src/lib.rs"),
        ("cluster", "cluster/src/lib.rs"),
        ("node", "node/src/lib.rs"),
        ("testkit", "tests/src/lib.rs"),
    ]
    .into_iter()
    .map(|(name, root)| CrateRoot {
        name: name.into(),
        root: top.join(root),
    })
    .collect()
}
