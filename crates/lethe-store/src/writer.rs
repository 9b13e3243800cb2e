//! The single writer with group commit.

use std::future::Future;
use std::pin::Pin;

use sqlx::SqliteConnection;
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
    pub(crate) conn: SqliteConnection,
    pub(crate) head: Head,
    pub(crate) deadlines: Option<crate::DeadlineFn>,
    /// Whether changes record case events (see `events.rs`).
    pub(crate) case_events: bool,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type Deliver = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type OpFn = Box<dyn for<'c> FnOnce(&'c mut WriteCtx) -> BoxFuture<'c, (bool, Deliver)> + Send>;

/// An operation, run inside the group transaction or on its own outside
/// any transaction (for statements SQLite refuses in one, like checkpoints).
enum Op {
    InTx(OpFn),
    Outside(OpFn),
}

pub(crate) struct Writer {
    tx: mpsc::Sender<Op>,
}

impl Writer {
    pub(crate) fn start(
        conn: SqliteConnection,
        head: Head,
        deadlines: Option<crate::DeadlineFn>,
        case_events: bool,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<Op>(QUEUE_DEPTH);
        tokio::spawn(run(
            WriteCtx {
                conn,
                head,
                deadlines,
                case_events,
            },
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
        self.submit(f, true).await
    }

    /// Runs `f` alone, between group commits, outside any transaction.
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

async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), StoreError> {
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

async fn run(mut ctx: WriteCtx, mut rx: mpsc::Receiver<Op>) {
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
            Op::InTx(op) => op,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Op::InTx(op)) => batch.push(op),
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
            exec(&mut ctx.conn, "BEGIN IMMEDIATE").await?;
            for op in pending.by_ref() {
                exec(&mut ctx.conn, "SAVEPOINT op").await?;
                let snap = ctx.head.clone();
                let (keep, deliver) = op(&mut ctx).await;
                delivers.push(deliver);
                if !keep {
                    exec(&mut ctx.conn, "ROLLBACK TO op").await?;
                    ctx.head = snap;
                }
                exec(&mut ctx.conn, "RELEASE op").await?;
            }
            exec(&mut ctx.conn, "COMMIT").await
        }
        .await;
        match result {
            Ok(()) => delivers.into_iter().for_each(|d| d(Ok(()))),
            Err(e) => {
                tracing::error!(error = %e, "group commit failed; the batch is rolled back");
                let _ = exec(&mut ctx.conn, "ROLLBACK").await;
                ctx.head = head_before;
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
