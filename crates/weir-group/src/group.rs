//! [`Group`]: the task group itself.

use std::any::Any;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{Id, JoinError, JoinHandle};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use weir_context::Context;

use crate::error::{GroupError, GroupErrors, LimitError, Rejected};
use crate::task::{Delivered, Delivery, Outcome, Payload, PlainTask, Returned, RichTask, Shared};

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
/// running; their results, and those of finished tasks not yet joined, are
/// dropped. Waiting methods consume the group, so dropping a `wait()` future
/// half-way aborts the tasks too.
///
/// # Cost
///
/// A task is a plain [`tokio::spawn`] of your future in a wrapper that
/// carries one pointer more (and a tracing span when a subscriber wants it;
/// a limited task also holds its permit). When your future returns, the
/// wrapper puts its result in the group's completion queue: a `Mutex`ed
/// `VecDeque` that holds at most one entry per task not yet joined and that
/// the group takes a whole batch at a time. The group keeps each task's
/// `JoinHandle` in a `Vec`, in spawn order, to abort it and to see that it
/// has ended. So spawning and waiting costs about what `tokio::spawn` and a
/// `Vec` of handles cost, well under what a
/// [`JoinSet`](tokio::task::JoinSet) costs (0.3–0.7× in weir's benches),
/// whose per-task bookkeeping (an `Arc`'d list entry, a mutex taken on
/// spawn, completion and join) this avoids. As it spawns, the group now and then lets go of the handles of
/// tasks that have ended, which frees their task memory before the final
/// `wait`.
pub struct Group<T = (), E = anyhow::Error> {
    shared: Arc<Shared<T, E>>,
    /// Outcomes taken from the completion queue and not yet handed to the
    /// caller, in the order the tasks delivered them.
    delivered: VecDeque<Delivered<T, E>>,
    /// Tasks spawned and not yet handed to the caller (running or ended).
    live: usize,
    /// Panics that tokio caught after a task had delivered its outcome (in
    /// the destructor of its future), by task: they replace that outcome.
    late: Vec<(Id, Payload)>,
    limit: Option<Limit>,
    book: Book<Returned<T, E>>,
    resume_panics: bool,
}

/// What the group knows about its tasks, keyed by tokio task id, and the
/// tasks' `JoinHandle`s. Kept out of the tasks so that they stay small.
/// (tokio draws task ids from one 64-bit counter, so an id is not reused
/// while the group may still name its task; tokio-util's `JoinMap` keys its
/// tasks by id too.)
///
/// The common case costs a `Vec` push per task. A long-lived group that is
/// joined one task at a time and is never empty is compacted now and then,
/// so that what it keeps stays proportional to the tasks not yet joined.
struct Book<R> {
    /// Spawn index of `tasks[0]`.
    base: u64,
    /// The tasks spawned since the last compaction, in spawn order.
    tasks: Vec<Record<R>>,
    /// `tasks` as a map from id to spawn index; built when first needed.
    positions: Option<HashMap<Id, u64>>,
    /// Tasks not yet joined at the last compaction.
    older: HashMap<Id, Older<R>>,
    /// Tasks handed out one by one by `join_next` since the last compaction.
    joined: Vec<Id>,
    /// Names given to `spawn_named`, until the task is joined.
    names: HashMap<Id, Arc<str>>,
    /// Where in `tasks` the handles are that may still be held (the others
    /// are gone), so that sweeping costs what is held, not what was spawned.
    pending: Vec<usize>,
    /// `record` sweeps when `tasks` reaches this length.
    sweep_at: usize,
    /// Where in `tasks` `handle_mut` last found a task.
    finger: usize,
}

impl<R> Default for Book<R> {
    fn default() -> Self {
        Book {
            base: 0,
            tasks: Vec::new(),
            positions: None,
            older: HashMap::new(),
            joined: Vec::new(),
            names: HashMap::new(),
            pending: Vec::new(),
            sweep_at: 0,
            finger: 0,
        }
    }
}

/// One task spawned since the last compaction.
struct Record<R> {
    id: Id,
    /// `None` once the task is seen to have ended.
    handle: Option<JoinHandle<R>>,
}

