//! Request bodies, read with bounds in size, in time and in total memory. Only two routes take a
//! body (HF `paths-info` and the admin API's JSON); every other route never reads one. A client
//! holding many connections open with unfinished bodies must neither hold memory indefinitely
//! nor add up to more than [`BodyBudget`]'s total: a read past either bound fails at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

/// How long a whole body may take to arrive. A real client sends its few KiB in milliseconds;
/// a trickle that takes longer is holding a connection and memory hostage.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of protocol request bodies held at once across all connections. Actix itself buffers up
/// to 128 KiB per connection on top (its fixed read buffer), so 500 connections cost about 65 MiB
/// whatever this says; this keeps the bodies themselves from adding hundreds more.
pub const PROTOCOL_BUDGET: usize = 8 << 20;

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Larger than the route accepts.
    #[error("request body larger than the {limit}-byte limit")]
    TooLarge {
        /// The route's limit.
        limit: usize,
    },
    /// Did not arrive within [`BODY_TIMEOUT`].
    #[error("request body did not arrive within {} s", BODY_TIMEOUT.as_secs())]
    TimedOut,
    /// Too many bodies are being received at once.
    #[error("too many request bodies in flight; retry shortly")]
    Busy,
    /// The connection broke mid-body.
    #[error("request body could not be read")]
    Broken,
}

/// The shared memory bound of bodies being received (app data, one per server).
#[derive(Debug, Clone)]
pub struct BodyBudget(Arc<AtomicUsize>);

impl BodyBudget {
    /// A budget of `total` bytes.
    pub fn new(total: usize) -> Self {
        BodyBudget(Arc::new(AtomicUsize::new(total)))
    }
}

/// Bytes taken from the budget; given back when the body is done with (dropped).
struct Held {
    budget: Arc<AtomicUsize>,
    n: usize,
}

impl Held {
    fn take(&mut self, n: usize) -> Result<(), BodyError> {
        self.budget
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(n)
            })
            .map_err(|_| BodyError::Busy)?;
        self.n += n;
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.fetch_add(self.n, Ordering::AcqRel);
    }
}

impl BodyBudget {
    /// Reads the whole body, at most `limit` bytes, within [`BODY_TIMEOUT`].
    pub async fn read(&self, mut payload: web::Payload, limit: usize) -> Result<Bytes, BodyError> {
        let mut held = Held {
            budget: self.0.clone(),
            n: 0,
        };
        let read = async {
            let mut buf = BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|_| BodyError::Broken)?;
                if buf.len() + chunk.len() > limit {
                    return Err(BodyError::TooLarge { limit });
                }
                held.take(chunk.len())?;
                buf.extend_from_slice(&chunk);
            }
            Ok(buf.freeze())
        };
        // The budget covers the bytes while they arrive, the stage a slow client can stretch;
        // callers parse them at once and drop them.
        tokio::time::timeout(BODY_TIMEOUT, read)
            .await
            .map_err(|_| BodyError::TimedOut)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_given_back() {
        let b = BodyBudget::new(10);
        {
            let mut h = Held {
                budget: b.0.clone(),
                n: 0,
            };
            h.take(8).unwrap();
            assert!(matches!(h.take(3), Err(BodyError::Busy)));
        }
        assert_eq!(b.0.load(Ordering::Acquire), 10);
    }
}
