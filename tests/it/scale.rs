//! Issue #19 (scale): the no-op's request cost. `--read-secrets auto`, the
//! default, lists Secrets where RBAC grants `list` (here: the admin the
//! tests run as) and says so; the plan is the one GETs give.

use crate::harness::annotation::PATH;
use crate::harness::{PodRefs, TestNs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_secrets_auto_lists_where_rbac_grants_it_and_plans_the_same() {
    let ns = TestNs::new("rs-auto").await;
    let base = ns.path("secret", "app");
    ns.secret("a", &[("K", &ns.value("a"))]).await;
    ns.secret("b", &[("K", &ns.value("b"))]).await;
    ns.deployment(
        "web",
        &[(PATH, &base)],
        &PodRefs::new().env_from("a").env_from("b"),
    )
    .await;

    let auto = ns
        .cli_env(&["plan", "-o", "json", "-v"], &[("RUST_LOG", "info")])
        .await;
    auto.assert_code(2);
    assert!(
        auto.stderr.contains("--read-secrets auto: listing Secrets"),
        "the choice is not logged:\n{auto}"
    );
    let get = ns
        .cli_env(
            &["plan", "-o", "json", "-v", "--read-secrets", "get"],
            &[("RUST_LOG", "info")],
        )
        .await;
    get.assert_code(2);
    assert!(
        !get.stderr.contains("--read-secrets auto"),
        "an explicit mode asks nothing:\n{get}"
    );
    assert_eq!(auto.json()["changes"], get.json()["changes"]);
    assert_eq!(auto.json()["summary"]["create"], 2, "{auto}");

    // Written with the default, then a no-op.
    ns.cli(&["run"]).await.assert_code(0);
    ns.cli(&["plan"]).await.assert_code(0);
}
