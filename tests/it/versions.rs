//! Every place that states the release version agrees: `Cargo.toml`,
//! `vault-sync --version`, the newest release of `CHANGELOG.md`, the
//! versions the README's install recipes download, the Helm chart's
//! `version` and `appVersion`, and the image tag of the kustomize base and
//! its example overlays. Needs no stack.
//!
//! A new place is one more line in [`sources`].

use std::path::Path;
use std::process::Command;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text after `prefix` on the first line of `text` that starts with it
/// (after indentation), up to the first character not in a version.
fn after<'a>(text: &'a str, prefix: &str, what: &str) -> &'a str {
    let rest = text
        .lines()
        .map(str::trim_start)
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("{what}: no line starting with {prefix:?}"));
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// `version = "..."` of `[package]`.
fn cargo_toml() -> String {
    let text = read("Cargo.toml");
    let package = text
        .split("\n[")
        .find(|s| s.starts_with("[package]") || s.starts_with("package]"))
        .expect("Cargo.toml has [package]");
    after(package, "version = \"", "Cargo.toml [package]").to_owned()
}

/// `vault-sync 0.1.0 (commit)` → `0.1.0`.
fn binary() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vault-sync"))
        .arg("--version")
        .env_clear()
        .output()
        .expect("vault-sync --version");
    assert!(out.status.success(), "vault-sync --version: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    after(&text, "vault-sync ", "vault-sync --version").to_owned()
}

/// The newest `## [X.Y.Z] - YYYY-MM-DD` heading, checked for Keep a
/// Changelog's form: `[Unreleased]` above it, a date, and a link for both.
fn changelog() -> String {
    let text = read("CHANGELOG.md");
    let headings: Vec<&str> = text.lines().filter(|l| l.starts_with("## ")).collect();
    assert_eq!(
        headings.first(),
        Some(&"## [Unreleased]"),
        "CHANGELOG.md: [Unreleased] comes first"
    );
    let newest = headings
        .get(1)
        .expect("CHANGELOG.md has a release below [Unreleased]");
    let rest = newest
        .strip_prefix("## [")
        .expect("a release heading is `## [X.Y.Z] - YYYY-MM-DD`");
    let (version, date) = rest
        .split_once("] - ")
        .unwrap_or_else(|| panic!("CHANGELOG.md: {newest:?} has no date"));
    let is_date = date.len() == 10
        && date.char_indices().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
    assert!(is_date, "CHANGELOG.md: {newest:?}: date is YYYY-MM-DD");
    for link in ["[Unreleased]: ".to_owned(), format!("[{version}]: ")] {
        assert!(
            text.lines().any(|l| l.starts_with(&link)),
            "CHANGELOG.md: no compare link `{link}...` at the bottom"
        );
    }
    assert!(
        text.contains(&format!("compare/v{version}...HEAD")),
        "CHANGELOG.md: [Unreleased] compares from v{version}"
    );
    version.to_owned()
}

/// Every place that names the version: (where, what it says).
fn sources() -> Vec<(&'static str, String)> {
    let readme = read("README.md");
    let chart = read("cronjob/chart/Chart.yaml");
    vec![
        ("Cargo.toml [package] version", cargo_toml()),
        ("vault-sync --version", binary()),
        ("CHANGELOG.md, newest release", changelog()),
        (
            "README, GitHub recipe's install step (v=)",
            after(&readme, "v=", "README GitHub recipe").to_owned(),
        ),
        (
            "README, GitLab recipe's VS_VERSION",
            after(&readme, "VS_VERSION: ", "README GitLab recipe").to_owned(),
        ),
        (
            "cronjob/chart/Chart.yaml version",
            after(&chart, "version: ", "Chart.yaml").to_owned(),
        ),
        (
            "cronjob/chart/Chart.yaml appVersion (the image tag it installs)",
            after(&chart, "appVersion: \"", "Chart.yaml").to_owned(),
        ),
        (
            "cronjob/base/kustomization.yaml image newTag",
            after(
                &read("cronjob/base/kustomization.yaml"),
                "newTag: ",
                "cronjob/base",
            )
            .to_owned(),
        ),
        (
            "cronjob/base/cronjob.yaml image tag",
            after(
                &read("cronjob/base/cronjob.yaml"),
                "image: ghcr.io/example/vault-sync:",
                "cronjob/base/cronjob.yaml",
            )
            .to_owned(),
        ),
        (
            "examples/kustomize/cluster-wide image newTag",
            after(
                &read("examples/kustomize/cluster-wide/kustomization.yaml"),
                "newTag: ",
                "examples/kustomize/cluster-wide",
            )
            .to_owned(),
        ),
        (
            "examples/kustomize/namespaced image newTag",
            after(
                &read("examples/kustomize/namespaced/kustomization.yaml"),
                "newTag: ",
                "examples/kustomize/namespaced",
            )
            .to_owned(),
        ),
    ]
}

#[test]
fn every_stated_version_agrees() {
    let sources = sources();
    let (_, expected) = &sources[0];
    let differing: Vec<String> = sources
        .iter()
        .filter(|(_, v)| v != expected)
        .map(|(what, v)| format!("{what}: {v}"))
        .collect();
    assert!(
        differing.is_empty(),
        "versions disagree with Cargo.toml ({expected}):\n{}",
        differing.join("\n")
    );
}
