//! The committed shell completions (completions/) match what the binary
//! prints: a flag or subcommand added without regenerating them fails here.
//! Needs no stack.

use std::path::Path;
use std::process::Command;

/// Shell (as `vault-sync completions` spells it) → committed file.
const SCRIPTS: &[(&str, &str)] = &[
    ("bash", "vault-sync.bash"),
    ("zsh", "_vault-sync"),
    ("fish", "vault-sync.fish"),
    ("powershell", "_vault-sync.ps1"),
    ("elvish", "vault-sync.elv"),
];

#[test]
fn committed_completions_are_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
    let mut stale = Vec::new();
    for (shell, file) in SCRIPTS {
        // A clean environment, as completions/generate.sh runs it.
        let out = Command::new(env!("CARGO_BIN_EXE_vault-sync"))
            .env_clear()
            .args(["completions", shell])
            .output()
            .unwrap_or_else(|e| panic!("running vault-sync completions {shell}: {e}"));
        assert!(
            out.status.success(),
            "vault-sync completions {shell} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.stdout.is_empty(),
            "vault-sync completions {shell}: no output"
        );
        let path = dir.join(file);
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; completions are stale: run completions/generate.sh",
                path.display()
            )
        });
        if committed != out.stdout {
            stale.push(format!("completions/{file} ({shell})"));
        }
    }
    assert!(
        stale.is_empty(),
        "completions are stale: run completions/generate.sh\ndiffering: {}",
        stale.join(", ")
    );
}
