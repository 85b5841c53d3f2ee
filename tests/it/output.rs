//! What a run prints, end to end: structured JSON logs (`--log-format
//! json`); progress bars, which appear only on a terminal (a real
//! pseudo-terminal, through tmux) and leave no frames behind; `plan -q`;
//! `prune` neither logging nor counting a conflict; the cluster prefix in
//! an error row. The report itself (`-o json`, the table) is asserted where
//! each behaviour is.
//! Every output goes through the leak guard.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixtures::{ClusterNs, change, change_of};
use crate::harness::annotation::PATH;
use crate::harness::{CliOutput, PodRefs, STACK, TestNs};
use crate::metrics::{PushGroup, broken_deployments, cli_push, closed_port, exposition_value};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The progress bars' and spinner's labels.
const PROGRESS_LABELS: &[&str] = &[
    "listing Deployments",
    "reading Secrets",
    "reading Vault",
    "writing Vault",
    "deleting orphans",
];

// --- JSON logs -------------------------------------------------------------------------

fn json_lines(out: &CliOutput) -> Vec<Value> {
    assert!(
        !out.stderr.contains('\x1b'),
        "escape codes on stderr:\n{out}"
    );
    out.stderr
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {l:?}\n{out}"))
        })
        .inspect(|v| assert!(v.is_object(), "log line is not an object: {v}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_structured() {
    let ns = TestNs::new("obs-json").await;
    let group = PushGroup::new("json");
    ns.secret("s", &[("K", &ns.value("k"))]).await;
    let web_path = ns.path("secret", "web");
    ns.deployment("web", &[(PATH, &web_path)], &PodRefs::new().env_from("s"))
        .await;
    broken_deployments(&ns).await;

    let out = cli_push(&ns, &group, &["run", "--log-format", "json"]).await;
    out.assert_code(1);
    let lines = json_lines(&out);
    for l in &lines {
        for field in ["timestamp", "level", "message"] {
            assert!(l.get(field).is_some(), "log line without {field}: {l}");
        }
    }

    let starting: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "starting")
        .collect();
    assert_eq!(starting.len(), 1, "{out}");
    let s = starting[0];
    assert_eq!(s["level"], "INFO", "{s}");
    assert!(
        s["version"]
            .as_str()
            .is_some_and(|v| v.starts_with(VERSION)),
        "{s}"
    );
    assert!(s["workers"].as_u64().is_some_and(|w| w >= 1), "{s}");
    assert_eq!(s["vault_addr"], STACK.vault_addr(), "{s}");
    assert_eq!(s["auth"], "token", "{s}");
    assert_eq!(s["cluster"], "default", "{s}");

    // One line per problem, with every field.
    let problem = |deployment: &str| -> Value {
        let found: Vec<&Value> = lines
            .iter()
            .filter(|l| l["deployment"] == deployment && l.get("error_type").is_some())
            .collect();
        assert_eq!(found.len(), 1, "problem lines of {deployment}:\n{out}");
        let l = found[0].clone();
        for field in [
            "namespace",
            "deployment",
            "secret",
            "path",
            "action",
            "error_type",
        ] {
            assert!(l.get(field).is_some(), "problem line without {field}: {l}");
        }
        assert!(
            ["WARN", "ERROR"].contains(&l["level"].as_str().unwrap_or_default()),
            "{l}"
        );
        assert_eq!(l["namespace"], ns.name.as_str(), "{l}");
        assert_eq!(l["action"], "error", "{l}");
        l
    };
    let l = problem("nosecret");
    assert_eq!(l["secret"], "missing", "{l}");
    assert_eq!(l["error_type"], "secret_not_found", "{l}");
    assert_eq!(
        l["path"],
        format!("{}/missing", ns.path("secret", "nosecret")),
        "{l}"
    );
    let l = problem("nokey");
    assert_eq!(l["secret"], "present", "{l}");
    assert_eq!(l["error_type"], "secret_key_missing", "{l}");
    assert_eq!(l["path"], ns.path("secret", "nokey"), "{l}");
    let l = problem("badjson");
    assert_eq!(l["error_type"], "invalid_secrets_json", "{l}");
    assert_eq!(l["path"], ns.path("secret", "badjson"), "{l}");

    // The applied write, at info.
    let applied: Vec<&Value> = lines.iter().filter(|l| l["message"] == "applied").collect();
    assert_eq!(applied.len(), 1, "{out}");
    let a = applied[0];
    assert_eq!(a["level"], "INFO", "{a}");
    assert_eq!(a["namespace"], ns.name.as_str(), "{a}");
    assert_eq!(a["deployment"], "web", "{a}");
    assert_eq!(a["path"], format!("{web_path}/s"), "{a}");
    assert_eq!(a["action"], "create", "{a}");

    // -v: more lines (dependencies' too), still all JSON.
    let verbose = cli_push(&ns, &group, &["run", "--log-format", "json", "-v"]).await;
    verbose.assert_code(1);
    let vlines = json_lines(&verbose);
    assert!(
        vlines.iter().any(|l| l["level"] == "DEBUG"),
        "-v shows debug lines:\n{verbose}"
    );

    // A failed push's warning is JSON too.
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let nopush = ns
        .cli_env(
            &["run", "--log-format", "json"],
            &[("PUSHGATEWAY_URL", dead.as_str())],
        )
        .await;
    nopush.assert_code(1);
    let nlines = json_lines(&nopush);
    assert!(
        nlines.iter().any(|l| l["level"] == "WARN"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.contains("pushing metrics to"))),
        "{nopush}"
    );

    let (_, api_text) = group.group().await;
    ns.assert_no_leak(&[&api_text]);
    group.delete().await;
}

