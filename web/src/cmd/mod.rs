//! One module per subcommand.

pub mod reindex;
pub mod scan;
pub mod serve;
pub mod verify;
