//! The single writer with group commit.

use std::future::Future;
use std::pin::Pin;

use crate::DbConn;
use tokio::sync::{mpsc, oneshot};

use crate::{StoreError, db};

/// Operations committed together at most.
pub const MAX_BATCH: usize = 256;
/// Operations waiting for the writer at most; callers wait beyond that.
pub const QUEUE_DEPTH: usize = 4096;

/// The audit log's state: its size and the Merkle frontier.
#[derive(Debug, Clone, Default)]
pub(crate) struct Head {
    pub frontier: lethe_ledger::merkle::Frontier,
}

impl Head {
    pub fn seq(&self) -> u64 {
        self.frontier.size()
    }
}

/// What an operation sees: the writer's connection, inside a transaction
/// and a savepoint of its own, and the audit chain head.
pub struct WriteCtx {
    pub(crate) conn: DbConn,
    pub(crate) backend: crate::Backend,
    pub(crate) head: Head,
    pub(crate) deadlines: Option<crate::DeadlineFn>,
    /// Whether changes record case events (see `events.rs`).
    pub(crate) case_events: bool,
    /// The jobs an erasure consists of, enqueued with the change that
    /// starts it.
    pub(crate) erasure_jobs: std::sync::Arc<[crate::NewJob]>,
    /// Attempts of a settlement instruction's job.
    pub(crate) settle_attempts: u32,
    /// PostgreSQL: whether this transaction holds the audit log's lock, so
    /// that `head` is the log's current head (other instances append too).
    pub(crate) log_locked: bool,
}

/// The key of the PostgreSQL advisory lock that orders appends to the audit
/// log across instances ("LETHELOG" in ASCII).
const LOG_LOCK: i64 = 0x4c45_5448_454c_4f47;

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

    /// Makes `head` the audit log's current head before an append or a
    /// signature. SQLite has one writer, whose head is always current. On
    /// PostgreSQL this takes the log's transaction-scoped advisory lock
    /// (held until commit or rollback, so appends of several instances form
    /// one sequence) and reloads the Merkle frontier when another instance
    /// appended since this one last looked.
    pub(crate) async fn lock_log(&mut self) -> Result<(), StoreError> {
        if self.log_locked {
            return Ok(());
        }
        // On SQLite the write transaction (BEGIN IMMEDIATE) is the lock;
        // another process (a CLI command) may still have appended since
        // this writer last looked, so the head is checked on both.
        if self.backend != crate::Backend::Sqlite {
            // pg_advisory_xact_lock returns void, which the Any driver
            // cannot decode: select a constant beside it.
            sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS l")
                .bind(LOG_LOCK)
                .execute(&mut self.conn)
                .await
                .map_err(db("lock the audit log"))?;
        }
        let size: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_events")
            .fetch_one(&mut self.conn)
            .await
            .map_err(db("read audit size"))?;
        if u64::try_from(size).unwrap_or(0) != self.head.seq() {
            self.head = crate::load_frontier(&mut self.conn).await?;
        }
        self.log_locked = true;
        Ok(())
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type Deliver = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type OpFn = Box<dyn for<'c> FnOnce(&'c mut WriteCtx) -> BoxFuture<'c, (bool, Deliver)> + Send>;

/// An operation, run inside the group transaction or on its own outside
/// any transaction (for statements SQLite refuses in one, like checkpoints).
enum Op {
    /// `logged`: the operation may append to the audit log, so on
    /// PostgreSQL its transaction takes the log's lock first (before any
    /// row lock, so instances never wait on each other in a cycle).
    InTx {
        f: OpFn,
        logged: bool,
    },
    Outside(OpFn),
}

pub(crate) struct Writer {
    tx: mpsc::Sender<Op>,
}

