//! The house rules over the workspace (no module over 600 lines outside
//! tests, no function over 80 without a reason, no import circle between the
//! files of a crate), and the checker itself on small crates made for it:
//! it must see a circle or a long file when one is there.

use raftlb_testkit::house::{self, CrateRoot, MAX_FN_LINES, MAX_MODULE_LINES};
use raftlb_testkit::TempDir;
use std::path::Path;

#[test]
fn the_workspace_keeps_the_house_rules() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let report = house::check(top, &house::workspace_crates(top));
    assert!(
        report.files.len() > 50,
        "the check read too few files:\n{report}"
    );
    assert!(report.is_clean(), "\n{report}");
}

/// Writes `files` (path, text) under a fresh directory and checks the crate
/// rooted at its `lib.rs`.
fn check(files: &[(&str, &str)]) -> house::Report {
    let dir = TempDir::new("raftlb-house");
    for (path, text) in files {
        let p = dir.path(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let root = CrateRoot {
        name: "t".into(),
        root: dir.path("lib.rs"),
    };
    house::check(&dir.0, &[root])
}

#[test]
fn two_siblings_that_import_each_other_are_a_circle() {
    let r = check(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        ("a.rs", "use crate::b::B;\npub struct A(B);\n"),
        ("b.rs", "pub struct B;\nfn f() -> crate::a::A { todo!() }\n"),
    ]);
    assert_eq!(r.circles.len(), 1, "{r}");
    let files: Vec<_> = r.circles[0]
        .files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(files, ["a.rs", "b.rs"]);
}

#[test]
fn a_child_that_uses_its_parent_which_uses_it_is_a_circle() {
    let r = check(&[
        ("lib.rs", "mod m;\n"),
        ("m/mod.rs", "mod c;\npub struct E;\npub fn f() { c::g() }\n"),
        ("m/c.rs", "use super::E;\npub fn g() { let _ = E; }\n"),
    ]);
    assert_eq!(r.circles.len(), 1, "{r}");
}

#[test]
fn a_path_through_a_reexport_reaches_the_file_that_defines_it() {
    // `c` names `super::E`, which `m` only re-exports from `e`: no circle.
    let r = check(&[
        ("lib.rs", "mod m;\n"),
        (
            "m/mod.rs",
            "mod c;\nmod e;\npub use e::E;\npub fn f() { c::g() }\n",
        ),
        ("m/e.rs", "pub struct E;\n"),
        ("m/c.rs", "use super::E;\npub fn g() { let _ = E; }\n"),
    ]);
    assert!(r.is_clean(), "{r}");
    // Put the circle back: `e` calls into `c`.
    let r = check(&[
        ("lib.rs", "mod m;\n"),
        (
            "m/mod.rs",
            "mod c;\nmod e;\npub use e::E;\npub fn f() { c::g() }\n",
        ),
        ("m/e.rs", "pub struct E;\npub fn h() { super::c::g() }\n"),
        ("m/c.rs", "use super::E;\npub fn g() { let _ = E; }\n"),
    ]);
    assert_eq!(r.circles.len(), 1, "{r}");
}

#[test]
fn test_code_may_import_anything() {
    let r = check(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        ("a.rs", "pub fn a() { crate::b::b() }\n"),
        (
            "b.rs",
            "pub fn b() {}\n#[cfg(test)]\nmod tests {\n    use crate::a::a;\n}\n",
        ),
    ]);
    assert!(r.is_clean(), "{r}");
}

#[test]
fn a_long_file_or_function_is_reported_and_tests_do_not_count() {
    let body = "    let _ = 1;\n".repeat(MAX_FN_LINES);
    let long_fn = format!("pub fn long() {{\n{body}}}\n");
    let r = check(&[("lib.rs", "mod a;\n"), ("a.rs", &long_fn)]);
    assert_eq!(r.long_fns.len(), 1, "{r}");
    assert_eq!(r.long_fns[0].1, "long");

    let filler = "pub const X: u8 = 0;\n".repeat(MAX_MODULE_LINES - 5);
    let tests = format!(
        "#[cfg(test)]\nmod tests {{\n{}}}\n",
        "    const Y: u8 = 0;\n".repeat(100)
    );
    let r = check(&[
        ("lib.rs", "mod a;\n"),
        ("a.rs", &format!("{filler}{tests}")),
    ]);
    assert!(r.is_clean(), "{r}");
    let r = check(&[
        ("lib.rs", "mod a;\n"),
        ("a.rs", &format!("{filler}{filler}")),
    ]);
    assert_eq!(r.long_files.len(), 1, "{r}");
}

#[test]
fn architecture_md_names_what_exists_where_it_says() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let wrong = house::check_links(top, &top.join("ARCHITECTURE.md")).unwrap();
    assert!(wrong.is_empty(), "ARCHITECTURE.md:\n{}", wrong.join("\n"));
}

#[test]
fn a_link_to_something_that_is_not_there_is_caught() {
    let dir = TempDir::new("raftlb-house-doc");
    std::fs::create_dir_all(dir.path("src")).unwrap();
    std::fs::write(
        dir.path("src/a.rs"),
        "pub struct Holder;\nimpl Holder { fn take(&self) {} }\npub enum Command { Apply }\npub fn run() {}\n",
    )
    .unwrap();
    let good = "[`run`](src/a.rs), [`Holder::take`](src/a.rs), [`Command::Apply`](src/a.rs), [the file](src/a.rs)";
    std::fs::write(dir.path("good.md"), good).unwrap();
    assert_eq!(
        house::check_links(&dir.0, &dir.path("good.md")).unwrap(),
        Vec::<String>::new()
    );
    let bad = "[`walk`](src/a.rs) [`Holder::give`](src/a.rs) [gone](src/b.rs)";
    std::fs::write(dir.path("bad.md"), bad).unwrap();
    assert_eq!(
        house::check_links(&dir.0, &dir.path("bad.md"))
            .unwrap()
            .len(),
        3
    );
}
