//! [`Panic`]: a panic caught in user code, kept as an error value with its
//! message and its payload.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::FutureExt;

/// A panic that weir caught in a task, a stage, a job or a callback.
///
/// It keeps the panic's message (for logs and `Display`) and its payload,
/// the value given to `panic!` or `std::panic::panic_any`, so a caller can
/// downcast it ([`downcast_payload`](Self::downcast_payload),
/// [`take_payload`](Self::take_payload)) or re-raise it
/// ([`resume`](Self::resume)). Clones share one payload; it can be taken
/// once.
///
/// # Examples
///
/// ```
/// use weir_context::Panic;
///
/// #[derive(Debug, Clone, PartialEq)]
/// struct Code(u32);
///
/// let caught = std::panic::catch_unwind(|| std::panic::panic_any(Code(7))).unwrap_err();
/// let panic = Panic::from_payload(caught);
/// assert_eq!(panic.message(), "<non-string panic payload>");
/// assert_eq!(panic.downcast_payload::<Code>(), Some(Code(7)));
/// ```
#[derive(Clone)]
pub struct Panic {
    message: Arc<str>,
    payload: Arc<Mutex<Option<Box<dyn Any + Send>>>>,
}

impl Panic {
    /// The error for a caught panic's payload (what `catch_unwind` returns).
    pub fn from_payload(payload: Box<dyn Any + Send>) -> Self {
        Self {
            message: Arc::from(panic_message(&*payload)),
            payload: Arc::new(Mutex::new(Some(payload))),
        }
    }

    /// The panic's message: the `&str` or `String` it carried, or
    /// `"<non-string panic payload>"`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the payload is a `T` (false once it was taken).
    pub fn payload_is<T: Any>(&self) -> bool {
        self.with_payload(|p| p.is::<T>())
    }

    /// A clone of the payload, if it is a `T` and was not taken.
    pub fn downcast_payload<T: Any + Clone>(&self) -> Option<T> {
        self.with_payload(|p| p.downcast_ref::<T>().cloned())
    }

    /// Takes the payload out (the first caller gets it; clones share it).
    pub fn take_payload(&self) -> Option<Box<dyn Any + Send>> {
        self.payload
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Re-raises the panic in the calling thread, with its payload (or its
    /// message, if the payload was taken).
    pub fn resume(self) -> ! {
        match self.take_payload() {
            Some(payload) => std::panic::resume_unwind(payload),
            None => std::panic::resume_unwind(Box::new(self.message.to_string())),
        }
    }

    fn with_payload<R: Default>(&self, f: impl FnOnce(&(dyn Any + Send)) -> R) -> R {
        let guard = self.payload.lock().unwrap_or_else(PoisonError::into_inner);
        guard.as_deref().map(f).unwrap_or_default()
    }
}

impl fmt::Display for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Panic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Panic").field(&self.message).finish()
    }
}

/// Two panics are equal when their messages are.
impl PartialEq for Panic {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl Eq for Panic {}

impl std::error::Error for Panic {}

/// The message a panic payload carried.
///
/// `panic!("literal")` carries a `&'static str`, `panic!("{x}")` a `String`;
/// anything else (from `std::panic::panic_any`) reads
/// `"<non-string panic payload>"`.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}

/// Polls `fut`, turning a panic in it into a [`Panic`].
pub async fn catch<F: Future>(fut: F) -> Result<F::Output, Panic> {
    AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(Panic::from_payload)
}

/// Calls `f`, turning a panic in it into a [`Panic`].
pub fn catch_call<R>(f: impl FnOnce() -> R) -> Result<R, Panic> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(Panic::from_payload)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn messages() {
        let p = catch_call(|| panic!("boom {}", 7)).unwrap_err();
        assert_eq!(p.message(), "boom 7");
        let p = catch_call(|| panic!("literal")).unwrap_err();
        assert_eq!(p.to_string(), "literal");
        assert!(p.payload_is::<&str>());
    }

    #[test]
    fn the_payload_is_taken_once_and_clones_share_it() {
        let p = catch_call(|| std::panic::panic_any(42u64)).unwrap_err();
        let q = p.clone();
        assert_eq!(q.downcast_payload::<u64>(), Some(42));
        let payload = p.take_payload().unwrap();
        assert_eq!(payload.downcast_ref::<u64>(), Some(&42));
        assert!(q.take_payload().is_none());
        assert!(!q.payload_is::<u64>());
    }

    #[test]
    fn resume_re_raises_the_payload() {
        let p = catch_call(|| std::panic::panic_any(5i32)).unwrap_err();
        let again = std::panic::catch_unwind(AssertUnwindSafe(|| p.resume())).unwrap_err();
        assert_eq!(again.downcast_ref::<i32>(), Some(&5));
    }

    #[tokio::test]
    async fn catch_turns_a_panicking_future_into_an_error() {
        let out: Result<(), Panic> = catch(async { panic!("in a future") }).await;
        assert_eq!(out.unwrap_err().message(), "in a future");
        assert_eq!(catch(async { 3 }).await.unwrap(), 3);
    }
}
