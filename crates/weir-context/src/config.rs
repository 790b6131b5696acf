//! [`ConfigError`]: the one error for settings that cannot work, and the
//! limits every construct checks its sizes against.

use std::borrow::Cow;
use std::fmt;

/// The most workers (tasks that a construct keeps running side by side: a
/// pool's workers, a pipeline stage's workers) or outputs (of `distribute`
/// and `broadcast`) one construct may have. Asking for more is a
/// [`ConfigError`] ([`Problem::TooLarge`]), never a loop that spawns until
/// memory runs out.
pub const MAX_WORKERS: usize = 1 << 16;

/// The largest capacity of a queue or channel (a pipeline's edges, a pool's
/// queue and results, fan-in and fan-out buffers, the drop pattern's
/// queue): 1,048,576 items. A larger capacity is lowered to this one: a
/// bound that large already means "more than a consumer should ever fall
/// behind", and some channels allocate their slots up front.
pub const MAX_CAPACITY: usize = 1 << 20;

/// What is wrong with a setting.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// Zero where at least one is needed (workers, capacity, a limit, a
    /// period, a burst).
    Zero,
    /// Above the largest value this setting takes.
    TooLarge {
        /// The largest value allowed.
        max: u64,
    },
    /// Not a value this setting can take, for the reason given.
    Invalid(Cow<'static, str>),
    /// The construct spawns tasks and was started outside a tokio runtime.
    NoRuntime,
}

/// A setting that cannot work, found when the construct is built or
/// started (its `build()`, its first call, its sink), before any task runs.
///
/// Every weir construct reports bad settings with this one type, at that
/// one moment; nothing panics on a bad size or duration. It names the
/// construct and the setting:
///
/// ```
/// use weir_context::{ConfigError, Problem};
///
/// let err = ConfigError::zero("pool `images`", "workers");
/// assert_eq!(err.to_string(), "pool `images`: workers must be at least 1 (got 0)");
/// assert_eq!(err.problem(), &Problem::Zero);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    construct: Cow<'static, str>,
    setting: Cow<'static, str>,
    problem: Problem,
}

impl ConfigError {
    /// A setting of `construct` is `problem`.
    pub fn new(
        construct: impl Into<Cow<'static, str>>,
        setting: impl Into<Cow<'static, str>>,
        problem: Problem,
    ) -> Self {
        Self {
            construct: construct.into(),
            setting: setting.into(),
            problem,
        }
    }

    /// `setting` of `construct` is zero.
    pub fn zero(
        construct: impl Into<Cow<'static, str>>,
        setting: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(construct, setting, Problem::Zero)
    }

    /// `setting` of `construct` is above `max`.
    pub fn too_large(
        construct: impl Into<Cow<'static, str>>,
        setting: impl Into<Cow<'static, str>>,
        max: u64,
    ) -> Self {
        Self::new(construct, setting, Problem::TooLarge { max })
    }

    /// `setting` of `construct` is invalid, for `reason`.
    pub fn invalid(
        construct: impl Into<Cow<'static, str>>,
        setting: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(construct, setting, Problem::Invalid(reason.into()))
    }

    /// `construct` was started outside a tokio runtime.
    pub fn no_runtime(construct: impl Into<Cow<'static, str>>) -> Self {
        Self::new(construct, "runtime", Problem::NoRuntime)
    }

    /// The construct: `"pipeline"`, `"pool `images`"`, `"rate"`, ...
    pub fn construct(&self) -> &str {
        &self.construct
    }

    /// The setting: `"workers"`, `"capacity"`, `"burst"`, ...
    pub fn setting(&self) -> &str {
        &self.setting
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    /// Whether the setting was zero.
    pub fn is_zero(&self) -> bool {
        self.problem == Problem::Zero
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (construct, setting) = (&self.construct, &self.setting);
        match &self.problem {
            Problem::Zero => write!(f, "{construct}: {setting} must be at least 1 (got 0)"),
            Problem::TooLarge { max } => {
                write!(f, "{construct}: {setting} is above its maximum of {max}")
            }
            Problem::Invalid(reason) => write!(f, "{construct}: {setting} {reason}"),
            Problem::NoRuntime => {
                write!(f, "{construct}: must be started inside a tokio runtime")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Checks a worker (or output) count: at least 1, at most [`MAX_WORKERS`].
pub fn check_workers(
    construct: impl Into<Cow<'static, str>>,
    setting: impl Into<Cow<'static, str>>,
    n: usize,
) -> Result<usize, ConfigError> {
    match n {
        0 => Err(ConfigError::zero(construct, setting)),
        n if n > MAX_WORKERS => Err(ConfigError::too_large(
            construct,
            setting,
            MAX_WORKERS as u64,
        )),
        n => Ok(n),
    }
}

/// Checks a capacity: at least 1; above [`MAX_CAPACITY`] it is lowered.
pub fn check_capacity(
    construct: impl Into<Cow<'static, str>>,
    setting: impl Into<Cow<'static, str>>,
    n: usize,
) -> Result<usize, ConfigError> {
    match n {
        0 => Err(ConfigError::zero(construct, setting)),
        n => Ok(n.min(MAX_CAPACITY)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn messages_name_the_construct_and_the_setting() {
        assert_eq!(
            ConfigError::too_large("pool", "workers", 65536).to_string(),
            "pool: workers is above its maximum of 65536"
        );
        assert_eq!(
            ConfigError::invalid("rate", "count", "must be at least 1 (use Rate::zero())")
                .to_string(),
            "rate: count must be at least 1 (use Rate::zero())"
        );
        assert_eq!(
            ConfigError::no_runtime("pipeline").to_string(),
            "pipeline: must be started inside a tokio runtime"
        );
    }

    #[test]
    fn checks() {
        assert!(check_workers("pool", "workers", 0).unwrap_err().is_zero());
        assert_eq!(
            check_workers("pool", "workers", MAX_WORKERS).unwrap(),
            MAX_WORKERS
        );
        assert_eq!(
            check_workers("pool", "workers", usize::MAX)
                .unwrap_err()
                .problem(),
            &Problem::TooLarge {
                max: MAX_WORKERS as u64
            }
        );
        assert_eq!(
            check_capacity("pipeline", "capacity", usize::MAX).unwrap(),
            MAX_CAPACITY
        );
        assert!(
            check_capacity("pipeline", "capacity", 0)
                .unwrap_err()
                .is_zero()
        );
    }
}
