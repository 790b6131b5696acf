//! [`Group`]: the task group itself.

use std::any::Any;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_core::Context;

use crate::error::{GroupError, GroupErrors, LimitError, Rejected};
use crate::task::{Outcome, PlainTask, RichTask, Shared};

/// What the group's `JoinSet` yields for one task.
type Joined<T, E> = Result<(Id, Outcome<T, E>), JoinError>;

/// A set of tasks that run concurrently, share a cancellation token that the
/// first failure cancels, and are all joined (or aborted) before the group is
/// gone: Go's `errgroup` for tokio.
///
/// `T` is what each task returns on success, `E` its error: every task is a
/// future of `Result<T, E>`. The defaults, `Group<(), anyhow::Error>`, fit the
/// common "run these, stop at the first error" case. Rust does not use type
/// defaults for inference, so name the type where you create the group:
/// `let mut group: Group = Group::new();`.
///
/// # Examples
///
/// Fetch three pages at most two at a time; keep the pages in spawn order:
///
/// ```
/// use std::time::Duration;
/// use weir_group::Group;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> anyhow::Result<()> {
/// let mut group: Group<String> = Group::new().limit(2)?;
/// for page in ["a", "b", "c"] {
///     // `spawn` waits here while two fetches are running.
///     group
///         .spawn_named(page, async move {
///             tokio::time::sleep(Duration::from_millis(10)).await;
///             Ok(format!("<page {page}>"))
///         })
///         .await;
/// }
/// let pages = group.wait_ordered().await?;
/// assert_eq!(pages, ["<page a>", "<page b>", "<page c>"]);
/// # Ok(())
/// # }
/// ```
///
/// # On error
///
/// A task's `Err` cancels the group's [`token`](Group::token) at once (unless
/// [`fail_fast(false)`](Group::fail_fast)); tasks that watch the token stop,
/// tasks that do not run to their end. [`wait`](Group::wait) still waits for
/// every task, then returns the failure that happened first.
///
/// # On panic
///
/// A panic inside a task is caught in that task, cancels the token like an
/// error and is reported as [`GroupError::Panicked`] with its message and the
/// task's name. With [`resume_panics(true)`](Group::resume_panics) the waiter
/// re-raises it instead.
///
/// # On cancellation
///
/// [`cancel`](Group::cancel), or cancelling the parent token given to
/// [`with_token`](Group::with_token), cancels the group's token. The group
/// does not abort anything on cancellation: tasks are expected to watch the
/// token. Use [`shutdown`](Group::shutdown) to bound how long they may take.
///
/// # On drop
///
/// Dropping the group cancels its token and aborts every task that is still
/// running (a `JoinSet` does the same). Waiting methods consume the group, so
/// dropping a `wait()` future half-way aborts the tasks too.
///
/// # Cost
///
/// An unlimited task is a `JoinSet` task whose future carries one pointer
/// more than yours (and a tracing span when a subscriber wants it); a
/// limited task also holds its permit. While `spawn` waits for a slot, the
/// group moves the results of finished tasks out of the `JoinSet`, which
/// frees their task memory before the final `wait`.
pub struct Group<T = (), E = anyhow::Error> {
    set: JoinSet<Outcome<T, E>>,
    /// Tasks that finished and were taken out of `set` early (to free their
    /// memory) but not yet handed to the caller.
    ready: VecDeque<Joined<T, E>>,
    shared: Arc<Shared>,
    limit: Option<Limit>,
    book: Book,
    resume_panics: bool,
}

