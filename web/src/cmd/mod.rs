//! One module per subcommand.

pub mod airgap;
pub mod fsck;
pub mod gc;
pub mod gov;
pub mod migrate;
pub mod reindex;
pub mod rotate;
pub mod scan;
pub mod serve;
pub mod verify;
