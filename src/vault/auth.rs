//! Vault auth methods. Logins go through vaultrs.

use vaultrs::client::VaultClient;
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

use super::client::Attempt;
use super::error::{ServerSays, VaultError, server_says_text};
use crate::error_chain;

/// Where a JWT comes from: read fresh at every login, because projected
/// service-account tokens are rotated by the kubelet.
#[derive(Clone)]
pub enum JwtSource {
    File(String),
    Value(Zeroizing<String>),
}

impl JwtSource {
    fn read(&self) -> Result<Zeroizing<String>, VaultError> {
        match self {
            Self::Value(v) => Ok(v.clone()),
            Self::File(path) => std::fs::read_to_string(path)
                .map(|s| Zeroizing::new(s.trim().to_owned()))
                .map_err(|e| VaultError::Config(format!("cannot read the JWT file {path}: {e}"))),
        }
    }
}

#[derive(Clone)]
pub enum AuthMethod {
    /// A token given as is (`VAULT_TOKEN`, `~/.vault-token`).
    Token(Zeroizing<String>),
    Kubernetes {
        mount: String,
        role: String,
        jwt: JwtSource,
    },
    AppRole {
        mount: String,
        role_id: Zeroizing<String>,
        secret_id: Zeroizing<String>,
    },
    Jwt {
        mount: String,
        role: Option<String>,
        jwt: JwtSource,
    },
}

impl AuthMethod {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Token(_) => "token",
            Self::Kubernetes { .. } => "kubernetes",
            Self::AppRole { .. } => "approle",
            Self::Jwt { .. } => "jwt",
        }
    }

    /// A static token cannot be renewed once revoked; every other method can
    /// log in again.
    pub fn can_relogin(&self) -> bool {
        !matches!(self, Self::Token(_))
    }

    pub(crate) async fn login(
        &self,
        client: &VaultClient,
        addr: &str,
    ) -> Result<Zeroizing<String>, Attempt> {
        let final_err = |e: VaultError| Attempt::Final(e);
        let result = match self {
            Self::Token(token) => {
                if token.is_empty() {
                    return Err(final_err(VaultError::AuthFailed {
                        method: "token".into(),
                        message: "no token: set VAULT_TOKEN (or BAO_TOKEN), run `vault login`, or choose another --vault-auth".into(),
                    }));
                }
                return Ok(token.clone());
            }
            Self::Kubernetes { mount, role, jwt } => {
                let jwt = jwt.read().map_err(final_err)?;
                vaultrs::auth::kubernetes::login(client, mount, role, &jwt).await
            }
            Self::AppRole {
                mount,
                role_id,
                secret_id,
            } => vaultrs::auth::approle::login(client, mount, role_id, secret_id).await,
            Self::Jwt { mount, role, jwt } => {
                let jwt = jwt.read().map_err(final_err)?;
                vaultrs::auth::oidc::login(client, mount, &jwt, role.clone()).await
            }
        };
        match result {
            Ok(info) => Ok(Zeroizing::new(info.client_token)),
            Err(e) => Err(classify_login_error(self, addr, e)),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Token(_) => "token".into(),
            Self::Kubernetes { mount, role, .. } => {
                format!("kubernetes (auth/{mount}, role {role:?})")
            }
            Self::AppRole { mount, .. } => format!("approle (auth/{mount})"),
            Self::Jwt { mount, role, .. } => format!(
                "jwt (auth/{mount}, role {})",
                role.as_deref().unwrap_or("<default>")
            ),
        }
    }
}

fn classify_login_error(method: &AuthMethod, addr: &str, e: ClientError) -> Attempt {
    let auth_failed = |message: String| {
        Attempt::Final(VaultError::AuthFailed {
            method: method.describe(),
            message,
        })
    };
    match e {
        ClientError::APIError { code, errors } => {
            let detail = if errors.is_empty() {
                format!("status {code}")
            } else {
                format!("{} (status {code})", errors.join("; "))
            };
            match code {
                503 if server_says_text(&detail) == ServerSays::Sealed => {
                    Attempt::Retry(VaultError::Sealed)
                }
                code if super::client::retryable_status(code) => {
                    Attempt::Retry(VaultError::Status {
                        status: code,
                        operation: "write",
                        path: "auth/.../login".into(),
                        message: detail,
                    })
                }
                _ => auth_failed(format!(
                    "{detail}; check the role name, the auth mount path, and that the role binds this identity"
                )),
            }
        }
        // Transport failures (refused, reset, timeout) are worth retrying;
        // TLS failures are not, as for every other request.
        ClientError::RestClientError { source } => {
            let error = VaultError::Connection {
                addr: addr.to_owned(),
                message: error_chain(&source),
            };
            if super::client::is_tls_failure(&source) {
                Attempt::Final(error)
            } else {
                Attempt::Retry(error)
            }
        }
        other => auth_failed(error_chain(&other)),
    }
}
