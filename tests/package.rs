//! The Debian package as `deploy/deb/build` makes it, checked without
//! installing it (installing, upgrading and purging run in the VMs of
//! `vagrant/`): its files, owners and conffiles; the shipped config files
//! pass `raftlb check`; the maintainer scripts parse; the man page and the
//! bash completion come from the CLI; the unit passes `systemd-analyze
//! verify`.

use raftlb_testkit::TempDir;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_raftlb");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run a command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn the_deb_holds_the_binary_the_unit_conffiles_man_page_and_completion() {
    let dir = TempDir::new("raftlb-deb");
    let out = run(Command::new(root().join("deploy/deb/build"))
        .env("RAFTLB_BIN", BIN)
        .env("VERSION", "0.1.0+test1")
        .env("OUT", dir.path("out")));
    let deb = PathBuf::from(text(&out).trim());
    assert!(deb.ends_with(format!(
        "raftlb_0.1.0+test1_{}.deb",
        text(&run(Command::new("dpkg").arg("--print-architecture"))).trim()
    )));

    let info = text(&run(Command::new("dpkg-deb").arg("-I").arg(&deb)));
    assert!(info.contains("Package: raftlb"), "{info}");
    assert!(info.contains("Version: 0.1.0+test1"), "{info}");
    assert!(info.contains("Depends: libc6"), "{info}");
    let listing = text(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)));
    for path in [
        "./usr/bin/raftlb",
        "./lib/systemd/system/raftlb.service",
        "./etc/raftlb/node.toml",
        "./etc/raftlb/lb.toml",
        "./usr/share/man/man1/raftlb.1.gz",
        "./usr/share/bash-completion/completions/raftlb",
        "./usr/share/doc/raftlb/README.md",
    ] {
        let line = listing
            .lines()
            .find(|l| l.ends_with(path))
            .unwrap_or_else(|| panic!("{path} missing:\n{listing}"));
        assert!(line.contains("root/root"), "{line}");
    }

    // The control files: conffiles, and scripts that parse.
    let control = dir.path("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert_eq!(conffiles, "/etc/raftlb/node.toml\n/etc/raftlb/lb.toml\n");
    for script in ["postinst", "prerm", "postrm"] {
        run(Command::new("sh").arg("-n").arg(control.join(script)));
    }
    let postrm = std::fs::read_to_string(control.join("postrm")).unwrap();
    assert!(
        postrm.contains("\"$1\" = purge") && postrm.contains("deluser"),
        "purge removes the user"
    );

    // The files as installed: the shipped configs pass `raftlb check`, the
    // man page and completion are the CLI's.
    let tree = dir.path("tree");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree));
    let raftlb = tree.join("usr/bin/raftlb");
    run(Command::new(&raftlb)
        .arg("check")
        .arg("-c")
        .arg(tree.join("etc/raftlb/node.toml"))
        .arg("-c")
        .arg(tree.join("etc/raftlb/lb.toml")));
    let man = run(Command::new("gzip")
        .arg("-dc")
        .arg(tree.join("usr/share/man/man1/raftlb.1.gz")));
    let man = text(&man);
    assert!(
        man.contains(".TH raftlb 1"),
        "{}",
        &man[..200.min(man.len())]
    );
    assert!(
        man.contains("cluster") && man.contains("table"),
        "subcommands listed"
    );
    let completion =
        std::fs::read_to_string(tree.join("usr/share/bash-completion/completions/raftlb")).unwrap();
    assert!(completion.contains("complete -F") && completion.contains("raftlb"));

    // The unit, pointed at the extracted binary, passes systemd's checks.
    let unit = std::fs::read_to_string(tree.join("lib/systemd/system/raftlb.service")).unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="));
    let units = dir.path("units");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(
        units.join("raftlb.service"),
        unit.replace("/usr/bin/raftlb", &raftlb.display().to_string()),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(units.join("raftlb.service"))
        .output()
        .expect("systemd-analyze (package systemd)");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}
