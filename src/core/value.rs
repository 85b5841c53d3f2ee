//! Secret values that cannot be printed by accident.
//!
//! Every byte that came out of a Kubernetes Secret or a Vault KV entry is held
//! in a [`SecretValue`]. It has no `Display`, its `Debug` is redacted, and its
//! memory is zeroed when dropped, so a stray `{:?}` in a log line, an error
//! message or a panic cannot leak it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

/// One secret value, as the UTF-8 string Vault stores.
///
/// Shared, not copied: the Secret as read, the desired path and the write
/// all hold the same allocation, so a batch keeps one copy of each value.
/// It is zeroed when the last holder drops it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Arc<Zeroizing<String>>);

impl SecretValue {
    pub fn new(value: String) -> Self {
        Self(Arc::new(Zeroizing::new(value)))
    }

    /// Decodes the bytes of a Kubernetes Secret key.
    ///
    /// Vault KV stores JSON strings, so bytes that are not UTF-8 have no
    /// faithful representation there. vault-sync refuses them rather than
    /// silently re-encoding them (a consumer reading the Vault path would get
    /// different bytes than the pod gets from the Secret).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, NotUtf8> {
        match String::from_utf8(bytes) {
            Ok(s) => Ok(Self::new(s)),
            Err(err) => {
                // Zero the rejected bytes too.
                let _ = Zeroizing::new(err.into_bytes());
                Err(NotUtf8)
            }
        }
    }

    /// The value itself. Only the Vault adapter (to send it) and comparisons
    /// call this; nothing that renders output may.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// The SHA-256 of a value, which is all a diff needs of what Vault holds.
///
/// Values read from Vault are hashed as they are parsed and never kept: a
/// run holds one copy of each value (the one it may write), not two, and
/// less secret material sits in memory. Its `Debug` prints nothing of the
/// hash either: a hash of a short password can be brute-forced.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ValueDigest([u8; 32]);

impl ValueDigest {
    pub fn of(value: &str) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
        let mut out = [0; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }
}

impl SecretValue {
    pub fn digest(&self) -> ValueDigest {
        ValueDigest::of(self.expose())
    }
}

impl fmt::Debug for ValueDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ValueDigest(<redacted>)")
    }
}

/// The value was not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUtf8;

/// Key → value, ordered so that plans and writes are deterministic.
pub type SecretMap = BTreeMap<String, SecretValue>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_compare_values_and_print_nothing() {
        let a = SecretValue::new("hunter2".into());
        assert_eq!(a.digest(), ValueDigest::of("hunter2"));
        assert_ne!(a.digest(), ValueDigest::of("hunter3"));
        assert_ne!(ValueDigest::of(""), ValueDigest::of(" "));
        assert_eq!(format!("{:?}", a.digest()), "ValueDigest(<redacted>)");
    }

    #[test]
    fn debug_is_redacted() {
        let v = SecretValue::new("hunter2-very-secret".into());
        let rendered = format!("{v:?} {:?}", Some(&v));
        assert!(!rendered.contains("hunter2"), "{rendered}");
        let mut map = SecretMap::new();
        map.insert("password".into(), v);
        let rendered = format!("{map:?}");
        assert!(rendered.contains("password"));
        assert!(!rendered.contains("hunter2"));
    }

    #[test]
    fn binary_bytes_are_refused() {
        assert_eq!(
            SecretValue::from_bytes(vec![0xff, 0xfe, 0x00]),
            Err(NotUtf8)
        );
        assert_eq!(
            SecretValue::from_bytes(b"ok".to_vec()).map(|v| v.expose().to_owned()),
            Ok("ok".to_owned())
        );
    }
}
