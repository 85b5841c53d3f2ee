//! The floor for `tests/bench/run.sh`: the least Vault work a sync of the
//! benchmark scenario can do, with nothing else around it (no Kubernetes, no
//! planning, no index). `vault-sync`'s wall time is reported as a ratio of
//! this program's.
//!
//! ```text
//! floor <mode> --paths FILE [--subset FILE] [--mount secret] [--concurrency 16]
//!              [--keys 5] [--value-bytes 32]
//! ```
//!
//! `FILE` holds one path per line, relative to the KV v2 mount
//! (`floor/bench/bench-00/d-000/d-000-a`). Modes, each request once per path
//! with `--concurrency` requests in flight (`buffer_unordered`, as vault-sync):
//!
//! - `create`: `GET <mount>/data/<p>` (a tool that refuses to overwrite what
//!   it does not own must look before it writes), then `POST
//!   <mount>/data/<p>` with `cas=0` and `POST <mount>/metadata/<p>`
//!   (custom_metadata owner marker) — what a cold run must send.
//! - `read`: `GET <mount>/data/<p>` — what a no-op run must read.
//! - `update`: `read`, and for paths in `--subset` a data write with
//!   `cas=<version read>` (drift).
//! - `prune`: `read`, and for paths in `--subset` a soft delete
//!   `DELETE <mount>/data/<p>`.
//!
//! Housekeeping for the benchmark (not measured):
//!
//! - `put`: `POST <mount>/data/<p>` without cas (restores soft-deleted paths).
//! - `clean`: every line is a prefix; a line ending in `/` is listed
//!   recursively and every path under it is removed with
//!   `DELETE <mount>/metadata/<p>`; any other line is removed itself.
//!
//! Prints one JSON object on stdout: mode, paths, requests by kind, errors,
//! wall seconds (measured inside, from the first request to the last
//! response). Exit code 1 if any request failed. `VAULT_ADDR` and
//! `VAULT_TOKEN` come from the environment; values are fixed dummy strings of
//! `--value-bytes` bytes, as many keys as `--keys`.

// A stand-alone benchmark program: its own clients, its own output.
#![allow(clippy::disallowed_types, clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use futures::stream::{self, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

#[derive(Default)]
struct Counts {
    read: AtomicU64,
    write: AtomicU64,
    delete: AtomicU64,
    list: AtomicU64,
    errors: AtomicU64,
}

struct Floor {
    http: reqwest::Client,
    addr: String,
    token: String,
    mount: String,
    data: Value,
    counts: Counts,
}

impl Floor {
    async fn send(&self, method: Method, api: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let kind = match method {
            Method::GET => &self.counts.read,
            Method::DELETE => &self.counts.delete,
            ref m if m.as_str() == "LIST" => &self.counts.list,
            _ => &self.counts.write,
        };
        kind.fetch_add(1, Ordering::Relaxed);
        let mut req = self
            .http
            .request(method, format!("{}/v1/{api}", self.addr))
            .header("X-Vault-Token", &self.token)
            .header("X-Vault-Request", "true");
        if let Some(body) = body {
            req = req.json(body);
        }
        let (status, body) = match req.send().await {
            Ok(r) => {
                let status = r.status();
                let bytes = r.bytes().await.unwrap_or_default();
                (
                    status,
                    serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                )
            }
            Err(e) => {
                eprintln!("floor: {api}: {e}");
                (StatusCode::BAD_GATEWAY, Value::Null)
            }
        };
        (status, body)
    }

    fn check(&self, api: &str, status: StatusCode, ok_404: bool, body: &Value) -> bool {
        if status.is_success() || (ok_404 && status == StatusCode::NOT_FOUND) {
            return true;
        }
        self.counts.errors.fetch_add(1, Ordering::Relaxed);
        eprintln!("floor: {api}: {status} {body}");
        false
    }

    /// Content with `cas=0`, then the owner marker (vault-sync's order).
    async fn create(&self, p: &str) {
        if !self.write(p, Some(0)).await {
            return;
        }
        let api = format!("{}metadata/{p}", self.mount);
        let md = json!({"custom_metadata": {
            "managed-by": "vault-sync",
            "vault-sync.io/owner": format!("bench/{p}"),
            "vault-sync.io/preserve-on-delete": "false",
        }});
        let (s, b) = self.send(Method::POST, &api, Some(&md)).await;
        self.check(&api, s, false, &b);
    }

    async fn write(&self, p: &str, cas: Option<u64>) -> bool {
        let api = format!("{}data/{p}", self.mount);
        let body = match cas {
            Some(cas) => json!({"data": self.data, "options": {"cas": cas}}),
            None => json!({ "data": self.data }),
        };
        let (s, b) = self.send(Method::POST, &api, Some(&body)).await;
        self.check(&api, s, false, &b)
    }

    /// The current version (0 when absent).
    async fn read(&self, p: &str) -> u64 {
        let api = format!("{}data/{p}", self.mount);
        let (s, b) = self.send(Method::GET, &api, None).await;
        self.check(&api, s, true, &b);
        b["data"]["metadata"]["version"].as_u64().unwrap_or(0)
    }

    async fn delete(&self, p: &str) {
        let api = format!("{}data/{p}", self.mount);
        let (s, b) = self.send(Method::DELETE, &api, None).await;
        self.check(&api, s, true, &b);
    }

    async fn destroy(&self, p: &str) {
        let api = format!("{}metadata/{p}", self.mount);
        let (s, b) = self.send(Method::DELETE, &api, None).await;
        self.check(&api, s, true, &b);
    }

