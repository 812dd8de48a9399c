//! Log output: text for people or JSON lines for pipelines (`[log] format`), at `[log] level`
//! unless `RUST_LOG` says otherwise. Both carry the request span's `request_id` on every line
//! written while a request is handled.

use mirror::{LogConfig, LogFormat};

/// The level when neither `RUST_LOG` nor `[log] level` sets one.
const DEFAULT: &str = "info,actix_server=warn";

/// Installs the subscriber; `cfg` is the server's `[log]` (none for the CLI subcommands).
pub fn init(cfg: Option<&LogConfig>) {
    // An empty RUST_LOG counts as unset (it would otherwise silence everything but errors).
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok());
    let filter = from_env.ok_or(()).unwrap_or_else(|()| {
        let level = cfg.and_then(|c| c.level.as_deref()).unwrap_or(DEFAULT);
        tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|e| {
            eprintln!(
                "airlock: [log] level {level:?} is not a valid filter ({e}); using {DEFAULT}"
            );
            DEFAULT.into()
        })
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.map_or(LogFormat::Text, |c| c.format) {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}