// --- progress bars on a terminal only ----------------------------------------------------

/// A private tmux server (its own socket), killed on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What a run in a terminal showed.
struct Terminal {
    /// Every byte written to the pane (`pipe-pane`), escape codes included.
    drawn: String,
    /// The pane's text once the run has finished, scrollback included.
    screen: String,
    code: i32,
}

/// Runs vault-sync in a tmux pane (a real pseudo-terminal): what it drew,
/// the final screen and the exit code.
fn run_in_terminal(ns: &TestNs, dir: &Path, name: &str, args: &[&str]) -> Terminal {
    let go = dir.join(format!("{name}.go"));
    let rc = dir.join(format!("{name}.rc"));
    let log = dir.join(format!("{name}.log"));
    let script = dir.join(format!("{name}.sh"));
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ("HOME".into(), std::env::var("HOME").unwrap_or_default()),
        ("TERM".into(), "xterm-256color".into()),
        ("VAULT_ADDR".into(), STACK.vault_addr().into()),
        ("VAULT_TOKEN".into(), ns.cli_token.clone()),
        ("VAULT_SYNC_INDEX_MOUNT".into(), ns.index_mount.clone()),
        ("KUBECONFIG".into(), STACK.kubeconfig().into()),
    ];
    env.retain(|(_, v)| !v.is_empty());
    let env_args: Vec<String> = env
        .iter()
        .map(|(k, v)| sh_quote(&format!("{k}={v}")))
        .collect();
    let mut cli: Vec<String> = vec![sh_quote(env!("CARGO_BIN_EXE_vault-sync"))];
    cli.extend(args.iter().map(|a| sh_quote(a)));
    cli.extend(["-n".to_owned(), sh_quote(&ns.name)]);
    let text = format!(
        "#!/bin/sh\nwhile [ ! -e {go} ]; do sleep 0.05; done\nenv -i {env} {cli}\necho $? > {rc}.tmp && mv {rc}.tmp {rc}\nsleep 5\n",
        go = sh_quote(&go.display().to_string()),
        rc = sh_quote(&rc.display().to_string()),
        env = env_args.join(" "),
        cli = cli.join(" "),
    );
    std::fs::write(&script, text).expect("write script");

    let tmux = Tmux {
        socket: dir.join(format!("{name}.sock")),
    };
    let session = format!("vs-{name}");
    let command = format!("sh {}", sh_quote(&script.display().to_string()));
    tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "200",
        "-y",
        "50",
        &command,
    ]);
    tmux.cmd(&[
        "pipe-pane",
        "-o",
        "-t",
        &session,
        &format!("cat >> {}", sh_quote(&log.display().to_string())),
    ]);
    std::fs::write(&go, "").expect("write go file");

    let deadline = Instant::now() + Duration::from_secs(120);
    let code = loop {
        if let Ok(s) = std::fs::read_to_string(&rc) {
            break s.trim().parse::<i32>().expect("exit code");
        }
        assert!(
            Instant::now() < deadline,
            "vault-sync in tmux did not finish; pane:\n{}",
            String::from_utf8_lossy(&tmux.cmd(&["capture-pane", "-p", "-t", &session]).stdout)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Let the pane and pipe-pane catch up with what was drawn last.
    std::thread::sleep(Duration::from_millis(500));
    let screen = String::from_utf8_lossy(
        &tmux
            .cmd(&["capture-pane", "-p", "-S", "-", "-E", "-", "-t", &session])
            .stdout,
    )
    .into_owned();
    drop(tmux);
    let bytes = std::fs::read(&log).unwrap_or_default();
    Terminal {
        drawn: String::from_utf8_lossy(&bytes).into_owned(),
        screen,
        code,
    }
}

/// How many frames of the `label` bar (`<label> [=> ] n/<len> (`) were drawn.
fn bar_frames(drawn: &str, label: &str, len: usize) -> usize {
    let counter = format!("/{len} (");
    drawn
        .split(['\r', '\n'])
        .filter(|frame| {
            frame
                .find(&format!("{label} ["))
                .is_some_and(|at| frame[at..].contains(']') && frame[at..].contains(&counter))
        })
        .count()
}

/// A namespace with one Deployment referencing `n` Secrets (auto-discovery).
async fn many_secrets(ns: &TestNs, n: usize) {
    let mut refs = PodRefs::new();
    for i in 0..n {
        let name = format!("s{i:02}");
        ns.secret(&name, &[("K", &ns.value(&name))]).await;
        refs = refs.env_from(&name);
    }
    ns.deployment("many", &[(PATH, &ns.path("secret", "many"))], &refs)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_bars_only_on_a_terminal() {
    const N: usize = 30;
    let ns = TestNs::new("obs-tty").await;
    many_secrets(&ns, N).await;
    let dir = tempfile::tempdir().expect("tempdir");

    // On a terminal: bars for the 30-item stages.
    let tty = tokio::task::block_in_place(|| {
        run_in_terminal(&ns, dir.path(), "tty", &["run", "--concurrency", "1"])
    });
    let drawn = &tty.drawn;
    assert_eq!(tty.code, 0, "run in tmux failed:\n{drawn}");
    // indicatif rate-limits drawing, so a quick stage may show no frame;
    // at least one of the three 30-item stages must.
    let frames: Vec<(&str, usize)> = ["reading Secrets", "reading Vault", "writing Vault"]
        .into_iter()
        .map(|label| (label, bar_frames(drawn, label, N)))
        .collect();
    assert!(
        frames.iter().any(|(_, n)| *n > 0),
        "no progress bar on the terminal ({frames:?}):\n{drawn}"
    );
    ns.assert_no_leak(&[drawn, &tty.screen]);
    assert_eq!(
        ns.vault
            .list_recursive("secret/metadata", &ns.rel("many"))
            .await
            .len(),
        N
    );

    // -q on a terminal: no bars.
    let quiet = tokio::task::block_in_place(|| {
        run_in_terminal(
            &ns,
            dir.path(),
            "quiet",
            &["run", "--concurrency", "1", "-q"],
        )
    });
    assert_eq!(quiet.code, 0, "quiet run in tmux failed:\n{}", quiet.drawn);
    for label in PROGRESS_LABELS {
        assert!(
            !quiet.drawn.contains(label),
            "{label:?} drawn with -q:\n{}",
            quiet.drawn
        );
    }
    ns.assert_no_leak(&[&quiet.drawn, &quiet.screen]);

    // Not a terminal: no bars, no escape codes (30 items read again).
    let out = ns.cli(&["run", "--concurrency", "1"]).await;
    out.assert_code(0);
    for label in PROGRESS_LABELS {
        assert!(
            !out.stderr.contains(label),
            "{label:?} off a terminal:\n{out}"
        );
    }
    assert!(
        !out.stderr.contains('\x1b'),
        "escape codes off a terminal:\n{out}"
    );
}

/// Once a run is over, no bar is left on the terminal: log lines printed
/// while a bar is shown must not leave stale frames behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_bars_leave_no_frames_behind() {
    let ns = TestNs::new("obs-frames").await;
    many_secrets(&ns, 30).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let tty = tokio::task::block_in_place(|| {
        run_in_terminal(&ns, dir.path(), "frames", &["run", "--concurrency", "1"])
    });
    assert_eq!(tty.code, 0, "run in tmux failed:\n{}", tty.drawn);
    let stale: Vec<&str> = tty
        .screen
        .lines()
        .filter(|l| PROGRESS_LABELS.iter().any(|label| l.contains(label)))
        .collect();
    assert!(
        stale.is_empty(),
        "{} progress-bar frames left on the terminal, e.g. {:?}; screen:\n{}",
        stale.len(),
        stale.first(),
        tty.screen
    );
    // Every "applied" log line starts on a line of its own.
    let applied = tty
        .screen
        .lines()
        .filter(|l| l.contains(" applied "))
        .count();
    assert_eq!(applied, 30, "screen:\n{}", tty.screen);
    for line in tty.screen.lines().filter(|l| l.contains(" applied ")) {
        assert!(
            line.starts_with(|c: char| c.is_ascii_digit()),
            "log line does not start with its timestamp: {line:?}"
        );
    }
    ns.assert_no_leak(&[&tty.drawn, &tty.screen]);
}

// --- plan -q, prune's log and counts, error rows ---------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_plan_prints_nothing_but_json_still_prints() {
    let case = ClusterNs::new("int-quiet").await;
    case.secret("db", &["password"]).await;
    case.auto("app", "secret/app", &["db"], &[]).await;
    let quiet = case.cli(&["plan", "-q"]).await;
    quiet.assert_code(2);
    assert_eq!(quiet.stdout, "", "plan -q printed on stdout:\n{quiet}");
    let json = case.cli(&["plan", "-q", "-o", "json"]).await;
    json.assert_code(2);
    assert_eq!(
        change(&json, &case.display("secret", "app/db"))["action"],
        "create"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_neither_logs_nor_counts_a_conflict() {
    let case = ClusterNs::new("int-prune-conflict").await;
    case.secret("db", &["password"]).await;
    case.auto("x", "secret/same", &["db"], &[]).await;
    case.auto("y", "secret/same", &["db"], &[]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("vault-sync.prom");
    let file_arg = file.display().to_string();
    let prune = case
        .cli(&["prune", "--yes", "-o", "json", "--metrics-file", &file_arg])
        .await;
    prune.assert_code(0);
    assert_eq!(prune.json()["summary"]["conflict"], 0, "{prune}");
    let error_lines: Vec<&str> = prune
        .stderr
        .lines()
        .filter(|l| l.contains("ERROR"))
        .collect();
    assert_eq!(error_lines, Vec::<&str>::new(), "prune logged errors");
    let metrics = std::fs::read_to_string(&file).expect("metrics file");
    assert_eq!(
        exposition_value(&metrics, r#"vault_sync_last_run_paths{action="conflict"}"#)
            .unwrap_or(0.0),
        0.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_row_of_a_missing_secret_shows_the_cluster_prefix() {
    let case = ClusterNs::new("int-err-prefix").await;
    case.auto("app", "secret/app", &["nope"], &[]).await;
    let run = case.json("run", &[]).await;
    run.assert_code(1);
    let c = change_of(&run, "app");
    assert_eq!(c["action"], "error", "{c}");
    assert_eq!(c["error_type"], "secret_not_found", "{c}");
    let prefix = format!("secret/clusters/{}/", case.cluster);
    assert!(
        c["path"].as_str().unwrap_or_default().starts_with(&prefix),
        "the error row's path lacks the cluster prefix {prefix}: {c}"
    );
}
