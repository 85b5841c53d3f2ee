//! The README's CI recipes run as written (issue #21, item 4).
//!
//! Each recipe is a code block that follows a `<!-- ci-recipe: NAME -->`
//! line in README.md. The test takes the recipe's script part out of the
//! README (so the docs and this test cannot drift apart) and runs it with
//! the shell options of the runner it is written for:
//!
//! - GitHub Actions: the `run:` of a step, as a file run by
//!   `bash --noprofile --norc -eo pipefail FILE` (the runner's default shell);
//! - GitLab CI: the `script:` lines, one script, run by `sh -e` (and by
//!   `bash -eo pipefail`, what the runner uses where the image has bash);
//! - the generic step: `sh -e`.
//!
//! Against the local stack, the only change to the recipe is the login: the
//! recipe's JWT settings (`VAULT_SYNC_AUTH=jwt`, `VAULT_SYNC_ROLE`) are
//! replaced by `VAULT_SYNC_AUTH=token` and a Vault token, and the recipe's
//! placeholder `VAULT_ADDR`/`KUBECONFIG` by the stack's. A `vault-sync` shim
//! first on `PATH` adds `-n <test namespace>` (as every test's CLI call
//! does), so the recipe sees only this test's Deployments.
//!
//! Each test checks the documented exit codes (drift, then in sync) and that
//! the plan artifact the recipe uploads is kept as a file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::harness::{PodRefs, STACK, TestNs};

const PATH: &str = "vault-sync.io/path";

/// GitHub Actions' default `shell: bash` for `run:` steps.
const GITHUB_SHELL: &[&str] = &["bash", "--noprofile", "--norc", "-eo", "pipefail"];
const POSIX_SH: &[&str] = &["sh", "-e"];
const BASH_PIPEFAIL: &[&str] = &["bash", "-eo", "pipefail"];

/// The recipe's environment keys the test replaces (login and placeholders);
/// a recipe that sets anything else must say so here first.
const REPLACED_ENV: &[&str] = &[
    "VAULT_ADDR",
    "KUBECONFIG",
    "VAULT_SYNC_AUTH",
    "VAULT_SYNC_ROLE",
];

// ---------------------------------------------------------------------------
// Taking recipes out of the README
// ---------------------------------------------------------------------------

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The body of the fenced code block right after `<!-- ci-recipe: NAME -->`
/// (and its language), exactly one such marker.
fn recipe(name: &str) -> (String, String) {
    let text = readme();
    let marker = format!("<!-- ci-recipe: {name} -->");
    let found: Vec<_> = text.match_indices(&marker).collect();
    assert_eq!(found.len(), 1, "README.md must have exactly one `{marker}`");
    let rest = &text[found[0].0 + marker.len()..];
    let rest = rest.trim_start_matches(['\n', ' ']);
    let fence = rest
        .strip_prefix("```")
        .unwrap_or_else(|| panic!("`{marker}` must be followed by a fenced code block"));
    let (lang, body) = fence.split_once('\n').expect("code block");
    let end = body.find("\n```").expect("closing fence");
    (lang.trim().to_owned(), body[..end + 1].to_owned())
}

fn yaml_recipe(name: &str) -> Value {
    let (lang, body) = recipe(name);
    assert_eq!(lang, "yaml", "recipe {name} is a YAML block");
    serde_saphyr::from_str(&body)
        .unwrap_or_else(|e| panic!("recipe {name} is not valid YAML: {e}\n{body}"))
}

/// The one step of `job` whose `run:` contains `needle`.
fn github_step<'a>(workflow: &'a Value, job: &str, needle: &str) -> &'a Value {
    let steps = workflow["jobs"][job]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("job {job} has no steps"));
    let found: Vec<_> = steps
        .iter()
        .filter(|s| s["run"].as_str().is_some_and(|r| r.contains(needle)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "job {job}: exactly one step must run `{needle}`"
    );
    found[0]
}

