//! Where a decision is made: the Lua script on Redis (`gcra.lua`), or, in
//! this crate's unit tests, an in-memory twin of it on tokio's clock.

use redis::RedisResult;
use redis::aio::ConnectionManager;

use crate::script::LuaScript;

/// The script: see its header for the protocol.
pub(crate) const GCRA_LUA: &str = include_str!("gcra.lua");

/// A bucket's quota in the script's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) period_us: u64,
    pub(crate) burst: u32,
}

/// What to ask the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Take `n` tokens (up to `want`) if they conform within `max_wait_us`.
    Take { n: u32, want: u32, max_wait_us: u64 },
    /// Count the tokens.
    Peek,
    /// Give back the `n` tokens of the reservation that left the TAT at
    /// `mark`.
    Refund { n: u32, mark: i64 },
}

/// The script's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) ok: bool,
    pub(crate) granted: u32,
    /// Granted: until the tokens may be used. Refused: until `n` could be
    /// granted; negative for never.
    pub(crate) wait_us: i64,
    pub(crate) available: i64,
    pub(crate) tat_us: i64,
}

impl Reply {
    fn from_values(v: &[i64]) -> Option<Self> {
        let [ok, granted, wait_us, available, tat_us] = *v else {
            return None;
        };
        Some(Self {
            ok: ok == 1,
            granted: u32::try_from(granted).ok()?,
            wait_us,
            available,
            tat_us,
        })
    }
}

/// Where decisions are made.
#[derive(Debug)]
pub(crate) enum Backend {
    Redis {
        conn: ConnectionManager,
        script: LuaScript,
    },
    #[cfg(test)]
    Fake(std::sync::Arc<fake::FakeRedis>),
}

impl Backend {
    pub(crate) fn redis(conn: ConnectionManager) -> Self {
        Self::Redis {
            conn,
            script: LuaScript::new(GCRA_LUA),
        }
    }

    pub(crate) async fn eval(&self, key: &str, p: Params, op: Op) -> RedisResult<Reply> {
        match self {
            Self::Redis { conn, script } => {
                let (period, burst) = (p.period_us, p.burst);
                let cmd = match op {
                    Op::Take {
                        n,
                        want,
                        max_wait_us: 0,
                    } if want == n => script.command(&[key], (period, burst, n)),
                    Op::Take {
                        n,
                        want,
                        max_wait_us,
                    } => script.command(&[key], (period, burst, n, want, max_wait_us)),
                    Op::Peek => script.command(&[key], (period, burst, "peek")),
                    Op::Refund { n, mark } => {
                        script.command(&[key], (period, burst, n, "refund", mark))
                    }
                };
                let values: Vec<i64> = script.run(conn, &cmd).await?;
                Reply::from_values(&values).ok_or_else(|| {
                    redis::RedisError::from((
                        redis::ErrorKind::UnexpectedReturnType,
                        "the rate limiter script returned an unexpected reply",
                    ))
                })
            }
            #[cfg(test)]
            Self::Fake(fake) => fake.eval(key, p, op).await,
        }
    }

    pub(crate) fn script_loads(&self) -> u64 {
        match self {
            Self::Redis { script, .. } => script.loads(),
            #[cfg(test)]
            Self::Fake(_) => 0,
        }
    }
}

/// What a step leaves in the bucket's key.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Store {
    Keep,
    Set(i64),
    Delete,
}

