# Least-privilege Vault/OpenBao policy for vault-sync writing to the KV v2
# mount `secret/`. For another KV v2 mount replace `secret/` with its path;
# for a KV v1 mount use `<mount>/*` (create/read/update/delete/list) instead
# of the data/, metadata/, delete/ and destroy/ stanzas.
#
#   bao policy write vault-sync examples/vault-policy.hcl
#
# Narrow `*` to the path prefix vault-sync manages (e.g. `secret/data/k8s/*`)
# to confine it further; keep the same prefix in every secret/ stanza.

# Secret content: vault-sync reads the current value (and, in the same
# response, the version and custom_metadata holding the ownership marker) to
# compare before writing, creates new paths and writes new versions when the
# Kubernetes Secret changed. `patch` allows merge-patch updates.
path "secret/data/*" {
  capabilities = ["create", "read", "update", "patch", "delete"]
}

# Metadata: the ownership marker lives in custom_metadata, written with a
# merge-patch so a user's own keys are kept; `list` walks the tree to find
# paths vault-sync owns (orphans to prune); `delete` removes all versions
# and metadata of an owned orphan.
path "secret/metadata/*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list"]
}

# Pruning orphans: soft-delete specific versions of a path vault-sync owns.
path "secret/delete/*" {
  capabilities = ["update"]
}

# Pruning orphans with destroy: permanently remove version data.
path "secret/destroy/*" {
  capabilities = ["update"]
}

# Mount discovery: vault-sync looks up which mount a path belongs to and
# whether it is KV v1 or v2 from the server's mount table instead of guessing
# from the path string.
path "sys/internal/ui/mounts/*" {
  capabilities = ["read"]
}

# `vault-sync check`: asks which capabilities its own token has on each target
# path, to report a missing grant before any write is attempted.
path "sys/capabilities-self" {
  capabilities = ["update"]
}

# Token introspection: TTL and renewability of its own token.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

# (No auth/token/renew-self: when a login-based token expires mid-run,
# vault-sync logs in again rather than renewing it.)