/// A task that was not joined yet when the book was compacted.
struct Older<R> {
    index: u64,
    handle: Option<JoinHandle<R>>,
}

/// `join_next` compacts the book after this many joins, if they are at
/// least half of what it holds.
const COMPACT_AFTER: usize = 1024;

/// `spawn` looks for ended tasks, to let go of their handles (and so of
/// their memory), after this many spawns, or after twice as many as the
/// handles the last look kept, if more. So a look examines at most 1.5
/// handles per spawn since the last, and the group holds at most three
/// times as many handles as it has running tasks, plus this many.
const SWEEP_EVERY: usize = 64;

/// What tokio says of a task that has ended, without waiting; `None` while
/// it has not ended. Reads past tokio's cooperative budget: a group sweeps
/// many handles in one go.
fn try_join<R>(handle: &mut JoinHandle<R>) -> Option<Result<R, JoinError>> {
    if !handle.is_finished() {
        return None;
    }
    let mut cx = std::task::Context::from_waker(Waker::noop());
    match Pin::new(&mut tokio::task::coop::unconstrained(handle)).poll(&mut cx) {
        Poll::Ready(result) => Some(result),
        Poll::Pending => None,
    }
}

/// Notes a panic that tokio caught after the task delivered its outcome: in
/// the destructor of its future (or, for an aborted task, while dropping
/// it). The task's wrapper catches every other panic itself.
fn note_late<R>(late: &mut Vec<(Id, Payload)>, id: Id, ended: Result<R, JoinError>) {
    if let Err(join_error) = ended
        && join_error.is_panic()
    {
        late.push((id, Payload::new(join_error.into_panic())));
    }
}

/// Reads the handle of an ended task, letting go of it; leaves it while the
/// task runs.
fn sweep_one<R>(handle: &mut Option<JoinHandle<R>>, id: Id, late: &mut Vec<(Id, Payload)>) {
    if let Some(running) = handle
        && let Some(ended) = try_join(running)
    {
        *handle = None;
        note_late(late, id, ended);
    }
}

impl<R> Book<R> {
    fn next_index(&self) -> u64 {
        self.base + self.tasks.len() as u64
    }

    fn record(&mut self, handle: JoinHandle<R>, name: Option<Arc<str>>) {
        let id = handle.id();
        let index = self.next_index();
        self.pending.push(self.tasks.len());
        self.tasks.push(Record {
            id,
            handle: Some(handle),
        });
        if let Some(positions) = &mut self.positions {
            positions.insert(id, index);
        }
        if let Some(name) = name {
            self.names.insert(id, name);
        }
    }

    fn index(&mut self, id: Id) -> Option<u64> {
        if let Some(older) = self.older.get(&id) {
            return Some(older.index);
        }
        let (base, tasks) = (self.base, &self.tasks);
        let positions = self.positions.get_or_insert_with(|| {
            tasks
                .iter()
                .enumerate()
                .map(|(i, record)| (record.id, base + i as u64))
                .collect()
        });
        positions.get(&id).copied()
    }