/// What the group knows about its tasks, keyed by tokio task id (ids are
/// unique among the tasks of a `JoinSet`; tokio-util's `JoinMap` relies on
/// the same). Kept out of the tasks so that they stay small.
///
/// The common case costs a `Vec` push per task. A long-lived group that is
/// joined one task at a time and is never empty is compacted now and then,
/// so that what it keeps stays proportional to the tasks not yet joined.
#[derive(Debug, Default)]
struct Book {
    /// Spawn index of `ids[0]`.
    base: u64,
    /// Ids of the tasks spawned since the last compaction, in spawn order.
    ids: Vec<Id>,
    /// `ids` as a map to spawn indexes; built when first needed.
    positions: Option<HashMap<Id, u64>>,
    /// Spawn indexes of tasks not yet joined at the last compaction.
    older: HashMap<Id, u64>,
    /// Tasks handed out one by one by `join_next` since the last compaction.
    joined: Vec<Id>,
    /// Names given to `spawn_named`, until the task is joined.
    names: HashMap<Id, Arc<str>>,
}

/// `join_next` compacts the book after this many joins, if they are at
/// least half of what it holds.
const COMPACT_AFTER: usize = 1024;

impl Book {
    fn next_index(&self) -> u64 {
        self.base + self.ids.len() as u64
    }

    fn record(&mut self, id: Id, name: Option<Arc<str>>) {
        let index = self.next_index();
        self.ids.push(id);
        if let Some(positions) = &mut self.positions {
            positions.insert(id, index);
        }
        if let Some(name) = name {
            self.names.insert(id, name);
        }
    }

    fn index(&mut self, id: Id) -> Option<u64> {
        if let Some(index) = self.older.get(&id) {
            return Some(*index);
        }
        let (base, ids) = (self.base, &self.ids);
        let positions = self.positions.get_or_insert_with(|| {
            ids.iter()
                .enumerate()
                .map(|(i, id)| (*id, base + i as u64))
                .collect()
        });
        positions.get(&id).copied()
    }

    /// The task's name, or `#<index>`.
    fn label(&mut self, id: Id) -> String {
        if let Some(name) = self.names.get(&id) {
            return name.to_string();
        }
        match self.index(id) {
            Some(index) => format!("#{index}"),
            None => format!("#? (tokio task {id})"),
        }
    }

    /// Forgets the name of a joined task.
    fn forget_name(&mut self, id: Id) {
        if !self.names.is_empty() {
            self.names.remove(&id);
        }
    }

    /// Notes a task that `join_next` handed out. Returns the joined tasks
    /// when it compacted the book, so that the caller can forget them too.
    fn joined_one(&mut self, id: Id) -> Option<HashSet<Id>> {
        self.joined.push(id);
        let held = self.ids.len() + self.older.len();
        if self.joined.len() < COMPACT_AFTER || self.joined.len() * 2 < held {
            return None;
        }
        let joined: HashSet<Id> = self.joined.drain(..).collect();
        self.older.retain(|id, _| !joined.contains(id));
        for (i, id) in self.ids.iter().enumerate() {
            if !joined.contains(id) {
                self.older.insert(*id, self.base + i as u64);
            }
        }
        self.base = self.next_index();
        self.ids.clear();
        self.positions = None;
        Some(joined)
    }

    /// Forgets every task: the group is empty. Indexes go on counting.
    fn clear(&mut self) {
        self.base = self.next_index();
        self.ids.clear();
        self.positions = None;
        self.older.clear();
        self.joined.clear();
        self.names.clear();
    }
}

#[derive(Debug)]
struct Limit {
    max: usize,
    slots: Arc<Semaphore>,
}

/// One joined task, as the waiting methods see it.
struct Settled<T, E> {
    id: Id,
    result: Result<T, GroupError<E>>,
    /// The panic payload, kept only when panics are resumed.
    payload: Option<Box<dyn Any + Send>>,
}

/// What [`Group::shutdown`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct ShutdownReport<T, E> {
    /// Values of the tasks that succeeded, in the order they finished.
    pub values: Vec<T>,
    /// Tasks that failed or panicked, in the order the failures happened.
    pub errors: Vec<GroupError<E>>,
    /// Names (or `#<index>`) of the tasks still running when the grace period
    /// ended, which were aborted.
    pub aborted: Vec<String>,
}

