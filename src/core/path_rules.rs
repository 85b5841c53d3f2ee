//! Namespace-bound path rules (`--allow-path NAMESPACE_GLOB=PATH_PREFIX`):
//! which Vault paths a workload in a namespace may write.
//!
//! Without a rule, a team that can create a Deployment in `team-a` can
//! create paths anywhere vault-sync's Vault policy allows, e.g. under
//! `secret/team-b/`, where team B's applications will later read them
//! (ownership stops overwrites of existing paths, not squatting on new
//! ones). With rules, a workload may only write under a prefix of a rule
//! whose glob matches its namespace; `{namespace}` in a prefix stands for
//! that namespace.
//!
//! Matching is by location, not by string: the rule's prefix and the path
//! are both resolved against the path's mount, so the two KV v2 spellings
//! (`secret/data/x` and `secret/x`) are one, and a prefix matches whole
//! segments only (`secret/apps/team-a` does not cover
//! `secret/apps/team-a-evil`). Rules apply to the path as the annotation
//! names it: a `--cluster-name` prefix is added after them.

use std::fmt;
use std::str::FromStr;

use super::vault_path::{self, KvLocation, KvVersion};

/// The placeholder a prefix may hold.
pub const NAMESPACE: &str = "{namespace}";

/// One `NAMESPACE_GLOB=PATH_PREFIX` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    glob: String,
    /// Validated, without a trailing `/`.
    prefix: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error(
        "path rule {0:?} is not NAMESPACE_GLOB=PATH_PREFIX (e.g. \"*=secret/apps/{{namespace}}/\")"
    )]
    Shape(String),
    #[error(
        "path rule {rule:?}: the namespace glob {glob:?} may hold only lowercase letters, digits, '-', '*' and '?'"
    )]
    Glob { rule: String, glob: String },
    #[error(
        "path rule {rule:?}: the prefix is empty; to let every namespace write anywhere, give no rule at all"
    )]
    EmptyPrefix { rule: String },
    #[error("path rule {rule:?}: {error}")]
    Prefix {
        rule: String,
        error: vault_path::PathError,
    },
}

impl FromStr for PathRule {
    type Err = RuleError;

    fn from_str(rule: &str) -> Result<Self, RuleError> {
        let (glob, prefix) = rule
            .split_once('=')
            .ok_or_else(|| RuleError::Shape(rule.to_owned()))?;
        let (glob, prefix) = (glob.trim(), prefix.trim());
        if glob.is_empty()
            || !glob
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-*?".contains(c))
        {
            return Err(RuleError::Glob {
                rule: rule.to_owned(),
                glob: glob.to_owned(),
            });
        }
        // One trailing slash says "a folder"; it means the same here.
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        if prefix.is_empty() {
            return Err(RuleError::EmptyPrefix {
                rule: rule.to_owned(),
            });
        }
        // `{namespace}` is the only brace allowed; the rest must be a path
        // an annotation could name (no `..`, `//`, `%`, globs, ...).
        vault_path::validate(&prefix.replace(NAMESPACE, "ns"))
            .and_then(|p| {
                if p == prefix.replace(NAMESPACE, "ns") {
                    Ok(p)
                } else {
                    // validate() trims: whitespace inside a rule is refused.
                    Err(vault_path::PathError::BadCharacter(prefix.to_owned()))
                }
            })
            .map_err(|error| RuleError::Prefix {
                rule: rule.to_owned(),
                error,
            })?;
        Ok(Self {
            glob: glob.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

impl fmt::Display for PathRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}/", self.glob, self.prefix)
    }
}

impl PathRule {
    fn matches_namespace(&self, namespace: &str) -> bool {
        glob_match(self.glob.as_bytes(), namespace.as_bytes())
    }