/// The `env:` keys of a step, its job and the workflow (GitHub's order of
/// precedence does not matter here: all are replaced).
fn github_env_keys(workflow: &Value, job: &str, step: &Value) -> Vec<String> {
    [
        &workflow["env"],
        &workflow["jobs"][job]["env"],
        &step["env"],
    ]
    .iter()
    .filter_map(|v| v.as_object())
    .flat_map(|m| m.keys().cloned())
    .collect()
}

/// The path the `actions/upload-artifact` step of `job` uploads, checking
/// it runs even when an earlier step failed when `always` is asked.
fn github_upload_path(workflow: &Value, job: &str, always: bool) -> String {
    let steps = workflow["jobs"][job]["steps"].as_array().expect("steps");
    let upload = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact@"))
        })
        .unwrap_or_else(|| panic!("job {job} uploads no artifact"));
    if always {
        assert_eq!(
            upload["if"].as_str(),
            Some("always()"),
            "job {job}: the artifact must be kept when the plan step fails (drift)"
        );
    }
    upload["with"]["path"]
        .as_str()
        .expect("upload path")
        .to_owned()
}

fn assert_only_replaced_env(keys: &[String], recipe: &str) {
    for key in keys {
        assert!(
            REPLACED_ENV.contains(&key.as_str()),
            "recipe {recipe} sets {key}: the test does not know how to run it here"
        );
    }
}

// ---------------------------------------------------------------------------
// Running a script part
// ---------------------------------------------------------------------------

/// A work directory (the CI job's checkout) with a `vault-sync` shim on PATH.
struct Job {
    ns: TestNs,
    dir: tempfile::TempDir,
}

/// What a script did.
struct Ran {
    code: i32,
    output: String,
}

impl Job {
    async fn new(label: &str) -> Self {
        let ns = TestNs::new(label).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin dir");
        let shim = bin.join("vault-sync");
        std::fs::write(
            &shim,
            format!(
                "#!/bin/sh\nexec '{}' \"$@\" -n '{}'\n",
                env!("CARGO_BIN_EXE_vault-sync"),
                ns.name
            ),
        )
        .expect("shim");
        let mut perms = std::fs::metadata(&shim).expect("shim").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&shim, perms).expect("chmod shim");
        Self { ns, dir }
    }

    /// One Secret `name`, one Deployment `name` annotated with the path
    /// `secret/it/<ns>/app` and reading the Secret: `plan` has a create of
    /// [`Self::display`]`(name)` pending.
    async fn drift(&self, name: &str) {
        let value = self.ns.value(name);
        self.ns.secret(name, &[("password", &value)]).await;
        let base = self.ns.path("secret", "app");
        self.ns
            .deployment(name, &[(PATH, &base)], &PodRefs::new().env_from(name))
            .await;
    }

    /// The display path the Deployment `name` of [`Self::drift`] writes.
    fn display(&self, name: &str) -> String {
        self.ns.path("secret", &format!("app/{name}"))
    }

    fn workdir(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.workdir().join(name)
    }

    /// Runs `script` as a file with `shell` in the job's directory, with the
    /// stack's environment and a token login.
    fn run(&self, shell: &[&str], script: &str) -> Ran {
        let file = self.workdir().join(".ci-step.sh");
        std::fs::write(&file, script).expect("write script");
        let path = format!(
            "{}:{}",
            self.workdir().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new(shell[0])
            .args(&shell[1..])
            .arg(&file)
            .current_dir(self.workdir())
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.workdir())
            .env("VAULT_ADDR", STACK.vault_addr())
            .env("KUBECONFIG", STACK.kubeconfig())
            .env("VAULT_SYNC_AUTH", "token")
            .env("VAULT_TOKEN", &self.ns.cli_token)
            .env("VAULT_SYNC_INDEX_MOUNT", &self.ns.index_mount)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {shell:?}: {e}"));
        let output = format!(
            "--- script ({}) ---\n{script}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            shell.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut secrets = self.ns.values();
        secrets.push(self.ns.cli_token.clone());
        crate::harness::assert_no_leak(&[&output], &secrets);
        Ran {
            code: out
                .status
                .code()
                .unwrap_or_else(|| panic!("killed by a signal:\n{output}")),
            output,
        }
    }

    /// `vault-sync run` outside the recipe: Vault is then in sync.
    async fn sync(&self) {
        self.ns.cli(&["run"]).await.assert_code(0);
    }

    /// The plan JSON the recipe kept, with its pending state.
    fn kept_plan(&self, name: &str, ran: &Ran) -> Value {
        let path = self.file(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("artifact {name} not kept ({e}):\n{}", ran.output));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("artifact {name} is not JSON ({e}):\n{}", ran.output))
    }
}