impl<T, E> ShutdownReport<T, E> {
    /// Whether every task ended within the grace period (none was aborted).
    pub fn drained(&self) -> bool {
        self.aborted.is_empty()
    }
}

impl<T, E> Default for Group<T, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, E> Group<T, E> {
    /// An empty group with no limit and a fresh token.
    pub fn new() -> Self {
        Self::from_context(Context::background())
    }

    /// An empty group whose token is a child of `parent`: cancelling `parent`
    /// cancels the group, while a failure in the group cancels only the group
    /// (Go's `errgroup.WithContext`).
    ///
    /// # Examples
    ///
    /// ```
    /// use tokio_util::sync::CancellationToken;
    /// use weir_group::Group;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let parent = CancellationToken::new();
    /// let mut group: Group<(), &str> = Group::with_token(parent.clone());
    /// group.spawn(async { Err("boom") }).await;
    /// assert!(group.wait().await.is_err());
    /// assert!(!parent.is_cancelled());
    /// # }
    /// ```
    pub fn with_token(parent: CancellationToken) -> Self {
        Self::from_context(Context::from(parent).child())
    }

    /// An empty group whose context is a child of `parent`: `parent`'s
    /// cancellation or deadline cancels the group (and the cause is visible
    /// through [`context`](Group::context)); the group's first failure
    /// cancels only the group, with that failure as its cause.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_core::Context;
    /// use weir_group::Group;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let request = Context::background().with_timeout(Duration::from_secs(2));
    /// let mut group: Group<(), &str> = Group::with_context(&request);
    /// let ctx = group.context().clone();
    /// group.spawn(async { Err("upstream refused") }).await;
    /// let _ = group.wait().await;
    /// assert_eq!(ctx.cause().map(|c| c.to_string()).as_deref(), Some("task failed: upstream refused"));
    /// assert!(!request.is_cancelled());
    /// # }
    /// ```
    pub fn with_context(parent: &Context) -> Self {
        Self::from_context(parent.child())
    }

    /// The one constructor; `new`, `with_token` and `with_context` feed it.
    fn from_context(ctx: Context) -> Self {
        Group {
            set: JoinSet::new(),
            ready: VecDeque::new(),
            shared: Arc::new(Shared::new(ctx)),
            limit: None,
            book: Book::default(),
            resume_panics: false,
        }
    }

    /// Sets the limit at creation: at most `n` tasks of this group exist at
    /// once. See [`set_limit`](Group::set_limit).
    ///
    /// # Errors
    ///
    /// [`LimitError::Zero`] for `n == 0`; [`LimitError::Busy`] if tasks are
    /// already running.
    pub fn limit(mut self, n: usize) -> Result<Self, LimitError>
    where
        T: 'static,
        E: 'static,
    {
        self.set_limit(n)?;
        Ok(self)
    }

    /// Whether a failure or panic cancels the group's token (default `true`).
    ///
    /// With `false` the group only collects: tasks keep running after a
    /// failure, and [`wait_joined`](Group::wait_joined) or
    /// [`wait_all`](Group::wait_all) report every failure (Go's plain
    /// `errgroup.Group` plus `errors.Join`). Applies to the whole group,
    /// tasks already running included.
    pub fn fail_fast(self, yes: bool) -> Self {
        self.shared.set_fail_fast(yes);
        self
    }

    /// Whether a task's panic is re-raised in the code that waits for the
    /// group (default `false`: it becomes [`GroupError::Panicked`]).
    ///
    /// With `true`, [`join_next`](Group::join_next) resumes the panic when it
    /// reaches that task; [`wait`](Group::wait) and the other waiting methods
    /// first wait for every task, then resume the earliest panic (a panic is a
    /// bug and is not hidden behind an ordinary error that happened first).
    /// [`shutdown`](Group::shutdown) never resumes panics.
    pub fn resume_panics(mut self, yes: bool) -> Self {
        self.resume_panics = yes;
        self
    }

