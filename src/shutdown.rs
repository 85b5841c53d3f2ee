//! Stopping on SIGTERM or SIGINT without losing the run's account of
//! itself.
//!
//! Kubernetes sends SIGTERM at a Job's `activeDeadlineSeconds`, on eviction
//! and on node drain. Dying there and then would leave no summary and no
//! metrics push, so the Pushgateway would never learn the run died. Instead
//! a signal only raises a flag: no new Vault request is started (the
//! adapter refuses them), no further batch is read, nothing is deleted
//! (the desired state is incomplete), the requests in flight finish within
//! [`GRACE`], and the command then reports, pushes its metrics as a failed
//! run and exits with the shell's code for the signal (143, or 130).

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// How long requests in flight may take to finish after a signal; past it
/// the command reports what it has and exits.
pub const GRACE: Duration = Duration::from_secs(10);

/// A stop request, shared by the command, the engine and the Vault adapter.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// 0: no signal yet; else the signal number.
    signal: AtomicI32,
    notify: Notify,
}

/// SIGINT and SIGTERM, as numbered on Linux.
const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

impl Shutdown {
    /// Starts listening for SIGTERM and SIGINT (on the current runtime).
    pub fn listen() -> Self {
        let shutdown = Self::default();
        let handle = shutdown.clone();
        tokio::spawn(async move {
            let signal = wait_for_signal().await;
            tracing::warn!(
                signal = signal_name(signal),
                "stopping: no new requests; finishing those in flight (at most {} s), then reporting",
                GRACE.as_secs()
            );
            handle.request(signal);
        });
        shutdown
    }

    /// Raises the flag (the signal handler; tests).
    pub fn request(&self, signal: i32) {
        if self
            .inner
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.inner.notify.notify_waiters();
        }
    }

    /// The signal received, if any.
    pub fn requested(&self) -> Option<i32> {
        match self.inner.signal.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n),
        }
    }

    /// Why a request is not started, for errors and the report.
    pub fn reason(&self) -> Option<String> {
        self.requested().map(|s| {
            format!(
                "vault-sync received {} and stopped before this request",
                signal_name(s)
            )
        })
    }

    /// Resolves once a signal arrived.
    pub async fn wait(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.requested().is_some() {
                return;
            }
            notified.await;
        }
    }

    /// The exit code a shell reports for the signal: 128 + its number.
    pub fn exit_code(&self) -> Option<u8> {
        self.requested().map(|s| 128 + s as u8)
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> i32 {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => SIGTERM,
            _ = int.recv() => SIGINT,
        },
        _ => {
            // Without handlers the default action (exit) stays in place.
            std::future::pending::<()>().await;
            SIGTERM
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> i32 {
    let _ = tokio::signal::ctrl_c().await;
    SIGINT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_signal_wins_and_wakes_waiters() {
        let s = Shutdown::default();
        assert_eq!(s.requested(), None);
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.wait().await })
        };
        s.request(SIGTERM);
        s.request(SIGINT);
        waiter.await.expect("woken");
        assert_eq!(s.requested(), Some(SIGTERM));
        assert_eq!(s.exit_code(), Some(143));
        assert!(s.reason().is_some_and(|r| r.contains("SIGTERM")));
    }
}