fn assert_code(ran: &Ran, expected: i32, what: &str) {
    assert_eq!(
        ran.code, expected,
        "{what}: expected exit {expected}\n{}",
        ran.output
    );
}

/// Runs a drift-gate script: exit 2 with a kept plan that lists the
/// create, then exit 0 once Vault is in sync.
async fn drift_gate(job: &Job, shell: &[&str], script: &str, artifact: &str, what: &str) {
    let _ = std::fs::remove_file(job.file(artifact));
    let ran = job.run(shell, script);
    assert_code(&ran, 2, &format!("{what}, drift"));
    let plan = job.kept_plan(artifact, &ran);
    assert_eq!(plan["changes_pending"], true, "{what}: {plan}");
    assert_eq!(plan["summary"]["create"], 1, "{what}: {plan}");
    assert!(
        ran.output
            .contains(&format!("create {}", job.display("db"))),
        "{what}: the drift is listed in the job log\n{}",
        ran.output
    );
    job.sync().await;
    let ran = job.run(shell, script);
    assert_code(&ran, 0, &format!("{what}, in sync"));
    let plan = job.kept_plan(artifact, &ran);
    assert_eq!(plan["changes_pending"], false, "{what}: {plan}");
}

// ---------------------------------------------------------------------------
// The recipes
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_shell_recipe_exits_with_the_plan_code_under_sh_e() {
    let (lang, script) = recipe("shell");
    assert_eq!(lang, "sh");
    let job = Job::new("ci-sh").await;
    job.drift("db").await;
    drift_gate(&job, POSIX_SH, &script, "plan.json", "generic, sh -e").await;

    // Errors: a Deployment whose Secret is missing exits 1, naming it.
    job.ns
        .deployment(
            "broken",
            &[(PATH, &job.ns.path("secret", "broken"))],
            &PodRefs::new().key_ref("missing-secret", "password"),
        )
        .await;
    let ran = job.run(POSIX_SH, &script);
    assert_code(&ran, 1, "generic, sh -e, errors");
    assert!(
        ran.output.contains("missing-secret"),
        "the error is printed:\n{}",
        ran.output
    );
    job.kept_plan("plan.json", &ran);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_actions_recipe_fails_on_drift_and_keeps_the_plan() {
    let workflow = yaml_recipe("github");
    let step = github_step(&workflow, "vault-drift", "vault-sync plan");
    assert_only_replaced_env(&github_env_keys(&workflow, "vault-drift", step), "github");
    assert_eq!(
        step["env"]["VAULT_SYNC_AUTH"], "jwt",
        "the recipe logs in with the job's ID token"
    );
    let script = step["run"].as_str().expect("run").to_owned();
    let artifact = github_upload_path(&workflow, "vault-drift", true);
    assert_eq!(artifact, "plan.json");

    let job = Job::new("ci-gh").await;
    job.drift("db").await;
    drift_gate(&job, GITHUB_SHELL, &script, &artifact, "github, bash -e").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_recipe_exits_2_on_drift_allowed_and_keeps_the_plan() {
    let pipeline = yaml_recipe("gitlab");
    let job_def = &pipeline["vault-drift"];
    let script: String = job_def["script"]
        .as_array()
        .expect("script: a list of lines")
        .iter()
        .map(|l| format!("{}\n", l.as_str().expect("script line")))
        .collect();
    let env: Vec<String> = job_def["variables"]
        .as_object()
        .expect("variables")
        .keys()
        .filter(|k| k.as_str() != "VS_VERSION") // before_script's, not run here
        .cloned()
        .collect();
    assert_only_replaced_env(&env, "gitlab");
    assert_eq!(
        job_def["allow_failure"]["exit_codes"],
        serde_json::json!([2]),
        "drift (exit 2) is allowed"
    );
    assert_eq!(
        job_def["artifacts"]["when"], "always",
        "the plan is kept on drift too (the default is on_success)"
    );
    assert_eq!(
        job_def["artifacts"]["paths"],
        serde_json::json!(["plan.json"])
    );
    // The image runs a shell script: not the distroless image.
    let image = job_def["image"].as_str().expect("image");
    assert!(
        !image.contains("vault-sync") && !image.contains("distroless"),
        "GitLab's script: needs a shell, which {image} does not have"
    );

    let job = Job::new("ci-gl").await;
    job.drift("db").await;
    drift_gate(&job, POSIX_SH, &script, "plan.json", "gitlab, sh -e").await;
    job.drift("db2").await;
    let ran = job.run(BASH_PIPEFAIL, &script);
    assert_code(&ran, 2, "gitlab, bash -eo pipefail, drift");
    job.kept_plan("plan.json", &ran);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_plans_recipe_plans_in_review_then_applies_after_merge() {
    let workflow = yaml_recipe("saved-plans");
    let plan_step = github_step(&workflow, "plan", "vault-sync plan");
    let apply_step = github_step(&workflow, "apply", "vault-sync run --plan");
    for (job, step) in [("plan", plan_step), ("apply", apply_step)] {
        assert_only_replaced_env(&github_env_keys(&workflow, job, step), "saved-plans");
    }
    let artifact = github_upload_path(&workflow, "plan", false);
    assert_eq!(artifact, "plan.vsp");
    let plan_script = plan_step["run"].as_str().expect("run");
    let apply_script = apply_step["run"].as_str().expect("run");

    let job = Job::new("ci-sp").await;
    job.drift("db").await;
    // In review: changes pending is a passing step, and the file is kept.
    let ran = job.run(GITHUB_SHELL, plan_script);
    assert_code(&ran, 0, "saved plans, plan job with changes pending");
    let saved = job.kept_plan(&artifact, &ran);
    assert_eq!(saved["kind"], "vault-sync-plan", "{saved}");
    let paths: Vec<&str> = saved["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["path"].as_str())
        .collect();
    assert_eq!(paths, [job.display("db")]);

    // After merge: the downloaded artifact is applied, exactly.
    let ran = job.run(GITHUB_SHELL, apply_script);
    assert_code(&ran, 0, "saved plans, apply job");
    let written = job.ns.vault.kv2_read("secret", &job.ns.rel("app/db")).await;
    assert!(written.is_some(), "the plan was applied:\n{}", ran.output);

    // Applying a plan twice: every change is now stale, the job fails.
    let ran = job.run(GITHUB_SHELL, apply_script);
    assert_code(&ran, 1, "saved plans, the same plan applied twice (stale)");

    // A plan step that errors fails the job (exit 1 is not "pending").
    job.ns
        .deployment(
            "broken",
            &[(PATH, &job.ns.path("secret", "broken"))],
            &PodRefs::new().key_ref("missing-secret", "password"),
        )
        .await;
    let ran = job.run(GITHUB_SHELL, plan_script);
    assert_code(&ran, 1, "saved plans, plan job with errors");
}