    /// Where the task's handle is kept.
    fn handle_mut(&mut self, id: Id) -> Option<&mut Option<JoinHandle<R>>> {
        // Tasks mostly end in the order they were spawned: the one after the
        // last found is a good first guess, and needs no map.
        let guess = self.finger + 1;
        let i = if self.tasks.get(guess).is_some_and(|record| record.id == id) {
            guess
        } else if self.older.contains_key(&id) {
            return self.older.get_mut(&id).map(|older| &mut older.handle);
        } else {
            let index = self.index(id)?;
            usize::try_from(index.checked_sub(self.base)?).ok()?
        };
        self.finger = i;
        self.tasks.get_mut(i).map(|record| &mut record.handle)
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

    /// Notes a task that `join_next` handed out (its handle is gone), and
    /// compacts the book when such tasks are most of what it holds.
    fn joined_one(&mut self, id: Id) {
        self.joined.push(id);
        let held = self.tasks.len() + self.older.len();
        if self.joined.len() < COMPACT_AFTER || self.joined.len() * 2 < held {
            return;
        }
        let joined: HashSet<Id> = self.joined.drain(..).collect();
        self.older.retain(|id, _| !joined.contains(id));
        let base = self.base;
        self.base = self.next_index();
        for (i, record) in self.tasks.drain(..).enumerate() {
            if !joined.contains(&record.id) {
                let older = Older {
                    index: base + i as u64,
                    handle: record.handle,
                };
                self.older.insert(record.id, older);
            }
        }
        self.positions = None;
        self.pending.clear();
        self.sweep_at = 0;
        self.finger = 0;
    }

    /// After a spawn: now and then, lets go of the handles of tasks that
    /// have ended.
    fn maybe_sweep(&mut self, late: &mut Vec<(Id, Payload)>) {
        if self.tasks.len() >= self.sweep_at {
            self.sweep(late);
            let kept = self.pending.len() + self.older.len();
            self.sweep_at = self.tasks.len() + (2 * kept).max(SWEEP_EVERY);
        }
    }

    /// Lets go of the handles of every task that has ended.
    fn sweep(&mut self, late: &mut Vec<(Id, Payload)>) {
        let tasks = &mut self.tasks;
        self.pending.retain(|&i| {
            let record = &mut tasks[i];
            sweep_one(&mut record.handle, record.id, late);
            record.handle.is_some()
        });
        for (id, older) in &mut self.older {
            sweep_one(&mut older.handle, *id, late);
        }
    }

    /// Waits until every task has ended (each has delivered its outcome
    /// already, or will at once), letting go of every handle.
    async fn finish(&mut self, late: &mut Vec<(Id, Payload)>) {
        // The ended ones first, without waiting (nor yielding every 128).
        self.sweep(late);
        for &i in &self.pending {
            let record = &mut self.tasks[i];
            if let Some(handle) = &mut record.handle {
                let ended = handle.await;
                record.handle = None;
                note_late(late, record.id, ended);
            }
        }
        self.pending.clear();
        for (id, older) in &mut self.older {
            if let Some(handle) = &mut older.handle {
                let ended = handle.await;
                older.handle = None;
                note_late(late, *id, ended);
            }
        }
    }

    /// Aborts every task that may still run.
    fn abort_all(&mut self) {
        let tasks = self.pending.iter().map(|&i| &self.tasks[i].handle);
        let older = self.older.values().map(|o| &o.handle);
        for handle in tasks.chain(older).flatten() {
            handle.abort();
        }
    }

    /// Forgets every task: the group is empty. Indexes go on counting.
    fn clear(&mut self) {
        self.base = self.next_index();
        self.tasks.clear();
        self.positions = None;
        self.older.clear();
        self.joined.clear();
        self.names.clear();
        self.pending.clear();
        self.sweep_at = 0;
        self.finger = 0;
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
    /// use weir_context::Context;
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
            shared: Arc::new(Shared::new(ctx)),
            delivered: VecDeque::new(),
            live: 0,
            late: Vec::new(),
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
    /// `"task panicked: …"`), [`Cause::Cancelled`](weir_context::Cause::Cancelled)
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
        self.live
    }

    /// Whether every spawned task has been joined.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn ensure_idle(&mut self) -> Result<(), LimitError> {
        self.shared.take(&mut self.delivered);
        // A task that delivered its outcome has finished its work (its
        // slot, if any, is free).
        match self.live - self.delivered.len() {
            0 => Ok(()),
            running => Err(LimitError::Busy { running }),
        }
    }

    /// Waits until at least one more outcome is in `delivered`. Cancel safe:
    /// what it takes is kept in `delivered`.
    async fn deliveries(&mut self) {
        std::future::poll_fn(|cx| self.shared.poll_take(&mut self.delivered, cx)).await;
    }

    /// Waits until every task has delivered its outcome. Cancel safe.
    async fn all_delivered(&mut self) {
        // Each task delivers exactly once, so this ends.
        while self.delivered.len() < self.live {
            self.deliveries().await;
        }
    }

