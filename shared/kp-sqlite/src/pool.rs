//! A small fixed pool of SQLite connections, used from blocking threads so
//! that no rusqlite call ever runs on an async worker.
//!
//! A connection is not `Sync`, so each call leases one for its whole
//! duration. Callers wait for a free connection on an async semaphore (not
//! on a blocking thread), so 50 concurrent requests park as futures rather
//! than occupying 50 blocking threads.
//!
//! Writers of this process also queue, first come first served, for one
//! writer permit before they lease a connection. SQLite admits one writer at
//! a time anyway; without the queue the others would wait inside SQLite's
//! busy handler, polling with sleeps, in no fair order, each holding a
//! connection that queries could have used. Writers of other processes on
//! the same file still meet at SQLite's file lock and its busy timeout.

use std::sync::{Arc, Mutex, PoisonError};

use kp_store::{StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::DbError;

/// The connections and the permits that count the idle ones. Clones share them.
#[derive(Clone)]
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    writer: Arc<Semaphore>,
}

impl Pool {
    /// A pool of these connections (at least one).
    pub(crate) fn new(connections: Vec<Connection>) -> Self {
        Self {
            shared: Arc::new(Shared {
                permits: Arc::new(Semaphore::new(connections.len())),
                idle: Mutex::new(connections),
                writer: Arc::new(Semaphore::new(1)),
            }),
        }
    }

    /// Runs `work`, which only reads, on a blocking thread with a leased
    /// connection.
    pub(crate) async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        self.run(None, work).await
    }

    /// Runs `work`, which writes, on a blocking thread with a leased
    /// connection, once this process's earlier writers are done.
    pub(crate) async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        // Taken before the connection, so a queued writer holds none.
        let writer = Arc::clone(&self.shared.writer).acquire_owned().await.map_err(closed)?;
        self.run(Some(writer), work).await
    }

    async fn run<T, F>(&self, writer: Option<OwnedSemaphorePermit>, work: F) -> StoreResult<T>
    where
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        let permit = Arc::clone(&self.shared.permits).acquire_owned().await.map_err(closed)?;
        let shared = Arc::clone(&self.shared);
        let joined = tokio::task::spawn_blocking(move || {
            // Declared after the permits, so dropped before them: the
            // connection is back in the pool before anyone may take it,
            // even when `work` panics (an open transaction rolls back as
            // its guard unwinds).
            let _writer = writer;
            let _permit = permit;
            let mut lease = Lease::take(&shared)?;
            work(lease.connection()).map_err(StoreError::from)
        })
        .await;
        joined.map_err(|e| StoreError::Unavailable(format!("sqlite worker failed: {e}")))?
    }
}

fn closed(_: tokio::sync::AcquireError) -> StoreError {
    StoreError::Unavailable("sqlite pool closed".into())
}

/// One connection taken out of the pool, put back on drop.
struct Lease<'a> {
    shared: &'a Shared,
    connection: Option<Connection>,
}

impl<'a> Lease<'a> {
    fn take(shared: &'a Shared) -> StoreResult<Self> {
        let connection = shared.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match connection {
            Some(connection) => Ok(Self {
                shared,
                connection: Some(connection),
            }),
            // Permits equal connections, so this means a connection was lost.
            None => Err(StoreError::Unavailable("no idle sqlite connection".into())),
        }
    }

    fn connection(&mut self) -> &mut Connection {
        self.connection.as_mut().expect("held until drop")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            // Transactions are guards that roll back when dropped; this only
            // catches one left open by a bug, which would otherwise hold the
            // write lock for every later caller of this connection.
            if !connection.is_autocommit() {
                let _ = connection.execute_batch("ROLLBACK");
            }
            self.shared
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(connection);
        }
    }
}
