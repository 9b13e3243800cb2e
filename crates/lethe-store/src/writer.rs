//! The single writer with group commit.

use std::future::Future;
use std::pin::Pin;

use crate::DbConn;
use tokio::sync::{mpsc, oneshot};

use crate::{StoreError, db};

/// Work to enqueue in the same transaction as a case change (the write
/// context carries the jobs an erasure consists of).
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: String,
    pub system: String,
    pub max_attempts: u32,
}

/// Operations committed together at most.
pub const MAX_BATCH: usize = 256;
/// Operations waiting for the writer at most; callers wait beyond that.
pub const QUEUE_DEPTH: usize = 4096;

/// What an operation sees: a writer connection, inside a transaction (and,
/// on SQLite, a savepoint of its own in the group commit).
pub struct WriteCtx {
    pub(crate) conn: DbConn,
    pub(crate) backend: crate::Backend,
    pub(crate) deadlines: Option<crate::DeadlineFn>,
    /// Whether changes record case events (see `events.rs`).
    pub(crate) case_events: bool,
    /// The jobs an erasure consists of, enqueued with the change that
    /// starts it.
    pub(crate) erasure_jobs: std::sync::Arc<[NewJob]>,
    /// Attempts of a settlement instruction's job.
    pub(crate) settle_attempts: u32,
    /// The queue id of the last audit event this operation queued.
    pub(crate) last_qid: Option<i64>,
    /// Whether this operation queued audit events (the sequencer is woken
    /// after the commit).
    pub(crate) queued: bool,
}

impl WriteCtx {
    /// The clause that makes a claim's inner `SELECT` lock the rows it
    /// picks and pass over rows another instance's transaction holds:
    /// `FOR UPDATE SKIP LOCKED` on PostgreSQL; nothing on SQLite, whose one
    /// writer never meets a concurrent claim.
    pub(crate) fn skip_locked(&self) -> &'static str {
        match self.backend {
            crate::Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            crate::Backend::Sqlite => "",
        }
    }

    /// `FOR UPDATE` on PostgreSQL (a read that the transaction then writes
    /// on, so a concurrent instance waits instead of deciding on stale
    /// data); nothing on SQLite.
    pub(crate) fn for_update(&self) -> &'static str {
        match self.backend {
            crate::Backend::Postgres => "FOR UPDATE",
            crate::Backend::Sqlite => "",
        }
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type Deliver = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type OpFn = Box<dyn for<'c> FnOnce(&'c mut WriteCtx) -> BoxFuture<'c, (bool, Deliver)> + Send>;

/// An operation, run inside a transaction or on its own outside any
/// transaction (for statements SQLite refuses in one, like checkpoints).
enum Op {
    InTx(OpFn),
    Outside(OpFn),
}

/// Writer connections on PostgreSQL at most.
pub const MAX_WRITE_CONNECTIONS: u32 = 32;

pub(crate) struct Writer {
    tx: mpsc::Sender<Op>,
    /// Notified after a commit that queued audit events.
    pub(crate) queued: std::sync::Arc<tokio::sync::Notify>,
}

impl Writer {
    /// `conns`: one connection per lane. SQLite has one lane that commits
    /// operations in groups (one writer is all SQLite allows). PostgreSQL
    /// has one lane per connection, each committing every operation in a
    /// transaction of its own, so independent cases commit side by side
    /// (and no transaction holds another operation's row locks: group
    /// commit across connections could wait in a cycle). `url`: where to
    /// connect again if a connection is lost (a server restarted, a
    /// network cut).
    pub(crate) fn start(
        conns: Vec<DbConn>,
        url: String,
        backend: crate::Backend,
        opts: &crate::StoreOptions,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Op>(QUEUE_DEPTH);
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
        let max_batch = match backend {
            crate::Backend::Sqlite => MAX_BATCH,
            crate::Backend::Postgres => 1,
        };
        let erasure_jobs: std::sync::Arc<[NewJob]> = opts.erasure_jobs.clone().into();
        let queued = std::sync::Arc::new(tokio::sync::Notify::new());
        for conn in conns {
            tokio::spawn(run(
                WriteCtx {
                    conn,
                    backend,
                    deadlines: opts.deadlines.clone(),
                    case_events: opts.case_events,
                    erasure_jobs: erasure_jobs.clone(),
                    settle_attempts: opts.settle_attempts,
                    last_qid: None,
                    queued: false,
                },
                url.clone(),
                rx.clone(),
                max_batch,
                queued.clone(),
            ));
        }
        Self { tx, queued }
    }

    /// Runs `f` in a transaction (the next group commit on SQLite);
    /// resolves once it is durable.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut WriteCtx) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        self.submit(f, true).await
    }

    /// Runs `f` alone, between transactions, outside any transaction.
    pub(crate) async fn run_outside_tx<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut WriteCtx) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        self.submit(f, false).await
    }

    async fn submit<T, F>(&self, f: F, in_tx: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut WriteCtx) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (reply, rx) = oneshot::channel::<Result<T, StoreError>>();
        let op: OpFn = Box::new(move |ctx| {
            Box::pin(async move {
                let r = f(ctx).await;
                let keep = match &r {
                    Ok(_) => true,
                    Err(e) => e.keeps_writes(),
                };
                let deliver: Deliver = Box::new(move |commit| {
                    let out = match (r, commit) {
                        (Err(e), _) => Err(e),
                        (Ok(v), Ok(())) => Ok(v),
                        (Ok(_), Err(e)) => Err(e),
                    };
                    // The caller may have gone away; nothing to do then.
                    let _ = reply.send(out);
                });
                (keep, deliver)
            })
        });
        let op = if in_tx { Op::InTx(op) } else { Op::Outside(op) };
        self.tx.send(op).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