    /// A late panic noted for this task, if any.
    fn take_late(&mut self, id: Id) -> Option<Payload> {
        if self.late.is_empty() {
            return None;
        }
        let at = self.late.iter().position(|(late, _)| *late == id)?;
        Some(self.late.swap_remove(at).1)
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
                slots.acquire_owned().await.ok()
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
                Ok(permit) => Some(permit),
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
        let delivery = Delivery::new(Arc::clone(&self.shared));
        // Tokio sizes a task's memory by its future: the common case (no
        // slot to hold, no span to enter) spawns the smallest wrapper. If
        // this panics (no runtime), the wrapper is dropped outside any task
        // and delivers nothing: the group is as it was.
        let handle = if permit.is_none() && span.is_disabled() {
            tokio::spawn(PlainTask::new(fut, delivery))
        } else {
            tokio::spawn(RichTask::new(fut, delivery, permit, span))
        };
        self.live += 1;
        self.book.record(handle, name);
        self.book.maybe_sweep(&mut self.late);
    }

    /// Waits for the next task to finish and returns its result, in
    /// completion order; `None` once every spawned task has been joined.
    ///
    /// The task has ended when this returns: its future has been dropped.
    ///
    /// # Panics
    ///
    /// With [`resume_panics(true)`](Group::resume_panics), resumes the panic
    /// of a task that panicked.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped before it completes, no result
    /// is lost.
    pub async fn join_next(&mut self) -> Option<Result<T, GroupError<E>>> {
        if self.live == 0 {
            return None;
        }
        if self.delivered.is_empty() {
            self.deliveries().await;
        }
        let id = self.delivered.front()?.0;
        // The task delivered its outcome from inside its last poll; tokio
        // drops its future right after (on another thread, it may not have
        // yet). Nothing is taken out until that is done.
        if let Some(handle) = self.book.handle_mut(id)
            && let Some(running) = handle
        {
            let ended = running.await;
            *handle = None;
            note_late(&mut self.late, id, ended);
        }
        let delivered = self.delivered.pop_front()?;
        let settled = self.settle(delivered, self.resume_panics);
        if self.is_empty() {
            // Everything is joined: what the group knew about its tasks can go.
            self.book.clear();
        } else {
            self.book.joined_one(settled.id);
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
            Err(error) => errors.push(error),
        })
        .await;
        if errors.is_empty() {
            return Ok(values);
        }
        Err(GroupErrors::new(errors))
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
        // `None`: the grace period is too long to be represented; wait.
        let drained = match Instant::now().checked_add(grace) {
            Some(deadline) => tokio::time::timeout_at(deadline, self.all_delivered())
                .await
                .is_ok(),
            None => {
                self.all_delivered().await;
                true
            }
        };
        if !drained {
            tracing::warn!(
                tasks = self.live - self.delivered.len(),
                ?grace,
                "grace period over; aborting the tasks still running"
            );
            self.book.abort_all();
            // An aborted task delivers `Aborted` as tokio drops it.
            self.all_delivered().await;
        }
        self.book.finish(&mut self.late).await;
        let mut values = Vec::new();
        let mut errors = Vec::new();
        let mut aborted = Vec::new();
        while let Some(delivered) = self.delivered.pop_front() {
            match self.settle(delivered, false).result {
                Ok(value) => values.push(value),
                Err(GroupError::Aborted { task }) => aborted.push(task),
                Err(error) => errors.push(error),
            }
        }
        ShutdownReport {
            values,
            errors,
            aborted,
        }
    }

    /// Turns a delivered outcome into a result that names the task.
    fn settle(&mut self, (id, outcome): Delivered<T, E>, keep_payload: bool) -> Settled<T, E> {
        self.live -= 1;
        let outcome = match self.take_late(id) {
            Some(payload) => Outcome::Panicked(Box::new(payload)),
            None => outcome,
        };
        let (result, payload) = match outcome {
            Outcome::Ok(value) => (Ok(value), None),
            Outcome::Err(error) => {
                let task = self.book.label(id);
                (Err(GroupError::Failed { task, error }), None)
            }
            Outcome::Panicked(payload) => {
                let payload = payload.into_inner();
                let error = GroupError::Panicked {
                    task: self.book.label(id),
                    message: weir_context::__private::panic_message(&*payload),
                };
                (Err(error), keep_payload.then_some(payload))
            }
            Outcome::Aborted => {
                let task = self.book.label(id);
                (Err(GroupError::Aborted { task }), None)
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

    /// Waits for every task to end, then hands each to `each`, in the order
    /// they delivered their outcomes (which is the order failures happened
    /// in); then resumes the earliest panic if panics are resumed.
    async fn drain(&mut self, mut each: impl FnMut(Settled<T, E>)) {
        self.all_delivered().await;
        self.book.finish(&mut self.late).await;
        let mut first_panic = None;
        while let Some(delivered) = self.delivered.pop_front() {
            let mut settled = self.settle(delivered, self.resume_panics);
            if let Some(payload) = settled.payload.take() {
                first_panic.get_or_insert(payload);
            }
            each(settled);
        }
        if let Some(payload) = first_panic {
            std::panic::resume_unwind(payload);
        }
    }

    /// Joins every task, handing each value and its task id to `push`;
    /// returns the failure that happened first.
    async fn drain_values(&mut self, mut push: impl FnMut(Id, T)) -> Option<GroupError<E>> {
        let mut first = None;
        self.drain(|settled| match settled.result {
            Ok(value) => push(settled.id, value),
            Err(error) => {
                first.get_or_insert(error);
            }
        })
        .await;
        first
    }
}

impl<T, E> Drop for Group<T, E> {
    fn drop(&mut self) {
        if self.live > 0 {
            tracing::warn!(
                tasks = self.live,
                "task group dropped before its tasks were joined; aborting them"
            );
        }
        // Go cancels a WithContext context when Wait returns; weir when the
        // group is gone (waiting methods consume it).
        self.shared.token.cancel();
        self.book.abort_all();
        // What was delivered and not joined goes now; the aborted tasks'
        // deliveries are dropped as they come.
        self.shared.close();
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Handles the book still holds (tasks not seen to have ended).
    fn held(book: &Book<impl Sized>) -> usize {
        let tasks = book.tasks.iter().filter(|r| r.handle.is_some()).count();
        let older = book.older.values().filter(|o| o.handle.is_some()).count();
        tasks + older
    }

    /// A long-lived group joined one task at a time, with a task that lives
    /// through all the others: what the book keeps stays bounded.
    #[tokio::test(start_paused = true)]
    async fn a_long_lived_group_joined_one_by_one_keeps_its_book_bounded() {
        let mut group: Group<u64, &'static str> = Group::new().limit(8).unwrap();
        group
            .spawn(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(0)
            })
            .await;
        let mut most = 0;
        for i in 1..=20_000u64 {
            group
                .spawn(async move {
                    tokio::time::sleep(Duration::from_millis(i % 3)).await;
                    Ok(i)
                })
                .await;
            while group.len() > 4 {
                group.join_next().await.unwrap().unwrap();
            }
            let kept = group.book.tasks.len() + group.book.older.len();
            most = most.max(kept);
            assert!(
                held(&group.book) <= group.len(),
                "a joined task's handle is kept"
            );
            assert!(group.delivered.len() <= group.len());
        }
        assert!(most <= 3 * COMPACT_AFTER, "the book grew to {most}");
        assert_eq!(group.wait().await.unwrap().len(), 4);
    }

    /// A group that is never joined until the end lets go of the handles of
    /// the tasks that ended as it spawns (freeing their task memory), even
    /// past a task that runs all along; `wait` still has every value.
    #[tokio::test(start_paused = true)]
    async fn spawning_lets_go_of_the_handles_of_ended_tasks() {
        let mut group: Group<u64, &'static str> = Group::new().limit(4).unwrap();
        group
            .spawn(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(0)
            })
            .await;
        for i in 1..10_000u64 {
            group
                .spawn(async move {
                    tokio::task::yield_now().await;
                    Ok(i)
                })
                .await;
            // Three times the running tasks, plus what spawned since the
            // last sweep.
            let bound = 3 * 4 + SWEEP_EVERY;
            assert!(
                held(&group.book) <= bound,
                "{} handles held",
                held(&group.book)
            );
        }
        assert_eq!(group.len(), 10_000);
        let mut values = group.wait().await.unwrap();
        values.sort_unstable();
        assert_eq!(values, (0..10_000).collect::<Vec<_>>());
    }
}