/// `gcra.lua` in Rust, line for line: the in-memory twin the unit tests
/// run on a paused clock. `stored` is the key's value (`None`: absent).
#[cfg(test)]
pub(crate) fn step(stored: Option<i64>, now: i64, p: Params, op: Op) -> (Reply, Store) {
    let period = p.period_us as i64;
    let burst = i64::from(p.burst);
    let tau = period * burst;
    let tat = stored.map_or(now, |s| s.max(now));
    let available = (tau - (tat - now)).div_euclid(period);
    let store = |value: i64| {
        if value > now {
            Store::Set(value)
        } else {
            Store::Delete
        }
    };
    let reply = |ok, granted, wait_us, available, tat_us| Reply {
        ok,
        granted,
        wait_us,
        available,
        tat_us,
    };
    match op {
        Op::Peek => (reply(true, 0, 0, available, tat), Store::Keep),
        Op::Refund { n, mark } => {
            if stored == Some(mark) && mark - tau > now {
                let back = mark - i64::from(n) * period;
                let left = (tau - (back.max(now) - now)).div_euclid(period);
                (reply(true, n, 0, left, back), store(back))
            } else {
                (reply(false, 0, 0, available, tat), Store::Keep)
            }
        }
        Op::Take {
            n,
            want,
            max_wait_us,
        } => {
            if i64::from(n) > burst {
                return (reply(false, 0, -1, available, tat), Store::Keep);
            }
            let mut take = i64::from(n);
            if want > n && available > i64::from(n) {
                take = i64::from(want).min(available);
            }
            let new = tat + take * period;
            let conform = new - tau;
            let max_wait = i64::try_from(max_wait_us).unwrap_or(i64::MAX);
            if conform > now.saturating_add(max_wait) {
                let retry = tat + i64::from(n) * period - tau - now;
                return (reply(false, 0, retry, available, tat), Store::Keep);
            }
            let granted = u32::try_from(take).unwrap_or(u32::MAX);
            (
                reply(true, granted, (conform - now).max(0), available - take, new),
                store(new),
            )
        }
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory Redis for the limiter's unit tests: [`step`] on tokio's
    //! (pausable) clock, with faults to inject.

    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::time::Instant;

    use super::{Op, Params, Reply, Store, step};

    /// How the fake answers.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Fault {
        /// Normally.
        None,
        /// With a connection error, at once.
        Down,
        /// Never (a stalled server): only a timeout ends the call.
        Hang,
        /// Normally, after this long (a round trip).
        Slow(std::time::Duration),
    }

    #[derive(Debug)]
    pub(crate) struct FakeRedis {
        origin: Instant,
        keys: Mutex<HashMap<String, i64>>,
        fault: Mutex<Fault>,
        pub(crate) calls: AtomicU64,
    }

    impl FakeRedis {
        pub(crate) fn new() -> Self {
            Self {
                origin: Instant::now(),
                keys: Mutex::new(HashMap::new()),
                fault: Mutex::new(Fault::None),
                calls: AtomicU64::new(0),
            }
        }

        pub(crate) fn set_fault(&self, fault: Fault) {
            *crate::lock(&self.fault) = fault;
        }

        pub(crate) fn calls(&self) -> u64 {
            self.calls.load(Ordering::Relaxed)
        }

        /// The server's clock: microseconds, starting at a realistic epoch
        /// value so the arithmetic sees numbers of the real size.
        pub(crate) fn now_us(&self) -> i64 {
            1_767_225_600_000_000 + i64::try_from(self.origin.elapsed().as_micros()).unwrap_or(0)
        }

        /// Whether `key` exists (expired keys do not).
        pub(crate) fn exists(&self, key: &str) -> bool {
            let now = self.now_us();
            crate::lock(&self.keys).get(key).is_some_and(|v| *v > now)
        }

        pub(crate) async fn eval(&self, key: &str, p: Params, op: Op) -> redis::RedisResult<Reply> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let fault = *crate::lock(&self.fault);
            match fault {
                Fault::None => {}
                Fault::Down => {
                    return Err(redis::RedisError::from(std::io::Error::from(
                        std::io::ErrorKind::ConnectionRefused,
                    )));
                }
                Fault::Hang => std::future::pending::<()>().await,
                Fault::Slow(d) => tokio::time::sleep(d).await,
            }
            let now = self.now_us();
            let mut keys = crate::lock(&self.keys);
            // An expired key is an absent one.
            let stored = keys.get(key).copied().filter(|v| *v > now);
            let (reply, store) = step(stored, now, p, op);
            match store {
                Store::Keep => {}
                Store::Set(v) => {
                    keys.insert(key.to_owned(), v);
                }
                Store::Delete => {
                    keys.remove(key);
                }
            }
            Ok(reply)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NOW: i64 = 1_767_225_600_000_000;
    const P: Params = Params {
        period_us: 100_000,
        burst: 2,
    };

    fn take(n: u32) -> Op {
        Op::Take {
            n,
            want: n,
            max_wait_us: 0,
        }
    }

    #[test]
    fn burst_then_pace() {
        let (r, s) = step(None, NOW, P, take(1));
        assert!(r.ok);
        assert_eq!(
            (r.granted, r.available, s),
            (1, 1, Store::Set(NOW + 100_000))
        );
        let (r, s) = step(Some(NOW + 100_000), NOW, P, take(1));
        assert_eq!((r.ok, r.available, s), (true, 0, Store::Set(NOW + 200_000)));
        let (r, s) = step(Some(NOW + 200_000), NOW, P, take(1));
        assert_eq!((r.ok, r.wait_us, s), (false, 100_000, Store::Keep));
        // n above the burst: never.
        let (r, _) = step(None, NOW, P, take(3));
        assert_eq!((r.ok, r.wait_us), (false, -1));
    }

    #[test]
    fn a_lease_takes_what_is_there() {
        let lease = Op::Take {
            n: 1,
            want: 8,
            max_wait_us: 0,
        };
        let p = Params {
            period_us: 1_000,
            burst: 5,
        };
        let (r, _) = step(None, NOW, p, lease);
        assert_eq!((r.granted, r.available), (5, 0));
        let (r, _) = step(Some(NOW + 4_000), NOW, p, lease);
        assert_eq!(r.granted, 1, "one token there: no more than it");
    }

    #[test]
    fn a_reservation_waits_and_refunds() {
        let reserve = Op::Take {
            n: 1,
            want: 1,
            max_wait_us: u64::MAX,
        };
        let (r, _) = step(Some(NOW + 200_000), NOW, P, reserve);
        assert_eq!((r.ok, r.wait_us, r.tat_us), (true, 100_000, NOW + 300_000));
        // Nothing reserved after it: the refund restores the old TAT.
        let (r, s) = step(
            Some(NOW + 300_000),
            NOW,
            P,
            Op::Refund {
                n: 1,
                mark: NOW + 300_000,
            },
        );
        assert_eq!((r.ok, s), (true, Store::Set(NOW + 200_000)));
        // Another reservation came after it: no refund.
        let (r, s) = step(
            Some(NOW + 400_000),
            NOW,
            P,
            Op::Refund {
                n: 1,
                mark: NOW + 300_000,
            },
        );
        assert_eq!((r.ok, s), (false, Store::Keep));
    }

    #[test]
    fn a_full_bucket_is_deleted() {
        // Zero tokens taken from a full bucket leaves it full: no key.
        let (r, s) = step(None, NOW, P, take(0));
        assert!(r.ok);
        assert_eq!(s, Store::Delete);
    }
}
