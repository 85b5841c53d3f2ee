//! End-to-end tests of vault-sync against the real local stack
//! (kube-apiserver + etcd, OpenBao with a file audit log, Pushgateway).
//!
//! The stack must be running (`tests/stack/up.sh`, or `tests/run.sh` which
//! starts it); its settings come from `tests/stack/.env`. Tests never skip:
//! without the stack they fail and say how to start it.
//!
//! Every test works in its own Kubernetes namespace and Vault prefix, so the
//! suite runs in parallel. `IT_KEEP=1` keeps each test's namespace and Vault
//! paths for inspection.

// Tests drive the real servers with their own clients, and print what
// they keep (IT_KEEP) or measure.
#![allow(clippy::disallowed_types, clippy::print_stdout, clippy::print_stderr)]

/// The stack's settings, written by tests/stack/up.sh (read by `harness`).
pub const ENV_FILE: &str = "tests/stack/.env";
pub const NOT_RUNNING: &str = "local stack not running: run tests/stack/up.sh (or tests/run.sh)";

mod alerts;
mod audit;
mod auth;
mod ci_recipes;
mod completions;
mod faults;
mod fixtures;
mod harness;
mod hostile;
mod least_privilege;
mod metrics;
mod orphans;
mod output;
mod ownership;
mod saved_plans;
mod scale;
mod stack;
mod sync;
mod vault;
mod versions;
mod workloads;
