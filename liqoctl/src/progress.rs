//! Spinners for long waits, drawn on stderr only when it is a terminal (scripts and pipes see
//! plain lines).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A spinner with a message; finish it with [`Spinner::success`] or [`Spinner::fail`].
pub struct Spinner {
    bar: ProgressBar,
}

impl Spinner {
    /// Starts a spinner showing `message`.
    pub fn start(message: impl Into<String>) -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message.into());
        bar.enable_steady_tick(Duration::from_millis(100));
        Self { bar }
    }

    /// Changes the message.
    pub fn set_message(&self, message: impl Into<String>) {
        self.bar.set_message(message.into());
    }

    /// Ends with a success line on stderr.
    pub fn success(self, message: impl AsRef<str>) {
        self.bar.finish_and_clear();
        eprintln!("✔ {}", message.as_ref());
    }

    /// Ends with a failure line on stderr.
    pub fn fail(self, message: impl AsRef<str>) {
        self.bar.finish_and_clear();
        eprintln!("✘ {}", message.as_ref());
    }
}
