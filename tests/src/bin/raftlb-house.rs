//! Prints the house check's report for the workspace (see
//! `raftlb_testkit::house`); exits 1 when a rule is broken.

use raftlb_testkit::house;
use std::path::Path;

fn main() -> std::process::ExitCode {
    let top = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace top");
    let report = house::check(top, &house::workspace_crates(top));
    print!("{report}");
    if report.is_clean() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
