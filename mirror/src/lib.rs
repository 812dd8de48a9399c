//! Airlock's engine: configuration, policy, the content-addressed store with its sled index,
//! upstream clients, and the fetch → quarantine → verify → scan → promote pipeline.
//!
//! Invariants: only promoted blobs (`blobs/sha256/…`, named by their sha256, written only by
//! [`Store::promote`] after every check passed) are handed to the protocol adapters; every
//! upstream byte is hashed as it arrives; one upstream fetch per artifact however many clients ask.
#![warn(missing_docs)]

pub mod bundle;
mod cas;
mod clients;
mod config;
mod crash;
mod error;
mod flight;
pub mod format;
pub mod governance;
mod manifest;
mod metrics;
mod names;
mod operations;
mod pipeline;
mod policy;
mod quarantine;
mod refusal;
mod store;
pub mod trust;
mod typosquat;
mod upstream;

pub use cas::{Blob, ByteStream, CasError, RemoteBlob};
pub use clients::{ollama_key_from_wire, Caller, Client, ClientEntry, ClientName, Clients, Role};
pub use config::{
    AirgapConfig, AllowRule, Config, FetchConfig, HfConfig, OllamaConfig, PolicyConfig, PolicyMode,
    ProxyNet, ScanConfig, Secret, StoreBackend, StoreConfig, ENV_KEYS,
};
pub use config::{TlsConfig, UpstreamConfig};
pub use error::MirrorError;
pub use flight::ProgressReport;
pub use manifest::{Entry, EntryKind, Lfs, Manifest};
pub use metrics::Metrics;
pub use names::{
    HfRepo, NameError, OllamaName, Reference, RepoId, RepoKind, RepoPath, Revision, RevisionName,
    Tag,
};
pub use operations::{LogConfig, LogFormat, MetricsConfig};
pub use pipeline::{BlobInfo, FileState, Lookup, ManifestDoc, Mirror, SmallBlob, Snapshot};
pub use policy::{Decision, DigestCover, OllamaDecision, Policy};
pub use refusal::Refusal;
pub use store::{
    DriftRecord, EvictReport, FileRecord, FsckProblem, FsckReport, ReindexReport, Store,
};
pub use typosquat::{check as check_typosquat, Suspicion, WellKnown};
pub use upstream::oci::DOCKER_MANIFEST_V2;