    /// The prefix for `namespace`.
    fn prefix_for(&self, namespace: &str) -> String {
        self.prefix.replace(NAMESPACE, namespace)
    }
}

/// The rules of a run; empty: no bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathRules(Vec<PathRule>);

impl PathRules {
    pub const fn new(rules: Vec<PathRule>) -> Self {
        Self(rules)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a workload in `namespace` may write `location`.
    /// `cluster_prefix` is the run's `--cluster-name`, whose
    /// `clusters/<name>/` is taken off before matching. On refusal, the
    /// reason names what the namespace may write.
    pub fn allows(
        &self,
        namespace: &str,
        location: &KvLocation,
        cluster_prefix: Option<&str>,
    ) -> Result<(), String> {
        if self.0.is_empty() {
            return Ok(());
        }
        let rel = match cluster_prefix {
            Some(name) => location
                .rel
                .strip_prefix(&format!("clusters/{name}/"))
                .unwrap_or(&location.rel),
            None => &location.rel,
        };
        let prefixes: Vec<String> = self
            .0
            .iter()
            .filter(|r| r.matches_namespace(namespace))
            .map(|r| r.prefix_for(namespace))
            .collect();
        if prefixes
            .iter()
            .any(|p| covers(p, &location.mount, location.version, rel))
        {
            return Ok(());
        }
        let allowed = if prefixes.is_empty() {
            "no rule matches this namespace, so it may write nowhere".to_owned()
        } else {
            format!(
                "namespace {namespace} may write only under {}",
                prefixes
                    .iter()
                    .map(|p| format!("{p}/"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Err(format!(
            "outside the allowed paths (--allow-path): {allowed}; not written"
        ))
    }
}

/// Whether `prefix` (as a rule spells it) covers `rel` inside `mount`.
fn covers(prefix: &str, mount: &str, version: KvVersion, rel: &str) -> bool {
    let Some(rest) = prefix
        .strip_prefix(mount)
        .or_else(|| (format!("{prefix}/") == mount).then_some(""))
    else {
        return false;
    };
    // The API spelling of a KV v2 path names the same location.
    let rest = match version {
        KvVersion::V2 if rest == "data" => "",
        KvVersion::V2 => rest.strip_prefix("data/").unwrap_or(rest),
        KvVersion::V1 => rest,
    };
    rest.is_empty()
        || rel == rest
        || rel
            .strip_prefix(rest)
            .is_some_and(|after| after.starts_with('/'))
}

/// `*` any run of characters, `?` one character. Greedy with one
/// backtrack point (the last `*`), so it is linear in practice and never
/// exponential, whatever the glob.
fn glob_match(glob: &[u8], s: &[u8]) -> bool {
    let (mut g, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match glob.get(g) {
            Some(b'*') => {
                star = Some((g, i));
                g += 1;
            }
            Some(&c) if c == b'?' || c == s[i] => {
                g += 1;
                i += 1;
            }
            _ => match star {
                Some((sg, si)) => {
                    g = sg + 1;
                    i = si + 1;
                    star = Some((sg, si + 1));
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(specs: &[&str]) -> PathRules {
        PathRules::new(specs.iter().map(|s| s.parse().expect(s)).collect())
    }

    fn loc(mount: &str, rel: &str, version: KvVersion) -> KvLocation {
        KvLocation {
            mount: mount.into(),
            rel: rel.into(),
            version,
        }
    }

    fn v2(rel: &str) -> KvLocation {
        loc("secret/", rel, KvVersion::V2)
    }

    #[test]
    fn the_recommended_rule_keeps_each_namespace_in_its_folder() {
        let r = rules(&["*=secret/apps/{namespace}/"]);
        assert!(r.allows("team-a", &v2("apps/team-a/db"), None).is_ok());
        assert!(r.allows("team-a", &v2("apps/team-a"), None).is_ok());
        for rel in ["apps/team-b/db", "apps/team-a-evil/db", "apps", "other/x"] {
            let e = r.allows("team-a", &v2(rel), None).expect_err(rel);
            assert!(e.contains("secret/apps/team-a/"), "{e}");
        }
    }

    #[test]
    fn both_kv2_spellings_and_the_cluster_prefix_are_one_location() {
        let r = rules(&["*=secret/data/apps/{namespace}"]);
        assert!(r.allows("a", &v2("apps/a/x"), None).is_ok());
        let r = rules(&["*=secret/apps/{namespace}"]);
        assert!(
            r.allows("a", &v2("clusters/prod/apps/a/x"), Some("prod"))
                .is_ok()
        );
        assert!(
            r.allows("a", &v2("clusters/prod/apps/b/x"), Some("prod"))
                .is_err()
        );
        // A KV v1 mount has no `data/` spelling: it is a real folder there.
        let kv1 = |rel| loc("kv1/", rel, KvVersion::V1);
        let r = rules(&["*=kv1/data/{namespace}"]);
        assert!(r.allows("a", &kv1("data/a/x"), None).is_ok());
        assert!(r.allows("a", &kv1("a/x"), None).is_err());
    }

    #[test]
    fn globs_select_namespaces_and_rules_add_up() {
        let r = rules(&[
            "team-*=secret/teams/{namespace}",
            "ops=secret/shared",
            "t?=secret/t",
        ]);
        assert!(r.allows("team-x", &v2("teams/team-x/a"), None).is_ok());
        assert!(r.allows("ops", &v2("shared/a"), None).is_ok());
        assert!(r.allows("ops", &v2("teams/ops/a"), None).is_err());
        assert!(r.allows("t1", &v2("t/a"), None).is_ok());
        assert!(r.allows("t12", &v2("t/a"), None).is_err());
        let e = r
            .allows("dev", &v2("teams/dev/a"), None)
            .expect_err("no rule");
        assert!(e.contains("no rule matches"), "{e}");
        // Overlapping rules: either grants.
        let r = rules(&["*=secret/apps/{namespace}", "team-a=secret/apps"]);
        assert!(r.allows("team-a", &v2("apps/team-b/x"), None).is_ok());
        assert!(r.allows("team-b", &v2("apps/team-a/x"), None).is_err());
    }

    #[test]
    fn a_rule_on_the_mount_itself_covers_it_and_only_it() {
        let r = rules(&["*=secret"]);
        assert!(r.allows("a", &v2("anything"), None).is_ok());
        assert!(
            r.allows("a", &loc("secret2/", "x", KvVersion::V2), None)
                .is_err()
        );
        let r = rules(&["*=secre"]);
        assert!(r.allows("a", &v2("x"), None).is_err());
    }

    #[test]
    fn no_rule_means_no_bound() {
        assert!(PathRules::default().allows("a", &v2("x"), None).is_ok());
    }

    #[test]
    fn hostile_rules_are_refused() {
        for bad in [
            "secret/apps",
            "=secret/apps",
            "*=",
            "*=/",
            "*= ",
            "*=secret/../sys",
            "*=secret//apps",
            "*=secret/%2e%2e/x",
            "*=secret/apps//",
            "*=/secret/apps",
            "*=secret/{name}",
            "*=secret/a b",
            "*=sys/policies",
            "Team=secret/x",
            "team/a=secret/x",
            "te[am]=secret/x",
        ] {
            assert!(bad.parse::<PathRule>().is_err(), "{bad:?}");
        }
        for good in ["*=secret/apps/{namespace}/", "a-?=kv1/x", "*=secret"] {
            assert!(good.parse::<PathRule>().is_ok(), "{good:?}");
        }
    }

    #[test]
    fn glob_matching() {
        for (g, s, want) in [
            ("*", "", true),
            ("*", "abc", true),
            ("a*c", "abbbc", true),
            ("a*c", "ab", false),
            ("??", "ab", true),
            ("??", "a", false),
            ("team-*", "team-", true),
            ("*-prod", "a-prod", true),
            ("*a*a*a*a*a*a*a*b", &"a".repeat(63), false),
        ] {
            assert_eq!(glob_match(g.as_bytes(), s.as_bytes()), want, "{g} {s}");
        }
    }
}
