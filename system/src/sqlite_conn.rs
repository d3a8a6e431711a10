//! A SQLite connection owned by a thread of its own, called from async code.
//!
//! A blocking-pool hop per call (`spawn_blocking` and a mutex) costs a thread hand-off and
//! a lock on every batch and read; here the thread waits on a channel with the connection
//! in hand, runs each call in turn and answers it through a oneshot.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The thread stops, closing the connection, once the last handle is dropped.
#[derive(Clone)]
pub struct ConnThread {
    jobs: mpsc::Sender<Job>,
}

impl ConnThread {
    pub fn spawn(name: &str, conn: Connection) -> std::io::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new().name(name.into()).spawn(move || {
            let mut conn = conn;
            for job in rx {
                job(&mut conn);
            }
        })?;
        Ok(Self { jobs })
    }

    pub async fn run<T, F>(&self, f: F) -> Result<T, rusqlite::Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let (done, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            // A panic inside a call rolled its transaction back as it unwound, so the
            // connection is still consistent; the caller gets the panic, the thread goes on.
            let _ = done.send(catch_unwind(AssertUnwindSafe(|| f(conn))));
        });
        self.jobs.send(job).map_err(|_| stopped())?;
        match answer.await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => resume_unwind(panic),
            Err(_) => Err(stopped()),
        }
    }
}

fn stopped() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISUSE), Some("the connection's thread stopped".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_run_in_order_on_one_connection_and_survive_a_panic() {
        let conn = ConnThread::spawn("test-conn", Connection::open_in_memory().unwrap()).unwrap();
        conn.run(|c| c.execute_batch("CREATE TABLE t (x INTEGER)")).await.unwrap();
        for i in 0..10 {
            conn.run(move |c| c.execute("INSERT INTO t VALUES (?1)", [i])).await.unwrap();
        }
        let panicked = tokio::spawn({
            let conn = conn.clone();
            async move { conn.run(|_| -> Result<(), rusqlite::Error> { panic!("boom") }).await }
        })
        .await;
        assert!(panicked.is_err_and(|e| e.is_panic()));
        let sum: i64 = conn.run(|c| c.query_row("SELECT SUM(x) FROM t", [], |r| r.get(0))).await.unwrap();
        assert_eq!(sum, 45);
    }
}
