//! Progress bars on stderr, only where a person watches: a TTY, not `-q`.
//! CronJob and CI logs get none (and no escape codes).

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Every bar is drawn through this one, so that log lines can hide the bars
/// while they are written ([`LogWriter`]) instead of tearing through them.
fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// stderr for log lines: clears the progress bars, writes, redraws them.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        bars().suspend(|| std::io::stderr().lock().write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        bars().suspend(|| std::io::stderr().lock().write_all(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Below this many items a stage is too quick for a bar to help.
const MIN_ITEMS_FOR_BAR: u64 = 20;

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    /// Enabled when stderr is a terminal and output is not quieted.
    pub fn detect(quiet: bool) -> Self {
        Self {
            enabled: !quiet && std::io::stderr().is_terminal(),
        }
    }

    pub fn hidden() -> Self {
        Self { enabled: false }
    }

    pub fn bar(&self, label: &str, len: u64) -> Stage {
        if !self.enabled || len < MIN_ITEMS_FOR_BAR {
            return Stage(None);
        }
        let bar = bars().add(ProgressBar::new(len));
        bar.set_style(
            ProgressStyle::with_template("{msg:>16} [{bar:30}] {pos}/{len} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(label.to_owned());
        Stage(Some(bar))
    }

    /// A bar whose length grows as work is found (batch by batch); shown
    /// when up to `at_most` items may come.
    pub fn growing(&self, label: &str, at_most: u64) -> Stage {
        let stage = self.bar(label, at_most);
        if let Some(b) = &stage.0 {
            b.set_length(0);
        }
        stage
    }

    pub fn spinner(&self, label: &str) -> Stage {
        if !self.enabled {
            return Stage(None);
        }
        let bar = bars().add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(100));
        Stage(Some(bar))
    }
}

/// One stage's bar (or nothing).
pub struct Stage(Option<ProgressBar>);

impl Stage {
    pub fn inc(&self) {
        if let Some(b) = &self.0 {
            b.inc(1);
        }
    }

    /// `n` more items to do.
    pub fn grow(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc_length(n);
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

impl crate::engine::ports::Reporter for Progress {
    type Stage = Stage;

    fn spinner(&self, label: &str) -> Stage {
        Progress::spinner(self, label)
    }

    fn bar(&self, label: &str, len: u64) -> Stage {
        Progress::bar(self, label, len)
    }

    fn growing(&self, label: &str, at_most: u64) -> Stage {
        Progress::growing(self, label, at_most)
    }
}

impl crate::engine::ports::Stage for Stage {
    fn inc(&self) {
        Stage::inc(self);
    }

    fn grow(&self, n: u64) {
        Stage::grow(self, n);
    }

    fn finish(&self) {
        Stage::finish(self);
    }
}