    /// Limits the group to at most `n` tasks at once, from now on.
    ///
    /// The slot is taken before a task is spawned (a permit of a tokio
    /// [`Semaphore`], moved into the task and released when its work ends),
    /// so at most `n` tasks, and their futures, exist at a time;
    /// [`spawn`](Group::spawn) waits for a slot and
    /// [`try_spawn`](Group::try_spawn) hands the future back. A limit above
    /// [`Semaphore::MAX_PERMITS`] is lowered to it.
    ///
    /// # Errors
    ///
    /// - [`LimitError::Zero`] for `n == 0` (Go's `SetLimit(0)` blocks every
    ///   `Go` call forever; weir refuses it).
    /// - [`LimitError::Busy`] while tasks of the group are running: where Go
    ///   panics, weir leaves the limit unchanged and says so. Finished tasks
    ///   that were not joined yet do not count.
    pub fn set_limit(&mut self, n: usize) -> Result<(), LimitError>
    where
        T: 'static,
        E: 'static,
    {
        if n == 0 {
            return Err(LimitError::Zero);
        }
        self.ensure_idle()?;
        let max = n.min(Semaphore::MAX_PERMITS);
        self.limit = Some(Limit {
            max,
            slots: Arc::new(Semaphore::new(max)),
        });
        Ok(())
    }

    /// Removes the limit (Go's `SetLimit(-1)`).
    ///
    /// # Errors
    ///
    /// [`LimitError::Busy`] while tasks of the group are running.
    pub fn clear_limit(&mut self) -> Result<(), LimitError>
    where
        T: 'static,
        E: 'static,
    {
        self.ensure_idle()?;
        self.limit = None;
        Ok(())
    }

    /// The current limit, or `None` when the group is unlimited.
    pub fn max_tasks(&self) -> Option<usize> {
        self.limit.as_ref().map(|l| l.max)
    }

    /// The group's token. It is cancelled on the first failure or panic
    /// (unless [`fail_fast(false)`](Group::fail_fast)), by
    /// [`cancel`](Group::cancel), by the parent token, and when the group is
    /// dropped or consumed by a waiting method. Clone it into tasks that
    /// should stop when the group fails.
    pub fn token(&self) -> &CancellationToken {
        &self.shared.token
    }

    /// The group's context: its token, plus why it was cancelled
    /// ([`Context::cause`]): the first failure (`"task failed: …"` or
    /// `"task panicked: …"`), [`Cause::Cancelled`](weir_core::Cause::Cancelled)
    /// for [`cancel`](Group::cancel), or the parent's cause.
    pub fn context(&self) -> &Context {
        &self.shared.ctx
    }

    /// Cancels the group's token. Nothing is aborted: tasks that watch the
    /// token end on their own.
    pub fn cancel(&self) {
        self.shared.ctx.cancel();
    }

    /// Whether the group's token is cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.shared.token.is_cancelled()
    }

    /// How many tasks were spawned and not yet joined (running or finished).
    pub fn len(&self) -> usize {
        self.set.len() + self.ready.len()
    }

    /// Whether every spawned task has been joined.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves finished tasks out of the `JoinSet`, which frees the memory of
    /// their futures, keeping their results for the caller.
    fn reap(&mut self)
    where
        T: 'static,
        E: 'static,
    {
        while let Some(joined) = self.set.try_join_next_with_id() {
            self.ready.push_back(joined);
        }
    }

    fn ensure_idle(&mut self) -> Result<(), LimitError>
    where
        T: 'static,
        E: 'static,
    {
        self.reap();
        match self.set.len() {
            0 => Ok(()),
            running => Err(LimitError::Busy { running }),
        }
    }
}

