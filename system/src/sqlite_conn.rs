//! A SQLite connection shared with async code: calls run on the blocking pool, one at a time.

use std::sync::{Arc, Mutex};

use rusqlite::Connection;

#[derive(Clone)]
pub struct SharedConn(Arc<Mutex<Connection>>);

impl SharedConn {
    pub fn new(conn: Connection) -> Self {
        Self(Arc::new(Mutex::new(conn)))
    }

    pub async fn run<T, F>(&self, f: F) -> Result<T, rusqlite::Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let conn = self.0.clone();
        let joined = tokio::task::spawn_blocking(move || {
            // A panic inside a call rolled its transaction back when it unwound, so the
            // connection is still consistent.
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(rusqlite::Error::InvalidQuery),
        }
    }
}
