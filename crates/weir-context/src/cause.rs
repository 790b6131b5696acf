//! [`Cause`]: why a context was cancelled, and [`Stopped`]: the error of
//! work that a cancellation ended.

use std::any::Any;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// Why a context was cancelled.
///
/// A cause given as a value ([`Context::cancel_with`](crate::Context::cancel_with),
/// or the first failure of a task group) is kept as that value, shared:
/// [`downcast_ref`](Cause::downcast_ref) gets it back, the equivalent of
/// Go's `errors.Is(context.Cause(ctx), errDoom)`.
#[derive(Clone)]
#[non_exhaustive]
pub enum Cause {
    /// Cancelled with [`Context::cancel`](crate::Context::cancel), or its
    /// token was cancelled directly.
    Cancelled,
    /// Its deadline (or an inherited one) passed.
    DeadlineExceeded,
    /// Cancelled with a value of yours: an error, a message, a task's
    /// failure.
    Error(CauseValue),
}

impl Cause {
    /// Whether the context was cancelled plainly (no deadline, no value).
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled)
    }

    /// Whether the deadline passed.
    pub fn is_deadline_exceeded(&self) -> bool {
        matches!(self, Self::DeadlineExceeded)
    }

    /// The value given as the cause, if there was one.
    pub fn value(&self) -> Option<&CauseValue> {
        match self {
            Self::Error(v) => Some(v),
            _ => None,
        }
    }

    /// The value given as the cause, if it is a `T`.
    ///
    /// ```
    /// use weir_context::Context;
    ///
    /// #[derive(Debug, PartialEq)]
    /// struct Doom;
    /// impl std::fmt::Display for Doom {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         f.write_str("doom")
    ///     }
    /// }
    ///
    /// let ctx = Context::background();
    /// ctx.cancel_with(Doom);
    /// assert_eq!(ctx.cause().unwrap().downcast_ref::<Doom>(), Some(&Doom));
    /// ```
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.value()?.downcast_ref()
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cancelled => f.write_str("Cancelled"),
            Self::DeadlineExceeded => f.write_str("DeadlineExceeded"),
            Self::Error(v) => f.debug_tuple("Error").field(v).finish(),
        }
    }
}

/// Two causes are equal when they are the same kind; two `Error` causes when
/// they are the same value or read the same.
impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Cancelled, Self::Cancelled)
            | (Self::DeadlineExceeded, Self::DeadlineExceeded) => true,
            (Self::Error(a), Self::Error(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Cause {}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cancelled => f.write_str("context cancelled"),
            Self::DeadlineExceeded => f.write_str("context deadline exceeded"),
            Self::Error(v) => fmt::Display::fmt(v, f),
        }
    }
}

impl StdError for Cause {}

/// Anything that can be a cause: shown with `Display` (and `Debug`), kept
/// as itself for [`CauseValue::downcast_ref`].
trait Value: Any + Send + Sync {
    fn display(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    fn as_any(&self) -> &dyn Any;
}

impl<T: fmt::Display + fmt::Debug + Send + Sync + 'static> Value for T {
    fn display(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:#}` prints an anyhow::Error with its causes; others ignore it.
        write!(f, "{self:#}")
    }

    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The value a context was cancelled with ([`Cause::Error`]), shared by
/// every clone of the cause.
#[derive(Clone)]
pub struct CauseValue(Arc<dyn Value>);

impl CauseValue {
    /// Wraps a value.
    pub fn new<T: fmt::Display + fmt::Debug + Send + Sync + 'static>(value: T) -> Self {
        Self(Arc::new(value))
    }

    /// Wraps a value that is also kept elsewhere (a task group keeps its
    /// first failure for `join` and shares it as its context's cause).
    pub fn shared<T: fmt::Display + fmt::Debug + Send + Sync + 'static>(value: Arc<T>) -> Self {
        Self(value)
    }

    /// The value, if it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref()
    }

    /// Whether the value is a `T`.
    pub fn is<T: Any>(&self) -> bool {
        self.0.as_any().is::<T>()
    }
}

impl fmt::Display for CauseValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.display(f)
    }
}

impl fmt::Debug for CauseValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.debug(f)
    }
}

/// The same value, or two values that read the same.
impl PartialEq for CauseValue {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.to_string() == other.to_string()
    }
}

impl Eq for CauseValue {}

/// The work did not finish: the context was cancelled first. Carries the
/// [`Cause`]. Returned by [`Context::run`](crate::Context::run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped(pub(crate) Cause);

impl Stopped {
    /// The error for `cause`.
    pub fn new(cause: Cause) -> Self {
        Self(cause)
    }

    /// Why the context was cancelled.
    pub fn cause(&self) -> &Cause {
        &self.0
    }

    /// Takes the cause out.
    pub fn into_cause(self) -> Cause {
        self.0
    }
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stopped: {}", self.0)
    }
}

impl StdError for Stopped {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug)]
    struct Doom(u32);
    impl fmt::Display for Doom {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "doom {}", self.0)
        }
    }

    #[test]
    fn a_value_is_kept_as_itself() {
        let cause = Cause::Error(CauseValue::new(Doom(7)));
        assert_eq!(cause.downcast_ref::<Doom>().unwrap().0, 7);
        assert!(cause.downcast_ref::<String>().is_none());
        assert_eq!(cause.to_string(), "doom 7");
        assert_eq!(format!("{cause:?}"), "Error(Doom(7))");
    }

    #[test]
    fn an_anyhow_error_prints_its_chain() {
        let err = anyhow::anyhow!("inner").context("outer");
        let cause = Cause::Error(CauseValue::new(err));
        assert_eq!(cause.to_string(), "outer: inner");
        assert!(cause.downcast_ref::<anyhow::Error>().is_some());
    }

    #[test]
    fn a_shared_value_is_the_same_value() {
        let value = Arc::new(Doom(1));
        let cause = Cause::Error(CauseValue::shared(Arc::clone(&value)));
        assert!(std::ptr::eq(cause.downcast_ref::<Doom>().unwrap(), &*value));
        assert_eq!(cause, Cause::Error(CauseValue::new(Doom(1))));
        assert_ne!(cause, Cause::Cancelled);
    }
}
