//! One module per subcommand.

pub mod scan;
pub mod serve;
pub mod verify;
