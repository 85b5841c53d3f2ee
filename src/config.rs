//! Resolving flags and the Vault CLI's environment variables into a
//! [`VaultConfig`]. Takes the environment as a function so it is testable.

use std::path::Path;

use zeroize::Zeroizing;

use crate::cli::{GlobalArgs, VaultAuth};
use crate::vault::{AuthMethod, JwtSource, VaultConfig};

/// The service-account token a pod gets.
pub const POD_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
pub const DEFAULT_VAULT_ADDR: &str = "https://127.0.0.1:8200";

/// `VAULT_X`, else the OpenBao spelling `BAO_X`.
fn vault_env(env: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(&format!("VAULT_{name}"))
        .or_else(|| env(&format!("BAO_{name}")))
        .filter(|v| !v.is_empty())
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "t" | "true" | "yes")
}

pub fn in_pod(env: &impl Fn(&str) -> Option<String>) -> bool {
    env("KUBERNETES_SERVICE_HOST").is_some() && Path::new(POD_TOKEN_FILE).exists()
}

pub fn vault_config(
    args: &GlobalArgs,
    env: impl Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Result<VaultConfig, String> {
    let addr = args
        .vault_addr
        .clone()
        .or_else(|| vault_env(&env, "ADDR"))
        .unwrap_or_else(|| DEFAULT_VAULT_ADDR.to_owned());
    let method = args.vault_auth.unwrap_or(if in_pod(&env) {
        VaultAuth::Kubernetes
    } else {
        VaultAuth::Token
    });
    let jwt_file = || {
        args.vault_jwt_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| POD_TOKEN_FILE.to_owned())
    };
    let mount = |default: &str| {
        args.vault_auth_path
            .clone()
            .unwrap_or_else(|| default.to_owned())
            .trim_matches('/')
            .trim_start_matches("auth/")
            .to_owned()
    };
    let auth = match method {
        VaultAuth::Token => {
            let token = vault_env(&env, "TOKEN").or_else(|| {
                home.and_then(|h| std::fs::read_to_string(h.join(".vault-token")).ok())
                    .map(|t| t.trim().to_owned())
            });
            AuthMethod::Token(Zeroizing::new(token.unwrap_or_default()))
        }
        VaultAuth::Kubernetes => AuthMethod::Kubernetes {
            mount: mount("kubernetes"),
            role: args.vault_role.clone(),
            jwt: JwtSource::File(jwt_file()),
        },
        VaultAuth::Approle => {
            let role_id = vault_env(&env, "ROLE_ID")
                .ok_or("AppRole auth needs VAULT_ROLE_ID (and VAULT_SECRET_ID)")?;
            let secret_id =
                vault_env(&env, "SECRET_ID").ok_or("AppRole auth needs VAULT_SECRET_ID")?;
            AuthMethod::AppRole {
                mount: mount("approle"),
                role_id: Zeroizing::new(role_id),
                secret_id: Zeroizing::new(secret_id),
            }
        }
        VaultAuth::Jwt => AuthMethod::Jwt {
            mount: mount("jwt"),
            role: Some(args.vault_role.clone()),
            jwt: match (&args.vault_jwt_file, env("VAULT_SYNC_JWT")) {
                (Some(file), _) => JwtSource::File(file.display().to_string()),
                (None, Some(jwt)) => JwtSource::Value(Zeroizing::new(jwt)),
                (None, None) => {
                    return Err(
                        "JWT auth needs --vault-jwt-file or VAULT_SYNC_JWT (the CI job's ID token)"
                            .into(),
                    );
                }
            },
        },
    };
    let mut ca_certs: Vec<String> = vault_env(&env, "CACERT").into_iter().collect();
    if let Some(dir) = vault_env(&env, "CAPATH") {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("VAULT_CAPATH {dir}: {e}"))?;
        let mut files: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        files.sort();
        ca_certs.extend(files);
    }
    let client_cert = match (
        vault_env(&env, "CLIENT_CERT"),
        vault_env(&env, "CLIENT_KEY"),
    ) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("set both VAULT_CLIENT_CERT and VAULT_CLIENT_KEY, or neither".into()),
    };
    Ok(VaultConfig {
        addr,
        namespace: args
            .vault_namespace
            .clone()
            .or_else(|| vault_env(&env, "NAMESPACE")),
        ca_certs,
        client_cert,
        skip_verify: vault_env(&env, "SKIP_VERIFY").is_some_and(|v| truthy(&v)),
        timeout: args.vault_timeout,
        auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;
    use std::collections::HashMap;

    fn args(extra: &[&str]) -> GlobalArgs {
        let mut argv = vec!["vault-sync"];
        argv.extend_from_slice(extra);
        argv.push("plan");
        Cli::try_parse_from(argv).unwrap().global
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn bao_spellings_are_honoured() {
        let c = vault_config(
            &args(&[]),
            env(&[
                ("BAO_ADDR", "http://bao:8200"),
                ("BAO_TOKEN", "t"),
                ("BAO_NAMESPACE", "team"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(c.addr, "http://bao:8200");
        assert_eq!(c.namespace.as_deref(), Some("team"));
        assert!(matches!(c.auth, AuthMethod::Token(ref t) if t.as_str() == "t"));
    }

    #[test]
    fn vault_spelling_wins_and_flag_wins_over_env() {
        let c = vault_config(
            &args(&["--vault-addr", "http://flag:1"]),
            env(&[("VAULT_ADDR", "http://v:1"), ("BAO_ADDR", "http://b:1")]),
            None,
        )
        .unwrap();
        assert_eq!(c.addr, "http://flag:1");
        let c = vault_config(
            &args(&[]),
            env(&[("BAO_ADDR", "http://b:1"), ("VAULT_ADDR", "http://v:1")]),
            None,
        )
        .unwrap();
        assert_eq!(c.addr, "http://v:1");
    }

    #[test]
    fn kubernetes_auth_defaults_match_the_operator() {
        let c = vault_config(&args(&["--vault-auth", "kubernetes"]), env(&[]), None).unwrap();
        match c.auth {
            AuthMethod::Kubernetes { mount, role, jwt } => {
                assert_eq!(mount, "kubernetes");
                assert_eq!(role, "vault-sync-operator");
                assert!(matches!(jwt, JwtSource::File(f) if f == POD_TOKEN_FILE));
            }
            _ => panic!("kubernetes expected"),
        }
    }

    #[test]
    fn approle_needs_ids_and_client_cert_needs_both() {
        assert!(vault_config(&args(&["--vault-auth", "approle"]), env(&[]), None).is_err());
        assert!(vault_config(&args(&[]), env(&[("VAULT_CLIENT_CERT", "c")]), None).is_err());
        let c = vault_config(
            &args(&["--vault-auth", "approle", "--vault-auth-path", "auth/ci/"]),
            env(&[
                ("VAULT_ROLE_ID", "r"),
                ("VAULT_SECRET_ID", "s"),
                ("VAULT_SKIP_VERIFY", "true"),
            ]),
            None,
        )
        .unwrap();
        assert!(matches!(c.auth, AuthMethod::AppRole { ref mount, .. } if mount == "ci"));
        assert!(c.skip_verify);
    }
}