    /// Keys directly under `folder` (ends with `/`); folders end with `/`.
    async fn list(&self, folder: &str) -> Vec<String> {
        let api = format!("{}metadata/{folder}", self.mount);
        let list = Method::from_bytes(b"LIST").expect("method");
        let (s, b) = self.send(list, &api, None).await;
        self.check(&api, s, true, &b);
        b["data"]["keys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(|k| format!("{folder}{k}")))
                    .collect()
            })
            .unwrap_or_default()
    }
}

struct Args {
    mode: String,
    paths: String,
    subset: Option<String>,
    mount: String,
    concurrency: usize,
    keys: usize,
    value_bytes: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut it = std::env::args().skip(1);
    let mode = it.next().context("usage: floor <mode> --paths FILE ...")?;
    let mut args = Args {
        mode,
        paths: String::new(),
        subset: None,
        mount: "secret".into(),
        concurrency: 16,
        keys: 5,
        value_bytes: 32,
    };
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--paths" => args.paths = value,
            "--subset" => args.subset = Some(value),
            "--mount" => args.mount = value,
            "--concurrency" => args.concurrency = value.parse()?,
            "--keys" => args.keys = value.parse()?,
            "--value-bytes" => args.value_bytes = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    if args.paths.is_empty() {
        bail!("--paths FILE is required");
    }
    Ok(args)
}

fn read_lines(file: &str) -> anyhow::Result<Vec<String>> {
    Ok(std::fs::read_to_string(file)
        .with_context(|| format!("cannot read {file}"))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

fn main() -> anyhow::Result<()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("crypto provider already installed"))?;
    let args = parse_args()?;
    let paths = read_lines(&args.paths)?;
    let subset: HashSet<String> = match &args.subset {
        Some(f) => read_lines(f)?.into_iter().collect(),
        None => HashSet::new(),
    };
    let addr = std::env::var("VAULT_ADDR")
        .context("VAULT_ADDR is not set")?
        .trim_end_matches('/')
        .to_owned();
    let token = std::env::var("VAULT_TOKEN").context("VAULT_TOKEN is not set")?;
    let mut data = Map::new();
    for k in 0..args.keys {
        data.insert(
            format!("KEY_{k}"),
            Value::String("x".repeat(args.value_bytes)),
        );
    }
    let floor = Floor {
        http: reqwest::Client::builder().build()?,
        addr,
        token,
        mount: format!("{}/", args.mount.trim_end_matches('/')),
        data: Value::Object(data),
        counts: Counts::default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let n = paths.len();
    runtime.block_on(run(&floor, &args, paths, &subset))?;
    let wall = started.elapsed().as_secs_f64();
    let c = &floor.counts;
    let (read, write, delete, list, errors) = (
        c.read.load(Ordering::Relaxed),
        c.write.load(Ordering::Relaxed),
        c.delete.load(Ordering::Relaxed),
        c.list.load(Ordering::Relaxed),
        c.errors.load(Ordering::Relaxed),
    );
    println!(
        "{}",
        json!({
            "mode": args.mode,
            "paths": n,
            "concurrency": args.concurrency,
            "requests": {"read": read, "write": write, "delete": delete, "list": list,
                         "total": read + write + delete + list},
            "errors": errors,
            "wall_s": wall,
        })
    );
    if errors > 0 {
        std::process::exit(1);
    }
    Ok(())
}

async fn run(
    floor: &Floor,
    args: &Args,
    paths: Vec<String>,
    subset: &HashSet<String>,
) -> anyhow::Result<()> {
    let c = args.concurrency.max(1);
    let op = match args.mode.as_str() {
        "clean" => return clean(floor, c, paths).await,
        m @ ("create" | "read" | "update" | "prune" | "put") => m,
        other => bail!("unknown mode {other}"),
    };
    stream::iter(paths.iter())
        .map(|p| async move {
            match op {
                "create" => {
                    floor.read(p).await;
                    floor.create(p).await;
                }
                "read" => {
                    floor.read(p).await;
                }
                "update" => {
                    let version = floor.read(p).await;
                    if subset.contains(p) {
                        floor.write(p, Some(version)).await;
                    }
                }
                "prune" => {
                    floor.read(p).await;
                    if subset.contains(p) {
                        floor.delete(p).await;
                    }
                }
                _ => {
                    floor.write(p, None).await;
                }
            }
        })
        .buffer_unordered(c)
        .collect::<Vec<()>>()
        .await;
    Ok(())
}

/// Breadth-first listing of every folder, then one metadata delete per leaf.
async fn clean(floor: &Floor, c: usize, prefixes: Vec<String>) -> anyhow::Result<()> {
    let (mut folders, mut leaves): (Vec<String>, Vec<String>) =
        prefixes.into_iter().partition(|p| p.ends_with('/'));
    while !folders.is_empty() {
        let found: Vec<Vec<String>> = stream::iter(std::mem::take(&mut folders))
            .map(|f| async move { floor.list(&f).await })
            .buffer_unordered(c)
            .collect()
            .await;
        for key in found.into_iter().flatten() {
            if key.ends_with('/') {
                folders.push(key);
            } else {
                leaves.push(key);
            }
        }
    }
    stream::iter(leaves.iter())
        .map(|p| floor.destroy(p))
        .buffer_unordered(c)
        .collect::<Vec<()>>()
        .await;
    Ok(())
}
