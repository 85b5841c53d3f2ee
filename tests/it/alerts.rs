//! The monitoring contract end to end: each command pushes to a group of
//! its own, and the alert rules shipped in `cronjob/monitoring/alerts.yaml`,
//! fed what real runs pushed, fire exactly the alerts each outcome deserves.
//!
//! The rules are evaluated by the real `promtool test rules`: the test
//! scrapes the Pushgateway's `/metrics` (what Prometheus would scrape with
//! `honor_labels: true`), turns this test's series into a promtool test's
//! input series (held constant, as the Pushgateway holds them, with
//! timestamps made relative to the scrape, since a promtool test's clock
//! starts at 0), and asserts the exact set of firing `ALERTS` one minute
//! and sixteen minutes (past the 3 × 5 min threshold) after the scrape.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::annotation::PATH;
use crate::harness::{PodRefs, STACK, TestNs, now_secs};
use crate::metrics::{PushGroup, cli_push, closed_port, nonzero_by, value};

const SUCCESS: &str = "vault_sync_last_success_timestamp_seconds";
const LAST_RUN: &str = "vault_sync_last_run_timestamp_seconds";

/// A Deployment `app` syncing Secret `s` to `secret/it/<ns>/app`.
async fn app(ns: &TestNs) {
    ns.secret("s", &[("K", &ns.value("k"))]).await;
    ns.deployment(
        "app",
        &[(PATH, &ns.path("secret", "app"))],
        &PodRefs::new().env_from("s"),
    )
    .await;
}

// --- promtool ---------------------------------------------------------------------