impl<T, E> Group<T, E>
where
    T: Send + 'static,
    E: Display + Send + 'static,
{
    /// Spawns `fut` as a task of the group, first waiting for a free slot if
    /// the group is limited (Go's `Go`).
    ///
    /// The task runs inside a `task` tracing span with its index. Its `Err`
    /// or panic cancels the group's token the moment it happens.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the sense that dropping this future while it waits for
    /// a slot takes no slot and spawns nothing; but `fut` is dropped with it.
    /// Use [`try_spawn`](Group::try_spawn) to keep the future when there is
    /// no slot.
    ///
    /// # Panics
    ///
    /// Panics if called outside a tokio runtime, like [`tokio::spawn`].
    pub async fn spawn<F>(&mut self, fut: F)
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        self.spawn_inner(None, fut).await;
    }

    /// [`spawn`](Group::spawn) with a name, used in the task's span, events
    /// and errors (`task fetch-a failed: ...`).
    ///
    /// # Cancel safety
    ///
    /// As for [`spawn`](Group::spawn).
    ///
    /// # Panics
    ///
    /// Panics if called outside a tokio runtime, like [`tokio::spawn`].
    pub async fn spawn_named<F>(&mut self, name: impl Into<Arc<str>>, fut: F)
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        self.spawn_inner(Some(name.into()), fut).await;
    }

    /// Spawns `fut` if the group has a free slot, without waiting (Go's
    /// `TryGo`). An unlimited group always has one.
    ///
    /// # Errors
    ///
    /// [`Rejected`] when the group is at its limit; it hands `fut` back
    /// unchanged ([`Rejected::into_inner`]) so it can be retried.
    ///
    /// # Panics
    ///
    /// Panics if called outside a tokio runtime, like [`tokio::spawn`].
    ///
    /// # Examples
    ///
    /// ```
    /// use weir_group::Group;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> anyhow::Result<()> {
    /// let mut group: Group<u32> = Group::new().limit(1)?;
    /// let slow = async {
    ///     tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    ///     Ok(1)
    /// };
    /// group.try_spawn(slow)?;
    /// let rejected = group.try_spawn(async { Ok(2) }).unwrap_err();
    /// group.join_next().await; // the slot frees
    /// group.try_spawn(rejected.into_inner())?;
    /// assert_eq!(group.wait().await?, [2]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_spawn<F>(&mut self, fut: F) -> Result<(), Rejected<F>>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        self.try_spawn_inner(None, fut)
    }

    /// [`try_spawn`](Group::try_spawn) with a name.
    ///
    /// # Errors
    ///
    /// [`Rejected`] when the group is at its limit, handing `fut` back.
    ///
    /// # Panics
    ///
    /// Panics if called outside a tokio runtime, like [`tokio::spawn`].
    pub fn try_spawn_named<F>(
        &mut self,
        name: impl Into<Arc<str>>,
        fut: F,
    ) -> Result<(), Rejected<F>>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        self.try_spawn_inner(Some(name.into()), fut)
    }

    async fn spawn_inner<F>(&mut self, name: Option<Arc<str>>, fut: F)
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        let permit = match &self.limit {
            None => None,
            Some(limit) => {
                let slots = Arc::clone(&limit.slots);
                // The semaphore is never closed, so this always gets a permit.
                let permit = slots.acquire_owned().await.ok();
                self.reap();
                permit
            }
        };
        self.start(name, fut, permit);
    }

    fn try_spawn_inner<F>(&mut self, name: Option<Arc<str>>, fut: F) -> Result<(), Rejected<F>>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        let permit = match &self.limit {
            None => None,
            Some(limit) => match Arc::clone(&limit.slots).try_acquire_owned() {
                Ok(permit) => {
                    self.reap();
                    Some(permit)
                }
                Err(_) => return Err(Rejected::new(fut)),
            },
        };
        self.start(name, fut, permit);
        Ok(())
    }

    fn start<F>(&mut self, name: Option<Arc<str>>, fut: F, permit: Option<OwnedSemaphorePermit>)
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        let index = self.book.next_index();
        let span = tracing::info_span!("task", index, name = name.as_deref());
        let shared = Arc::clone(&self.shared);
        // Tokio sizes a task's memory by its future: the common case (no
        // slot to hold, no span to enter) spawns the smallest wrapper.
        let handle = if permit.is_none() && span.is_disabled() {
            self.set.spawn(PlainTask::new(fut, shared))
        } else {
            self.set.spawn(RichTask::new(fut, shared, permit, span))
        };
        self.book.record(handle.id(), name);
    }

    /// Waits for the next task to finish and returns its result, in
    /// completion order; `None` once every spawned task has been joined.
    ///
    /// # Panics
    ///
    /// With [`resume_panics(true)`](Group::resume_panics), resumes the panic
    /// of a task that panicked.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped before it completes, no result
    /// is lost (as [`JoinSet::join_next`]).
    pub async fn join_next(&mut self) -> Option<Result<T, GroupError<E>>> {
        let joined = self.next_joined().await?;
        let settled = self.settle(joined, self.resume_panics);
        if self.is_empty() {
            // Everything is joined: what the group knew about its tasks can go.
            self.book.clear();
            self.shared.failures().clear();
        } else if let Some(joined) = self.book.joined_one(settled.id) {
            self.shared.failures().retain(|id| !joined.contains(id));
        }
        if let Some(payload) = settled.payload {
            std::panic::resume_unwind(payload);
        }
        Some(settled.result)
    }

    /// Waits for every task, then returns their values in completion order,
    /// or the failure that happened first (by the time it happened, not by
    /// spawn order; Go's `Wait`).
    ///
    /// After the first failure the other tasks see the token cancelled and
    /// keep running until they end; their results are dropped. Tasks already
    /// taken with [`join_next`](Group::join_next) are not part of the result.
    /// The group is consumed: its token is cancelled when this returns.
    ///
    /// # Errors
    ///
    /// The first [`GroupError`] to happen: `Failed`, `Panicked` or `Aborted`.
    ///
    /// # Panics
    ///
    /// With [`resume_panics(true)`](Group::resume_panics), resumes the
    /// earliest panic once every task has ended.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future drops the group, which cancels
    /// its token and aborts the tasks still running; finished results are
    /// lost. Use [`join_next`](Group::join_next) in a `select!` loop to keep
    /// them.
    pub async fn wait(mut self) -> Result<Vec<T>, GroupError<E>> {
        let mut values = Vec::with_capacity(self.len());
        let failure = self.drain_values(|_, value| values.push(value)).await;
        match failure {
            Some(error) => Err(error),
            None => Ok(values),
        }
    }

    /// [`wait`](Group::wait), with the values in spawn order.
    ///
    /// # Errors
    ///
    /// The first [`GroupError`] to happen, as for [`wait`](Group::wait).
    ///
    /// # Panics
    ///
    /// As for [`wait`](Group::wait).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`wait`](Group::wait).
    pub async fn wait_ordered(mut self) -> Result<Vec<T>, GroupError<E>> {
        let mut values = Vec::with_capacity(self.len());
        let failure = self
            .drain_values(|id, value| values.push((id, value)))
            .await;
        if let Some(error) = failure {
            return Err(error);
        }
        Ok(self.in_spawn_order(values))
    }

    /// Waits for every task and returns one result per task, in completion
    /// order. The group is consumed.
    ///
    /// # Panics
    ///
    /// With [`resume_panics(true)`](Group::resume_panics), resumes the
    /// earliest panic once every task has ended.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`wait`](Group::wait).
    pub async fn wait_all(mut self) -> Vec<Result<T, GroupError<E>>> {
        let mut results = Vec::with_capacity(self.len());
        self.drain(|settled| results.push(settled.result)).await;
        results
    }

    /// [`wait_all`](Group::wait_all), in spawn order.
    ///
    /// # Panics
    ///
    /// As for [`wait_all`](Group::wait_all).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`wait`](Group::wait).
    pub async fn wait_all_ordered(mut self) -> Vec<Result<T, GroupError<E>>> {
        let mut results = Vec::with_capacity(self.len());
        self.drain(|settled| results.push((settled.id, settled.result)))
            .await;
        self.in_spawn_order(results)
    }

    /// Waits for every task; returns their values in completion order if
    /// none failed, or every failure in a [`GroupErrors`] (Go's
    /// `errors.Join`). Pair it with [`fail_fast(false)`](Group::fail_fast) to
    /// let every task run.
    ///
    /// # Errors
    ///
    /// [`GroupErrors`] holding each failure, in the order they happened.
    ///
    /// # Panics
    ///
    /// As for [`wait_all`](Group::wait_all).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, as [`wait`](Group::wait).
    pub async fn wait_joined(mut self) -> Result<Vec<T>, GroupErrors<E>> {
        let mut values = Vec::with_capacity(self.len());
        let mut errors = Vec::new();
        self.drain(|settled| match settled.result {
            Ok(value) => values.push(value),
            Err(error) => errors.push((settled.id, error)),
        })
        .await;
        if errors.is_empty() {
            return Ok(values);
        }
        Err(GroupErrors::new(self.in_failure_order(errors)))
    }

    /// Stops the group: cancels its token, waits up to `grace` for the tasks
    /// to end, then aborts those still running and waits for them to go.
    /// Panics are reported, never resumed.
    ///
    /// When this returns no task of the group is left. A task that never
    /// yields to the runtime cannot be aborted, and this waits for it.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future drops the group, which aborts the
    /// tasks still running at once.
    pub async fn shutdown(mut self, grace: Duration) -> ShutdownReport<T, E> {
        self.shared.token.cancel();
        let mut values = Vec::new();
        let mut errors = Vec::new();
        let mut aborted = Vec::new();
        let mut joined_all = Vec::with_capacity(self.len());
        joined_all.extend(self.ready.drain(..));
        // `None`: the grace period is too long to be represented; wait.
        let deadline = Instant::now().checked_add(grace);
        loop {
            let next = match deadline {
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline, self.set.join_next_with_id()).await {
                        Ok(next) => next,
                        Err(_elapsed) => break,
                    }
                }
                None => self.set.join_next_with_id().await,
            };
            match next {
                Some(joined) => joined_all.push(joined),
                None => break,
            }
        }
        if !self.set.is_empty() {
            tracing::warn!(
                tasks = self.set.len(),
                ?grace,
                "grace period over; aborting the tasks still running"
            );
            self.set.abort_all();
            while let Some(joined) = self.set.join_next_with_id().await {
                joined_all.push(joined);
            }
        }
        for joined in joined_all {
            let settled = self.settle(joined, false);
            match settled.result {
                Ok(value) => values.push(value),
                Err(GroupError::Aborted { task }) => aborted.push(task),
                Err(error) => errors.push((settled.id, error)),
            }
        }
        ShutdownReport {
            values,
            errors: self.in_failure_order(errors),
            aborted,
        }
    }

    async fn next_joined(&mut self) -> Option<Joined<T, E>> {
        match self.ready.pop_front() {
            Some(joined) => Some(joined),
            None => self.set.join_next_with_id().await,
        }
    }

    /// Turns what the `JoinSet` yielded into a result that names the task.
    fn settle(&mut self, joined: Joined<T, E>, keep_payload: bool) -> Settled<T, E> {
        let (id, result, payload) = match joined {
            Ok((id, Outcome::Ok(value))) => (id, Ok(value), None),
            Ok((id, Outcome::Err(error))) => {
                let task = self.book.label(id);
                (id, Err(GroupError::Failed { task, error }), None)
            }
            Ok((id, Outcome::Panicked(payload))) => {
                let payload = payload.into_inner();
                let error = GroupError::Panicked {
                    task: self.book.label(id),
                    message: weir_core::panic_message(&*payload),
                };
                (id, Err(error), keep_payload.then_some(payload))
            }
            Err(join_error) => {
                let id = join_error.id();
                let task = self.book.label(id);
                if join_error.is_panic() {
                    // The wrapper catches the task's panics; this one came
                    // from outside it (e.g. a destructor).
                    let payload = join_error.into_panic();
                    let message = weir_core::panic_message(&*payload);
                    let error = GroupError::Panicked { task, message };
                    (id, Err(error), keep_payload.then_some(payload))
                } else {
                    (id, Err(GroupError::Aborted { task }), None)
                }
            }
        };
        self.book.forget_name(id);
        Settled {
            id,
            result,
            payload,
        }
    }

    /// Sorts `(task id, item)` pairs by spawn order.
    fn in_spawn_order<X>(&mut self, items: Vec<(Id, X)>) -> Vec<X> {
        let mut indexed: Vec<(u64, X)> = items
            .into_iter()
            .map(|(id, item)| (self.book.index(id).unwrap_or(u64::MAX), item))
            .collect();
        indexed.sort_by_key(|(index, _)| *index);
        indexed.into_iter().map(|(_, item)| item).collect()
    }

    /// Sorts failures by the order in which they happened; those that were
    /// not recorded as they happened (aborts) go last.
    fn in_failure_order<X>(&self, items: Vec<(Id, X)>) -> Vec<X> {
        let order: HashMap<Id, usize> = self
            .shared
            .failures()
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i))
            .collect();
        let mut ordered: Vec<(usize, X)> = items
            .into_iter()
            .map(|(id, item)| (order.get(&id).copied().unwrap_or(usize::MAX), item))
            .collect();
        ordered.sort_by_key(|(order, _)| *order);
        ordered.into_iter().map(|(_, item)| item).collect()
    }

    /// Joins every task, handing each to `each`; then resumes the earliest
    /// panic if panics are resumed.
    async fn drain(&mut self, mut each: impl FnMut(Settled<T, E>)) {
        let mut panics = Vec::new();
        while let Some(joined) = self.next_joined().await {
            let mut settled = self.settle(joined, self.resume_panics);
            if let Some(payload) = settled.payload.take() {
                panics.push((settled.id, payload));
            }
            each(settled);
        }
        if let Some(payload) = self.in_failure_order(panics).into_iter().next() {
            std::panic::resume_unwind(payload);
        }
    }

    /// Joins every task, handing each value and its task id to `push`;
    /// returns the failure that happened first.
    async fn drain_values(&mut self, mut push: impl FnMut(Id, T)) -> Option<GroupError<E>> {
        let mut errors = Vec::new();
        self.drain(|settled| match settled.result {
            Ok(value) => push(settled.id, value),
            Err(error) => errors.push((settled.id, error)),
        })
        .await;
        if errors.len() <= 1 {
            return errors.pop().map(|(_, error)| error);
        }
        self.in_failure_order(errors).into_iter().next()
    }
}

impl<T, E> Drop for Group<T, E> {
    fn drop(&mut self) {
        let unjoined = self.set.len();
        if unjoined > 0 {
            tracing::warn!(
                tasks = unjoined,
                "task group dropped before its tasks were joined; aborting them"
            );
        }
        // Go cancels a WithContext context when Wait returns; weir when the
        // group is gone (waiting methods consume it). The JoinSet aborts the
        // tasks as it drops.
        self.shared.token.cancel();
    }
}

impl<T, E> fmt::Debug for Group<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("tasks", &self.len())
            .field("max_tasks", &self.max_tasks())
            .field("cancelled", &self.is_cancelled())
            .field("fail_fast", &self.shared.fail_fast())
            .field("resume_panics", &self.resume_panics)
            .finish_non_exhaustive()
    }
}
