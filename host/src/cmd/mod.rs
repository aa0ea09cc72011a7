//! Subcommands of the liqo-host binary that need more than a few lines.

pub mod run;