impl Writer {
    /// `url`: where to connect again if the connection is lost (a
    /// PostgreSQL server restarted, a network cut).
    pub(crate) fn start(
        conn: DbConn,
        url: String,
        backend: crate::Backend,
        head: Head,
        opts: &crate::StoreOptions,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Op>(QUEUE_DEPTH);
        tokio::spawn(run(
            WriteCtx {
                conn,
                backend,
                head,
                deadlines: opts.deadlines.clone(),
                case_events: opts.case_events,
                erasure_jobs: opts.erasure_jobs.clone().into(),
                settle_attempts: opts.settle_attempts,
                log_locked: false,
            },
            url,
            rx,
        ));
        Self { tx }
    }

    /// Runs `f` in the next group commit; resolves once it is durable.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut WriteCtx) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        self.submit(f, Some(true)).await
    }

    /// Runs `f` in the next group commit, for an operation that never
    /// appends to the audit log (job claims, leases, delivery marks): on
    /// PostgreSQL such a batch does not take the log's lock, so instances
    /// claim work side by side (`FOR UPDATE SKIP LOCKED`).
    pub(crate) async fn run_unlogged<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut WriteCtx) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        self.submit(f, Some(false)).await
    }

    /// Runs `f` alone, between group commits, outside any transaction.
    pub(crate) async fn run_outside_tx<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut WriteCtx) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        self.submit(f, None).await
    }

    /// `logged`: `None` outside any transaction, else whether the operation
    /// may append to the audit log.
    async fn submit<T, F>(&self, f: F, logged: Option<bool>) -> Result<T, StoreError>
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
        let op = match logged {
            Some(logged) => Op::InTx { f: op, logged },
            None => Op::Outside(op),
        };
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
                ctx.log_locked = false;
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

async fn run(mut ctx: WriteCtx, url: String, mut rx: mpsc::Receiver<Op>) {
    let mut carried: Option<Op> = None;
    loop {
        let first = match carried.take() {
            Some(op) => op,
            None => match rx.recv().await {
                Some(op) => op,
                None => return,
            },
        };
        let first = match first {
            Op::Outside(op) => {
                let (_, deliver) = op(&mut ctx).await;
                deliver(Ok(()));
                continue;
            }
            Op::InTx { f, logged } => (f, logged),
        };
        let mut logged = first.1;
        let mut batch = vec![first.0];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Op::InTx { f, logged: l }) => {
                    logged |= l;
                    batch.push(f);
                }
                Ok(outside) => {
                    carried = Some(outside);
                    break;
                }
                Err(_) => break,
            }
        }
        let head_before = ctx.head.clone();
        let mut delivers: Vec<Deliver> = Vec::with_capacity(batch.len());
        let mut pending = batch.into_iter();
        let result: Result<(), StoreError> = async {
            // SQLite: take the write lock at once. PostgreSQL: a plain
            // transaction (several instances write at the same time).
            let begin = match ctx.backend {
                crate::Backend::Sqlite => "BEGIN IMMEDIATE",
                crate::Backend::Postgres => "BEGIN",
            };
            exec(&mut ctx.conn, begin).await?;
            if logged {
                ctx.lock_log().await?;
            }
            for op in pending.by_ref() {
                exec(&mut ctx.conn, "SAVEPOINT op").await?;
                let snap = (ctx.head.clone(), ctx.log_locked);
                let (keep, deliver) = op(&mut ctx).await;
                delivers.push(deliver);
                if !keep {
                    exec(&mut ctx.conn, "ROLLBACK TO op").await?;
                    (ctx.head, ctx.log_locked) = snap;
                }
                exec(&mut ctx.conn, "RELEASE op").await?;
            }
            exec(&mut ctx.conn, "COMMIT").await
        }
        .await;
        ctx.log_locked = false;
        match result {
            Ok(()) => delivers.into_iter().for_each(|d| d(Ok(()))),
            Err(e) => {
                tracing::error!(error = %e, "group commit failed; the batch is rolled back");
                let _ = exec(&mut ctx.conn, "ROLLBACK").await;
                ctx.head = head_before;
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