async fn exec(conn: &mut DbConn, sql: &'static str) -> Result<(), StoreError> {
    sqlx::query(sql)
        .execute(&mut *conn)
        .await
        .map_err(db("transaction control"))?;
    Ok(())
}

/// Runs the transaction control statements gathered so far, in one round
/// trip, and empties the list.
async fn control_now(conn: &mut DbConn, control: &mut Vec<&'static str>) -> Result<(), StoreError> {
    if control.is_empty() {
        return Ok(());
    }
    let sql = control.join("; ");
    control.clear();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map_err(db("transaction control"))?;
    Ok(())
}

fn copy_err(e: &StoreError) -> StoreError {
    StoreError::Db {
        action: "commit",
        message: e.to_string(),
    }
}

/// After a failed commit: if the connection itself is gone, connects again,
/// waiting up to `RECONNECT_MAX_WAIT` between tries, for as long as it takes
/// (operations wait in the bounded queue meanwhile).
async fn reconnect_if_lost(ctx: &mut WriteCtx, url: &str) {
    use sqlx::Connection;
    if ctx.conn.ping().await.is_ok() {
        return;
    }
    let mut wait = std::time::Duration::from_millis(100);
    loop {
        match DbConn::connect(url).await {
            Ok(conn) => {
                tracing::warn!("the store's writer connected again");
                ctx.conn = conn;
                return;
            }
            Err(e) => {
                tracing::error!(error = %db("reconnect")(e), retry_in_ms = wait.as_millis() as u64, "the store's writer lost its connection");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RECONNECT_MAX_WAIT);
            }
        }
    }
}

/// The longest wait between two reconnection attempts of the writer.
const RECONNECT_MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

type SharedRx = std::sync::Arc<tokio::sync::Mutex<mpsc::Receiver<Op>>>;

/// One lane: takes the next operation (and, up to `max_batch`, those
/// waiting behind it) and commits them together.
async fn run(
    mut ctx: WriteCtx,
    url: String,
    rx: SharedRx,
    max_batch: usize,
    queued: std::sync::Arc<tokio::sync::Notify>,
) {
    let mut carried: Option<Op> = None;
    loop {
        let mut batch = Vec::new();
        {
            let mut rx = rx.lock().await;
            let first = match carried.take() {
                Some(op) => op,
                None => match rx.recv().await {
                    Some(op) => op,
                    None => return,
                },
            };
            match first {
                Op::Outside(op) => {
                    drop(rx);
                    let (_, deliver) = op(&mut ctx).await;
                    deliver(Ok(()));
                    continue;
                }
                Op::InTx(f) => batch.push(f),
            }
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(Op::InTx(f)) => batch.push(f),
                    Ok(outside) => {
                        carried = Some(outside);
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        // One operation alone needs no savepoint: it is the transaction.
        let alone = batch.len() == 1;
        let mut delivers: Vec<Deliver> = Vec::with_capacity(batch.len());
        let mut pending = batch.into_iter();
        let mut any_queued = false;
        let result: Result<(), StoreError> = async {
            // SQLite: take the write lock at once. PostgreSQL: a plain
            // transaction (other lanes and instances write at the same time).
            let begin = match ctx.backend {
                crate::Backend::Sqlite => "BEGIN IMMEDIATE",
                crate::Backend::Postgres => "BEGIN",
            };
            // Transaction control rides with its neighbour: the statements
            // due before an operation go in one round trip (`BEGIN;
            // SAVEPOINT op`, then `RELEASE op; SAVEPOINT op` between two
            // operations, `RELEASE op; COMMIT` at the end). On SQLite every
            // round trip is a hop to the connection's thread, and the one
            // writer spends them for every change.
            let mut control: Vec<&'static str> = vec![begin];
            for op in pending.by_ref() {
                ctx.last_qid = None;
                ctx.queued = false;
                if alone {
                    control_now(&mut ctx.conn, &mut control).await?;
                    let (keep, deliver) = op(&mut ctx).await;
                    delivers.push(deliver);
                    any_queued |= keep && ctx.queued;
                    if !keep {
                        return exec(&mut ctx.conn, "ROLLBACK").await;
                    }
                    continue;
                }
                control.push("SAVEPOINT op");
                control_now(&mut ctx.conn, &mut control).await?;
                let (keep, deliver) = op(&mut ctx).await;
                delivers.push(deliver);
                any_queued |= keep && ctx.queued;
                if !keep {
                    control.push("ROLLBACK TO op");
                }
                control.push("RELEASE op");
            }
            control.push("COMMIT");
            control_now(&mut ctx.conn, &mut control).await
        }
        .await;
        match result {
            Ok(()) => {
                if any_queued {
                    queued.notify_one();
                }
                delivers.into_iter().for_each(|d| d(Ok(())));
            }
            Err(e) => {
                tracing::error!(error = %e, "a commit failed; its operations are rolled back");
                let _ = exec(&mut ctx.conn, "ROLLBACK").await;
                if ctx.backend == crate::Backend::Postgres {
                    reconnect_if_lost(&mut ctx, &url).await;
                }
                for d in delivers {
                    d(Err(copy_err(&e)));
                }
                // Operations not started get the error too: their oneshot
                // senders are dropped with them, which the caller sees as
                // Closed; run them never.
                drop(pending);
            }
        }
    }
}
