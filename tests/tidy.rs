//! House rules checked inside `cargo test` (after rust-analyzer's tidy test).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() && name != "target" && !name.starts_with('.') {
            rust_files(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_says_what_it_is_for_and_no_test_is_ignored() {
    let mut files = Vec::new();
    for dir in ["src", "crates", "tests"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 20);
    let ignore = ["#[", "ignore]"].concat();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(
            text.starts_with("//!"),
            "{} must start with a `//!` line saying what it is for",
            f.display()
        );
        assert!(
            !text.contains(&ignore),
            "{} ignores a test: tests that need a service fail instead",
            f.display()
        );
    }
}

#[test]
fn the_pure_core_names_no_network_or_system_crate() {
    for krate in ["inventory", "render", "plan"] {
        let manifest =
            std::fs::read_to_string(root().join("crates").join(krate).join("Cargo.toml")).unwrap();
        let deps = manifest
            .split("[dependencies]")
            .nth(1)
            .unwrap()
            .split("\n[")
            .next()
            .unwrap();
        for heavy in [
            "ldap3", "mysql", "tokio", "bollard", "hyper", "rustix", "reqwest",
        ] {
            assert!(
                !deps.contains(heavy),
                "crates/{krate} must stay pure but depends on {heavy}"
            );
        }
    }
}

#[test]
fn architecture_names_every_crate() {
    let arch = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            arch.contains(&format!("crates/{name}")),
            "ARCHITECTURE.md does not describe crates/{name}"
        );
    }
}

#[test]
fn the_readme_starts_with_the_two_commands_and_ci_runs_the_second() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let head: String = readme.lines().take(20).collect::<Vec<_>>().join("\n");
    assert!(
        head.contains("dev/demo.sh") && head.contains("dev/test.sh"),
        "{head}"
    );
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(ci.contains("dev/test.sh"));
}
