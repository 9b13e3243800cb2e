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
    /// Reached through [`WriteCtx::conn`], which first sends the deferred
    /// statements: nothing reads past a write not yet made.
    conn: DbConn,
    pub(crate) backend: crate::Backend,
    pub(crate) deadlines: Option<crate::DeadlineFn>,
    /// Whether changes record case events (see `events.rs`).
    pub(crate) case_events: bool,
    /// The jobs an erasure consists of, enqueued with the change that
    /// starts it.
    pub(crate) erasure_jobs: std::sync::Arc<[NewJob]>,
    /// Attempts of a settlement instruction's job.
    pub(crate) settle_attempts: u32,
    /// The queue id of the last audit event this operation queued (read
    /// through [`WriteCtx::last_qid`]).
    last_qid: Option<i64>,
    /// Statements whose results the operation does not wait for, sent
    /// together in one round trip (see [`Stmt`]).
    later: Vec<Stmt>,
    /// Their arguments, counted against [`MAX_DEFERRED_ARGS`].
    later_args: usize,
    /// Transaction control due before the operation's next statement
    /// (`BEGIN; SAVEPOINT op`, `RELEASE op; SAVEPOINT op`): it rides with
    /// that statement in one round trip.
    control: Vec<&'static str>,
    /// Set when transaction control due did not run (the round trip that
    /// carried it failed before or at it): the savepoints of the batch are
    /// then not what the writer believes, so the whole batch is rolled back.
    control_lost: Option<StoreError>,
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

    /// The connection, once the deferred statements are sent: a read sees
    /// every write the operation made before it.
    pub(crate) async fn conn(&mut self) -> Result<&mut DbConn, StoreError> {
        self.flush().await?;
        Ok(&mut self.conn)
    }

    /// The queue id of the last audit event this operation queued, once it
    /// is known (its insert is sent).
    pub(crate) async fn last_qid(&mut self) -> Result<Option<i64>, StoreError> {
        self.flush().await?;
        Ok(self.last_qid)
    }

    /// Defers a statement: it is sent with the others deferred, before the
    /// operation next uses the connection or when it ends, in one round trip
    /// on SQLite (where each round trip is a hop to the connection's thread,
    /// and the one writer spends them for every change). Its failure fails
    /// the operation then, with its own action named.
    pub(crate) async fn defer(&mut self, stmt: Stmt) -> Result<(), StoreError> {
        self.later_args += stmt.args.len();
        self.later.push(stmt);
        if self.later.len() >= MAX_DEFERRED || self.later_args >= MAX_DEFERRED_ARGS {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends the transaction control due and the deferred statements: on
    /// SQLite as one query (each statement's `$n` renumbered after the
    /// arguments of those before it), on PostgreSQL one by one (its protocol
    /// prepares one statement at a time; its lanes write side by side
    /// instead).
    pub(crate) async fn flush(&mut self) -> Result<(), StoreError> {
        self.send(None).await.map(drop)
    }

    /// Runs a read (or a write whose rows the operation needs) in the same
    /// round trip as the transaction control due and the deferred
    /// statements, after them; returns its rows.
    pub(crate) async fn fetch(&mut self, stmt: Stmt) -> Result<Vec<crate::DbRow>, StoreError> {
        self.send(Some(stmt.then(Then::Rows))).await
    }

    /// Sends the control due, the deferred statements and `last`; returns
    /// the rows of the statements marked [`Then::Rows`].
    async fn send(&mut self, last: Option<Stmt>) -> Result<Vec<crate::DbRow>, StoreError> {
        use futures_util::TryStreamExt;
        let mut stmts = std::mem::take(&mut self.later);
        self.later_args = 0;
        stmts.extend(last);
        let groups: Vec<&[Stmt]> = match self.backend {
            crate::Backend::Sqlite => vec![&stmts[..]],
            crate::Backend::Postgres => stmts.chunks(1).collect(),
        };
        // Checked before anything is sent: a statement refused here leaves
        // the control due where it was.
        let sqls = groups
            .iter()
            .map(|g| joined_sql(g))
            .collect::<Result<Vec<_>, _>>()?;
        if (stmts.is_empty() || self.backend == crate::Backend::Postgres)
            && let Err(e) = control_now(&mut self.conn, &mut self.control).await
        {
            self.control_lost.get_or_insert(copy_err(&e));
            return Err(e);
        }
        let mut out = Vec::new();
        if stmts.is_empty() {
            return Ok(out);
        }
        let control = std::mem::take(&mut self.control);
        for (group, joined) in groups.into_iter().zip(sqls) {
            let mut sql = String::new();
            for c in &control {
                sql.push_str(c);
                sql.push_str(";\n");
            }
            sql.push_str(&joined);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for stmt in group {
                for a in &stmt.args {
                    q = match a {
                        Arg::Int(v) => q.bind(*v),
                        Arg::Text(v) => q.bind(v.clone()),
                    };
                }
            }
            // Each statement ends with its result (rows affected), after
            // the rows it returns; the control statements come first. The
            // results are read to the end, so the connection is left idle.
            let mut at = 0usize;
            let mut rows: Vec<crate::DbRow> = Vec::new();
            let mut failed: Option<StoreError> = None;
            let mut results = sqlx::Executor::fetch_many(&mut self.conn, q);
            loop {
                let stmt = at.checked_sub(control.len()).and_then(|i| group.get(i));
                let action = stmt.map_or("transaction control", |s| s.action);
                let step = match results.try_next().await {
                    Ok(Some(step)) => step,
                    Ok(None) => break,
                    Err(e) => {
                        failed.get_or_insert(db(action)(e));
                        break;
                    }
                };
                match step {
                    sqlx::Either::Right(row) => rows.push(row),
                    sqlx::Either::Left(done) => {
                        let outcome = stmt.map_or(Ok(()), |s| match s.then {
                            Then::AtLeastOneRow(err) if done.rows_affected() == 0 => Err(err()),
                            Then::Rows => {
                                out.append(&mut rows);
                                Ok(())
                            }
                            Then::QueueId => match rows.first() {
                                Some(r) => sqlx::Row::try_get::<i64, _>(r, 0)
                                    .map(|qid| self.last_qid = Some(qid))
                                    .map_err(db(s.action)),
                                None => Ok(()),
                            },
                            _ => Ok(()),
                        });
                        if let Err(e) = outcome {
                            failed.get_or_insert(e);
                        }
                        rows.clear();
                        at += 1;
                    }
                }
            }
            drop(results);
            let e = match failed {
                Some(e) => e,
                None if at == control.len() + group.len() => continue,
                None => StoreError::Db {
                    action: "deferred statements",
                    message: format!("{} of {} statements ran", at, control.len() + group.len()),
                },
            };
            // The statements stop at the first that fails: control from
            // there on did not run.
            if at < control.len() {
                self.control_lost.get_or_insert(copy_err(&e));
            }
            return Err(e);
        }
        Ok(out)
    }

    /// Drops the deferred statements of an operation (or a savepoint's
    /// part of one) that is rolled back.
    pub(crate) fn discard(&mut self) {
        self.later.clear();
        self.later_args = 0;
    }
}

/// Deferred statements at most before they are sent.
pub const MAX_DEFERRED: usize = 64;
/// Their arguments at most (SQLite allows 32,766 in one query).
pub const MAX_DEFERRED_ARGS: usize = 2_000;

/// An argument of a deferred statement.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Self::Text(Some(v))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Self::Text(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Self::Text(Some(v.to_owned()))
    }
}

