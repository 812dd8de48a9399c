//! `[log]` and `[metrics]`: how the running server reports on itself (see
//! `deploy/airlock.example.toml`).

use serde::Deserialize;
use std::path::PathBuf;

use crate::config::Secret;

/// `[log]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (default, for people) or `json` (one object per line, for log pipelines).
    pub format: LogFormat,
    /// A tracing filter (`info`, `debug`, `info,mirror=debug`); `RUST_LOG`, when set, wins.
    pub level: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the request id of the request it belongs to.
    Json,
}

/// `[metrics]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// A bearer token `/metrics` requires (or `token_file`); none: `/metrics` is open, like most
    /// exporters (it shows counts, never names, paths or clients).
    pub token: Option<Secret>,
    /// File holding the token.
    pub token_file: Option<PathBuf>,
}