/// One series of the Pushgateway's `/metrics`: name, labels, value.
#[derive(Debug, Clone)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The series of `/metrics` whose `test` label is one of `tests`. The
/// Pushgateway's exposition is simple (no escapes in our label values):
/// `name{a="x",b="y"} value`.
async fn scrape(tests: &[&str]) -> (Vec<Series>, f64) {
    let url = format!("{}/metrics", STACK.pushgateway_url());
    let text = reqwest::get(&url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .expect("/metrics body");
    let scraped_at = now_secs();
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let labels: BTreeMap<String, String> = body
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once("=\"").expect("label=\"value\"");
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        if !labels
            .get("test")
            .is_some_and(|t| tests.contains(&t.as_str()))
        {
            continue;
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        out.push(Series {
            name,
            labels,
            value,
        });
    }
    (out, scraped_at)
}

/// An alert expected to fire: its name and labels (besides `alertname`
/// and `alertstate`).
struct Firing {
    alert: &'static str,
    severity: &'static str,
    test: String,
    extra: Vec<(&'static str, &'static str)>,
}

fn firing(alert: &'static str, test: &str) -> Firing {
    Firing {
        alert,
        severity: if alert == "VaultSyncNotSucceeding" {
            "critical"
        } else {
            "warning"
        },
        test: test.to_owned(),
        extra: match alert {
            "VaultSyncConflicts" => vec![("action", "conflict")],
            "VaultSyncDeletionsRefused" => vec![("action", "refused")],
            _ => Vec::new(),
        },
    }
}

fn selector(name: &str, labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', r"\\").replace('"', "\\\"")))
        .collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Runs the shipped rules over `series` (held constant for 30 minutes from
/// the scrape) and asserts exactly `expected` firing at each minute given.
fn assert_alerts(series: &[Series], scraped_at: f64, expected: &[(u32, Vec<Firing>)]) {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("cronjob/monitoring/alerts.yaml");
    let mut yaml = format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n",
        rules.display()
    );
    for s in series {
        // promtool's clock starts at 0: a timestamp becomes seconds
        // relative to the scrape, which is the test's time 0.
        let v = if s.name.ends_with("_timestamp_seconds") || s.name.ends_with("_time_seconds") {
            s.value - scraped_at
        } else {
            s.value
        };
        assert!(v.is_finite(), "{s:?}");
        yaml.push_str(&format!(
            "      - series: '{}'\n        values: '{v}+0x30'\n",
            selector(&s.name, &s.labels)
        ));
    }
    yaml.push_str("    promql_expr_test:\n");
    for (minute, alerts) in expected {
        yaml.push_str(&format!(
            "      - expr: 'ALERTS{{alertstate=\"firing\"}}'\n        eval_time: {minute}m\n        exp_samples:{}\n",
            if alerts.is_empty() { " []" } else { "" }
        ));
        for a in alerts {
            let mut labels: BTreeMap<String, String> = [
                ("alertname", a.alert),
                ("alertstate", "firing"),
                ("severity", a.severity),
                ("job", "vault-sync"),
                ("cluster", "default"),
                ("command", "run"),
            ]
            .into_iter()
            .chain(a.extra.iter().copied())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            labels.insert("test".into(), a.test.clone());
            yaml.push_str(&format!(
                "          - labels: '{}'\n            value: 1\n",
                selector("ALERTS", &labels)
            ));
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("e2e_test.yaml");
    std::fs::write(&file, &yaml).expect("write the promtool test");
    let started = Instant::now();
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("promtool (install it with tests/stack/install.sh): {e}"));
    eprintln!("promtool test rules (generated): {:?}", started.elapsed());
    assert!(
        out.status.success(),
        "the shipped rules did not fire exactly the expected alerts:\n{}{}\n--- generated test ---\n{yaml}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// --- 1. groups per command ---------------------------------------------------------------

/// The CronJob's `run` succeeds, then fails (Vault unreachable); a CI
/// `plan --push-metrics` and a manual `prune` then succeed. They push to
/// groups of their own: the run group's last success is still the first
/// run's, and the rules see a failing CronJob, not a healthy one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ci_plan_and_prune_leave_the_run_group_alone() {
    let ns = TestNs::new("alert-groups").await;
    let run = PushGroup::new("groups");
    let plan = run.of("plan");
    let prune = run.of("prune");
    app(&ns).await;

    cli_push(&ns, &run, &["run"]).await.assert_code(0);
    let (g, _) = run.group().await;
    let success = value(&g, SUCCESS, &[]);
    assert_eq!(success, value(&g, LAST_RUN, &[]));
    assert!(plan.fetch().await.0.is_none() && prune.fetch().await.0.is_none());

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let label = run.push_label();
    let failed = ns
        .cli_env(
            &[
                "run",
                "--vault-timeout",
                "2s",
                "--push-label",
                &label,
                "-o",
                "json",
            ],
            &[
                ("PUSHGATEWAY_URL", STACK.pushgateway_url()),
                ("VAULT_ADDR", &dead),
            ],
        )
        .await;
    failed.assert_code(1);
    let ci = cli_push(&ns, &plan, &["plan", "--push-metrics"]).await;
    ci.assert_code(0);
    let manual = cli_push(&ns, &prune, &["prune", "--yes"]).await;
    manual.assert_code(0);

    let (g, api_text) = run.group().await;
    assert_eq!(
        value(&g, SUCCESS, &[]),
        success,
        "the run group's last success moved"
    );
    assert!(
        value(&g, LAST_RUN, &[]) > success + 1.0,
        "the failed run is the run group's last run"
    );
    // The errors pushed are the errors reported: the path it could not
    // read, and the index it could not read.
    let json = failed.json();
    let reported = json["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(json["errors"].as_array().into_iter().flatten())
        .filter(|c| c.get("error_type").is_some())
        .count();
    assert_eq!(
        nonzero_by(&g, "vault_sync_last_run_errors", "error_type"),
        BTreeMap::from([("connection_failed".to_owned(), reported as f64)]),
        "{failed}"
    );
    assert!(reported >= 1, "{failed}");
    for other in [&plan, &prune] {
        let (g, _) = other.group().await;
        assert_eq!(value(&g, SUCCESS, &[]), value(&g, LAST_RUN, &[]));
        assert!(value(&g, SUCCESS, &[]) > success + 1.0);
    }
    ns.assert_no_leak(&[&api_text, &failed.stderr, &ci.stdout, &manual.stdout]);

    // What Prometheus would scrape: the failing CronJob alerts on its
    // errors now, and on its staleness once 3 × 5 min have passed since
    // its last success; the successful plan and prune change nothing.
    let (series, scraped_at) = scrape(&[&run.test]).await;
    let commands: std::collections::BTreeSet<&str> = series
        .iter()
        .filter_map(|s| s.labels.get("command").map(String::as_str))
        .collect();
    assert_eq!(
        commands.into_iter().collect::<Vec<_>>(),
        ["plan", "prune", "run"]
    );
    assert_alerts(
        &series,
        scraped_at,
        &[
            (1, vec![firing("VaultSyncRunErrors", &run.test)]),
            (
                16,
                vec![
                    firing("VaultSyncNotSucceeding", &run.test),
                    firing("VaultSyncRunErrors", &run.test),
                ],
            ),
        ],
    );
    for g in [&run, &plan, &prune] {
        g.delete().await;
    }
}

// --- 2. each outcome, its alerts ----------------------------------------------------------

/// Four real runs, each in its own namespace and group:
/// - `clean`: a successful run; alerts only once its success is too old;
/// - `broken`: a Deployment whose Secret is missing (errors, never a
///   success);
/// - `conflict`: a path that exists in Vault and is nobody's (a conflict,
///   no error);
/// - `refused`: two orphans after a successful run, over `--max-deletes 1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_runs_fire_exactly_the_alerts_they_deserve() {
    // clean
    let clean_ns = TestNs::new("alert-clean").await;
    let clean = PushGroup::new("clean");
    app(&clean_ns).await;
    cli_push(&clean_ns, &clean, &["run"]).await.assert_code(0);

    // broken
    let broken_ns = TestNs::new("alert-broken").await;
    let broken = PushGroup::new("broken");
    broken_ns
        .deployment(
            "app",
            &[(PATH, &broken_ns.path("secret", "app"))],
            &PodRefs::new().env_from("missing"),
        )
        .await;
    cli_push(&broken_ns, &broken, &["run"]).await.assert_code(1);

    // conflict: the path exists, written by someone else.
    let conflict_ns = TestNs::new("alert-conflict").await;
    let conflict = PushGroup::new("conflict");
    app(&conflict_ns).await;
    conflict_ns
        .vault
        .kv2_write("secret", &conflict_ns.rel("app/s"), &[("other", "tool")])
        .await;
    let out = cli_push(&conflict_ns, &conflict, &["run", "-o", "json"]).await;
    out.assert_code(1);
    assert_eq!(out.json()["summary"]["conflict"], 1, "{out}");
    assert_eq!(out.json()["summary"]["error"], 0, "{out}");

    // refused: two orphans, one deletion allowed.
    let refused_ns = TestNs::new("alert-refused").await;
    let refused = PushGroup::new("refused");
    for name in ["one", "two"] {
        refused_ns
            .secret(name, &[("K", &refused_ns.value(name))])
            .await;
        refused_ns
            .deployment(
                name,
                &[(PATH, &refused_ns.path("secret", name))],
                &PodRefs::new().env_from(name),
            )
            .await;
    }
    cli_push(&refused_ns, &refused, &["run"])
        .await
        .assert_code(0);
    for name in ["one", "two"] {
        refused_ns.delete_deployment(name).await;
    }
    let out = cli_push(
        &refused_ns,
        &refused,
        &["run", "--max-deletes", "1", "-o", "json"],
    )
    .await;
    out.assert_code(1);
    assert_eq!(out.json()["summary"]["refused"], 2, "{out}");

    let tests = [&clean.test, &broken.test, &conflict.test, &refused.test];
    let (series, scraped_at) = scrape(&tests.map(String::as_str)).await;
    for t in tests {
        assert!(
            series.iter().any(|s| &s.labels["test"] == t),
            "nothing scraped for test={t}"
        );
    }
    assert_alerts(
        &series,
        scraped_at,
        &[
            (
                1,
                vec![
                    firing("VaultSyncRunErrors", &broken.test),
                    firing("VaultSyncConflicts", &conflict.test),
                    firing("VaultSyncDeletionsRefused", &refused.test),
                ],
            ),
            (
                16,
                vec![
                    firing("VaultSyncNotSucceeding", &clean.test),
                    firing("VaultSyncNotSucceeding", &broken.test),
                    firing("VaultSyncRunErrors", &broken.test),
                    firing("VaultSyncNotSucceeding", &conflict.test),
                    firing("VaultSyncConflicts", &conflict.test),
                    firing("VaultSyncNotSucceeding", &refused.test),
                    firing("VaultSyncDeletionsRefused", &refused.test),
                ],
            ),
        ],
    );
    for g in [&clean, &broken, &conflict, &refused] {
        g.delete().await;
    }
}