/// What a deferred statement's result must show once it ran.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Then {
    Nothing,
    /// It changed a row, or the operation fails with this error.
    AtLeastOneRow(fn() -> StoreError),
    /// It returned an audit event's queue id (the operation's last so far).
    QueueId,
    /// Its rows are what [`WriteCtx::fetch`] returns.
    Rows,
}

/// A statement whose result the operation does not wait for: its SQL (with
/// `$1`, `$2` … for its own arguments), its arguments, and what its result
/// must show.
#[derive(Debug, Clone)]
pub(crate) struct Stmt {
    action: &'static str,
    sql: std::borrow::Cow<'static, str>,
    args: Vec<Arg>,
    then: Then,
}

impl Stmt {
    /// `action` names the statement in an error ("store deadline").
    pub(crate) fn new(
        action: &'static str,
        sql: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Self {
        Self {
            action,
            sql: sql.into(),
            args: Vec::new(),
            then: Then::Nothing,
        }
    }

    pub(crate) fn arg(mut self, a: impl Into<Arg>) -> Self {
        self.args.push(a.into());
        self
    }

    pub(crate) fn then(mut self, then: Then) -> Self {
        self.then = then;
        self
    }
}

/// The statements as one query: each statement's `$n` becomes `$(n +
/// the arguments of the statements before it)`; quoted text is left alone.
/// A statement naming an argument it was not given is an error.
fn joined_sql(stmts: &[Stmt]) -> Result<String, StoreError> {
    let mut out = String::new();
    let mut offset = 0usize;
    for (i, stmt) in stmts.iter().enumerate() {
        if i > 0 {
            out.push_str(";\n");
        }
        let mut chars = stmt.sql.char_indices().peekable();
        let mut quoted = false;
        while let Some((_, c)) = chars.next() {
            if c == '\'' {
                quoted = !quoted;
            }
            if c != '$' || quoted {
                out.push(c);
                continue;
            }
            let mut n = 0usize;
            let mut digits = 0usize;
            while let Some(&(_, d)) = chars.peek() {
                let Some(v) = d.to_digit(10) else { break };
                n = n.saturating_mul(10).saturating_add(v as usize);
                digits += 1;
                chars.next();
            }
            if digits == 0 {
                out.push('$');
                continue;
            }
            if n == 0 || n > stmt.args.len() {
                return Err(StoreError::Db {
                    action: stmt.action,
                    message: format!(
                        "the statement names argument ${n} of the {} it was given",
                        stmt.args.len()
                    ),
                });
            }
            out.push('$');
            out.push_str(&(offset + n).to_string());
        }
        offset += stmt.args.len();
    }
    Ok(out)
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
                    later: Vec::new(),
                    later_args: 0,
                    control: Vec::new(),
                    control_lost: None,
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
                let mut r = f(ctx).await;
                let mut keep = match &r {
                    Ok(_) => true,
                    Err(e) => e.keeps_writes(),
                };
                // The operation's deferred statements go before its end.
                if keep && let Err(e) = ctx.flush().await {
                    r = Err(e);
                    keep = false;
                }
                ctx.discard();
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

/// The error of a failed batch, for each of its operations: a storage
/// error as it was, anything else as the commit's.
fn copy_err(e: &StoreError) -> StoreError {
    match e {
        StoreError::Db { action, message } => StoreError::Db {
            action,
            message: message.clone(),
        },
        other => StoreError::Db {
            action: "commit",
            message: other.to_string(),
        },
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
                    ctx.control_lost = None;
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
            // due before an operation (`BEGIN; SAVEPOINT op`, then `RELEASE
            // op; SAVEPOINT op` between two operations) wait in the context
            // and go with the operation's first statements in one round trip
            // (see `WriteCtx::flush`); `RELEASE op; COMMIT` goes at the end.
            // On SQLite every round trip is a hop to the connection's thread,
            // and the one writer spends them for every change.
            ctx.control.clear();
            ctx.control_lost = None;
            ctx.control.push(begin);
            for op in pending.by_ref() {
                ctx.last_qid = None;
                ctx.queued = false;
                if !alone {
                    ctx.control.push("SAVEPOINT op");
                }
                let (keep, deliver) = op(&mut ctx).await;
                delivers.push(deliver);
                if let Some(e) = ctx.control_lost.take() {
                    return Err(e);
                }
                any_queued |= keep && ctx.queued;
                if alone {
                    if !keep {
                        ctx.control.push("ROLLBACK");
                        return control_now(&mut ctx.conn, &mut ctx.control).await;
                    }
                    continue;
                }
                if !keep {
                    ctx.control.push("ROLLBACK TO op");
                }
                ctx.control.push("RELEASE op");
            }
            ctx.control.push("COMMIT");
            control_now(&mut ctx.conn, &mut ctx.control).await
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
                ctx.control.clear();
                ctx.control_lost = None;
                ctx.discard();
                ctx.control.push("ROLLBACK");
                let _ = control_now(&mut ctx.conn, &mut ctx.control).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(sql: &'static str, args: usize) -> Stmt {
        (0..args).fold(Stmt::new("test", sql), |s, i| s.arg(i as i64))
    }

    #[test]
    fn joined_statements_number_their_arguments_after_those_before() {
        let sql = joined_sql(&[
            stmt("INSERT INTO a VALUES ($1, $2, $1)", 2),
            stmt("UPDATE b SET x = $2 WHERE y = $1 AND z = '$1'", 2),
            stmt("DELETE FROM c WHERE d = $1", 1),
        ])
        .unwrap();
        assert_eq!(
            sql,
            "INSERT INTO a VALUES ($1, $2, $1);\nUPDATE b SET x = $4 WHERE y = $3 AND z = '$1';\nDELETE FROM c WHERE d = $5"
        );
    }

    #[test]
    fn one_statement_is_sent_as_written() {
        let sql = joined_sql(&[stmt("SELECT $1", 1)]).unwrap();
        assert_eq!(sql, "SELECT $1");
    }

    #[test]
    fn a_statement_naming_an_argument_it_was_not_given_is_refused() {
        let e = joined_sql(&[stmt("SELECT $1", 1), stmt("SELECT $2", 1)]).unwrap_err();
        assert!(e.to_string().contains("$2"), "{e}");
        let e = joined_sql(&[stmt("SELECT $1", 1), stmt("SELECT $0", 1)]).unwrap_err();
        assert!(e.to_string().contains("$0"), "{e}");
        // Alone too: SQLite would bind the missing argument as NULL.
        let e = joined_sql(&[stmt("SELECT $2", 1)]).unwrap_err();
        assert!(e.to_string().contains("$2"), "{e}");
    }
}
