//! Keeps a map true: every link of a Markdown file to a source file must
//! reach a file that exists, and a link whose text names an item
//! (`` [`Runtime::apply`](node/src/runtime.rs) ``) must reach the file that
//! defines it.

use std::collections::BTreeSet;
use std::path::Path;

/// What a source file defines: its items (`fn`, `struct`, `mod` …, at any
/// depth of inline modules), the methods of its `impl` blocks as
/// (type, method), and enum variants as (enum, variant).
#[derive(Debug, Default)]
struct Defined {
    items: BTreeSet<String>,
    members: BTreeSet<(String, String)>,
}

fn defined(file: &syn::File) -> Defined {
    let mut d = Defined::default();
    collect(&file.items, &mut d);
    d
}

fn collect(items: &[syn::Item], d: &mut Defined) {
    for item in items {
        let name = match item {
            syn::Item::Const(i) => Some(i.ident.to_string()),
            syn::Item::Enum(i) => {
                for v in &i.variants {
                    d.members.insert((i.ident.to_string(), v.ident.to_string()));
                }
                Some(i.ident.to_string())
            }
            syn::Item::Fn(i) => Some(i.sig.ident.to_string()),
            syn::Item::Mod(i) => {
                if let Some((_, inner)) = &i.content {
                    collect(inner, d);
                }
                Some(i.ident.to_string())
            }
            syn::Item::Static(i) => Some(i.ident.to_string()),
            syn::Item::Struct(i) => Some(i.ident.to_string()),
            syn::Item::Trait(i) => {
                for t in &i.items {
                    if let syn::TraitItem::Fn(f) = t {
                        d.members
                            .insert((i.ident.to_string(), f.sig.ident.to_string()));
                    }
                }
                Some(i.ident.to_string())
            }
            syn::Item::Type(i) => Some(i.ident.to_string()),
            syn::Item::Macro(i) => i.ident.as_ref().map(|m| m.to_string()),
            syn::Item::Impl(i) => {
                let ty = match &*i.self_ty {
                    syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
                    _ => None,
                };
                if let Some(ty) = ty {
                    for it in &i.items {
                        if let syn::ImplItem::Fn(f) = it {
                            d.members.insert((ty.clone(), f.sig.ident.to_string()));
                        }
                    }
                }
                None
            }
            _ => None,
        };
        if let Some(n) = name {
            d.items.insert(n);
        }
    }
}

/// The links of `markdown` as (text, target), in order.
fn links(markdown: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = markdown;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find("](") else { break };
        let text = &rest[..close];
        if text.contains('[') || text.contains('\n') {
            continue;
        }
        let after = &rest[close + 2..];
        let Some(end) = after.find(')') else { break };
        out.push((text.to_string(), after[..end].to_string()));
        rest = &after[end..];
    }
    out
}

/// Checks the links of the Markdown file `doc` (paths relative to `top`);
/// returns one line per link that does not hold.
pub fn check_links(top: &Path, doc: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(doc).map_err(|e| format!("{}: {e}", doc.display()))?;
    let mut wrong = Vec::new();
    for (label, target) in links(&text) {
        if target.contains("://") || target.starts_with('#') {
            continue;
        }
        let path = top.join(target.split('#').next().unwrap_or(&target));
        if !path.exists() {
            wrong.push(format!("[{label}]({target}): no such file"));
            continue;
        }
        let name = label.trim_matches('`').trim_end_matches("()");
        let is_item = label.starts_with('`')
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == ':');
        if !is_item || path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let source =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file = syn::parse_file(&source).map_err(|e| format!("{}: {e}", path.display()))?;
        let d = defined(&file);
        let mut segs: Vec<&str> = name.split("::").collect();
        // `session::serve` names `serve` in session.rs (`http::serve` in
        // http/mod.rs or a child of http/).
        let module = module_names(&path);
        if segs.len() > 1 && module.iter().any(|m| m == segs[0]) {
            segs.remove(0);
        }
        let found = match segs.as_slice() {
            [one] => d.items.contains(*one),
            [.., ty, member] => d.members.contains(&(ty.to_string(), member.to_string())),
            [] => false,
        };
        if !found {
            wrong.push(format!("[{label}]({target}): {target} defines no `{name}`"));
        }
    }
    Ok(wrong)
}

/// The names a file is reached by as a module: its stem (`session` for
/// `session.rs`), its folder's name for `mod.rs`, and the folders above it
/// (`http` for `http/intake.rs`, whose items `http/mod.rs` may re-export).
fn module_names(path: &Path) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
        if stem != "mod" && stem != "lib" {
            names.push(stem.to_string());
        }
    }
    if let Some(dir) = path
        .parent()
        .and_then(|d| d.file_name())
        .and_then(|d| d.to_str())
    {
        names.push(dir.to_string());
    }
    names
}
