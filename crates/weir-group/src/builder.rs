//! [`GroupBuilder`]: a group's settings, checked once by `build()`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use tokio::sync::Semaphore;
use weir_context::{ConfigError, Context, ErrorPolicy};

use crate::group::{DEFAULT_NAME, Group};

/// The settings of a [`Group`], from [`Group::builder`]. Recording a
/// setting never fails; [`build`](Self::build) checks them.
///
/// | setting | default |
/// |---|---|
/// | [`limit`](Self::limit) | none: every `spawn` starts its task at once |
/// | [`error_policy`](Self::error_policy) | [`ErrorPolicy::FailFast`]: the first failure cancels the group |
/// | [`resume_panics`](Self::resume_panics) | `false`: a panic is a [`GroupError::Panicked`](crate::GroupError::Panicked) |
/// | [`context`](Self::context) | a fresh context that only the group cancels |
/// | [`name`](Self::name) | `"group"` |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_group::{Context, ErrorPolicy, Group};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> anyhow::Result<()> {
/// let request = Context::background().with_timeout(Duration::from_secs(2));
/// let mut group: Group<u32> = Group::builder()
///     .limit(8)
///     .error_policy(ErrorPolicy::Continue)
///     .context(&request)
///     .build()?;
/// group.spawn(async { Ok(1) }).await;
/// assert_eq!(group.join().await?.into_values(), [1]);
/// # Ok(())
/// # }
/// ```
pub struct GroupBuilder<T = (), E = anyhow::Error> {
    limit: Option<usize>,
    policy: ErrorPolicy,
    resume_panics: bool,
    parent: Option<Context>,
    name: Arc<str>,
    /// `fn() -> ..` so that the builder is `Send + Sync` whatever `T` and
    /// `E` are: it holds none of them.
    types: PhantomData<fn() -> (T, E)>,
}

impl<T, E> GroupBuilder<T, E> {
    pub(crate) fn new() -> Self {
        Self {
            limit: None,
            policy: ErrorPolicy::FailFast,
            resume_panics: false,
            parent: None,
            name: Arc::from(DEFAULT_NAME),
            types: PhantomData,
        }
    }

    /// At most `n` tasks of the group exist at once (Go's `SetLimit`).
    ///
    /// The slot is taken *before* a task is spawned (a permit of a tokio
    /// [`Semaphore`], moved into the task and released the moment its work
    /// ends), so at most `n` tasks, and their futures, exist at a time:
    /// [`spawn`](Group::spawn) waits for a slot and
    /// [`try_spawn`](Group::try_spawn) hands the future back.
    ///
    /// `0` is refused by [`build`](Self::build) (in Go every `Go` would
    /// block forever). A limit above [`Semaphore::MAX_PERMITS`] is lowered
    /// to it, which means "no limit" in practice.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// What a task's failure (an `Err` or a panic) does to the others.
    ///
    /// - [`ErrorPolicy::FailFast`] (the default): the first failure cancels
    ///   the group's context at once, with that failure as the cause; tasks
    ///   that watch the context stop. [`join`](Group::join) still waits for
    ///   every task.
    /// - [`ErrorPolicy::Continue`]: a failure cancels nothing; every task
    ///   runs to its end and [`join`](Group::join) reports every failure
    ///   (Go's plain `errgroup.Group` plus `errors.Join`).
    pub fn error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Whether a task's panic is re-raised, with its original payload, in
    /// the code that joins the group (default `false`: it becomes
    /// [`GroupError::Panicked`](crate::GroupError::Panicked)).
    ///
    /// With `true`, [`join_next`](Group::join_next) resumes the panic when
    /// it reaches that task, and [`join`](Group::join) first waits for every
    /// task, then resumes the earliest panic (a panic is a bug, and is not
    /// hidden behind an ordinary error that happened first).
    /// [`shutdown`](Group::shutdown) never resumes panics.
    pub fn resume_panics(mut self, yes: bool) -> Self {
        self.resume_panics = yes;
        self
    }

    /// The context the group runs under (Go's `errgroup.WithContext`). A
    /// `Context`, a `&Context`, a `CancellationToken` or a
    /// `&CancellationToken` converts.
    ///
    /// The group runs on a *child* of it: cancelling this context, or
    /// passing its deadline, cancels the group (and
    /// [`Group::context`]'s cause says why); the group's own failures and
    /// [`cancel`](Group::cancel) never cancel this context.
    pub fn context(mut self, ctx: impl Into<Context>) -> Self {
        self.parent = Some(ctx.into());
        self
    }

    /// The group's name (default `"group"`): the `group` label of its
    /// metrics (feature `metrics`, see docs/observability.md) and, in a
    /// build with `--cfg tokio_unstable`, part of its tasks' names in
    /// tokio-console (`group <name> task <index>`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Arc::from(name.into());
        self
    }

    /// Checks the settings and makes the group. Needs no runtime: tasks are
    /// spawned by [`spawn`](Group::spawn).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a [`limit`](Self::limit) of 0
    /// ([`Problem::Zero`](weir_context::Problem::Zero), construct `"group"`,
    /// setting `"limit"`).
    #[track_caller]
    pub fn build(self) -> Result<Group<T, E>, ConfigError> {
        let limit = match self.limit {
            None => None,
            Some(0) => return Err(ConfigError::zero("group", "limit")),
            Some(n) => Some(n.min(Semaphore::MAX_PERMITS)),
        };
        let ctx = match &self.parent {
            Some(parent) => parent.child(),
            None => Context::background(),
        };
        Ok(Group::from_settings(
            ctx,
            limit,
            self.policy,
            self.resume_panics,
            self.name,
        ))
    }
}

impl<T, E> Default for GroupBuilder<T, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, E> Clone for GroupBuilder<T, E> {
    fn clone(&self) -> Self {
        Self {
            limit: self.limit,
            policy: self.policy,
            resume_panics: self.resume_panics,
            parent: self.parent.clone(),
            name: self.name.clone(),
            types: PhantomData,
        }
    }
}

impl<T, E> fmt::Debug for GroupBuilder<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupBuilder")
            .field("limit", &self.limit)
            .field("error_policy", &self.policy)
            .field("resume_panics", &self.resume_panics)
            .field("context", &self.parent)
            .field("name", &self.name)
            .finish()
    }
}
