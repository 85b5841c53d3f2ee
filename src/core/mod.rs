//! The functional core: pure functions over plain data. No IO, no async;
//! every rule of the annotation contract, discovery, desired state and diff
//! is unit-tested here without a server.

pub mod annotations;
pub mod batch;
pub mod desired;
pub mod error_kind;
#[cfg(test)]
mod fuzz;
pub mod index;
pub mod name;
pub mod orphans;
pub mod ownership;
pub mod path_rules;
pub mod plan;
pub mod references;
pub mod saved_plan;
pub mod value;
pub mod vault_path;
pub mod workload;
