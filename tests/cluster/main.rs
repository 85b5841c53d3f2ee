//! End-to-end tests of vault-sync run the way its users run it: `cronjob/`
//! applied with `kubectl apply -k` (through the test overlay
//! `tests/cluster/kustomization.yaml`) to a real single-node cluster
//! (`tests/cluster/up.sh`: kubelet, containerd, runc, the control plane,
//! OpenBao and a Pushgateway in a network namespace of their own); Jobs made
//! from the CronJob and by its schedule; a Pod from the image built here
//! that logs in to OpenBao with its projected ServiceAccount token.
//!
//! The tests run inside the cluster's network namespace:
//!
//! ```sh
//! tests/cluster/up.sh
//! . tests/cluster/.env
//! nsenter --net=/run/netns/$VS_NETNS cargo test --test cluster
//! ```
//!
//! (`tests/run.sh` does this.) Without the cluster every test fails; none
//! skips. The tests share one CronJob and one Vault, which one of them
//! seals, so they take turns ([`cluster::turn`]); the CronJob stays
//! suspended except while the schedule test lets it fire.

// Tests drive the real servers with their own clients, and print what
// they measure.
#![allow(clippy::disallowed_types, clippy::print_stdout, clippy::print_stderr)]

#[path = "../it/audit.rs"]
#[allow(dead_code)]
mod audit;
#[path = "../it/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "../it/vault.rs"]
#[allow(dead_code)]
mod vault;

mod cluster;
mod cronjob;
mod packaging;

/// The cluster's settings, written by tests/cluster/up.sh (read by `harness`).
pub const ENV_FILE: &str = "tests/cluster/.env";
pub const NOT_RUNNING: &str = "test cluster not running, or this test is not in its network \
     namespace: run tests/cluster/up.sh, then `. tests/cluster/.env; nsenter \
     --net=/run/netns/$VS_NETNS cargo test --test cluster` (tests/run.sh does both)";
