//! The two algorithms: [`Aimd`] and [`Gradient`], as settings (public) and
//! as the state that turns one window's summary into a new limit (private).

use std::time::Duration;

use weir_context::ConfigError;

use super::window::Summary;

/// Additive increase, multiplicative decrease: TCP's congestion control, as
/// in Netflix's `AIMDLimit`.
///
/// At the end of each window (see
/// [`AdaptiveLimitBuilder::window`](super::AdaptiveLimitBuilder::window)):
///
/// - **decrease**: when the window saw a drop ([`LimitOutcome::Dropped`](super::LimitOutcome::Dropped))
///   or its mean latency was above [`latency_threshold`](Self::latency_threshold),
///   the limit is multiplied by [`backoff`](Self::backoff) (0.75);
/// - **increase**: otherwise, when the window was fully used (as many jobs
///   in flight as the limit allowed, at some moment), the limit grows by
///   [`increase`](Self::increase);
/// - otherwise it stays: an idle limit does not creep upwards.
///
/// AIMD needs an overload signal: drops, or a latency you call too slow.
/// Without a threshold it only reacts to drops. When you cannot name a
/// latency threshold, use [`Gradient`], which finds the unloaded latency
/// itself.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_core::{AdaptiveLimit, Aimd};
///
/// # fn main() -> Result<(), weir_core::ConfigError> {
/// let limit = AdaptiveLimit::builder()
///     .aimd(Aimd::new().latency_threshold(Duration::from_millis(250)).backoff(0.8))
///     .min(2)
///     .max(64)
///     .build()?;
/// assert_eq!(limit.limit(), 10);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Aimd {
    increase: usize,
    backoff: f64,
    latency_threshold: Option<Duration>,
}

impl Default for Aimd {
    fn default() -> Self {
        Self::new()
    }
}

impl Aimd {
    /// Increase by 1, back off by 0.75, no latency threshold (drops only).
    pub fn new() -> Self {
        Self {
            increase: 1,
            backoff: 0.75,
            latency_threshold: None,
        }
    }

    /// How much the limit grows after a fully used window without a drop
    /// (default 1). Checked at `build()`: at least 1, at most
    /// [`MAX_WORKERS`](crate::MAX_WORKERS).
    pub fn increase(mut self, n: usize) -> Self {
        self.increase = n;
        self
    }

    /// What the limit is multiplied by after a window with a drop or a slow
    /// mean latency (default 0.75). Netflix's `AIMDLimit` backs off by 0.9
    /// at every dropped *request*, several times per round trip under
    /// overload; weir decides once a window (about one round trip), so its
    /// step is larger. TCP uses 0.5, which saws far below the capacity.
    /// Checked at `build()`: strictly between 0 and 1.
    pub fn backoff(mut self, ratio: f64) -> Self {
        self.backoff = ratio;
        self
    }

    /// A window whose mean latency is above `threshold` counts as overload,
    /// like a drop (Netflix's `timeout`). Without one, only drops do.
    /// Checked at `build()`: not zero. `Duration::MAX` means no threshold.
    pub fn latency_threshold(mut self, threshold: Duration) -> Self {
        self.latency_threshold = Some(threshold);
        self
    }

    fn check(&self, construct: &str) -> Result<(), ConfigError> {
        weir_context::__private::check_workers(
            construct.to_owned(),
            "aimd increase",
            self.increase,
        )?;
        check_ratio(construct, "aimd backoff", self.backoff)?;
        if self.latency_threshold == Some(Duration::ZERO) {
            return Err(ConfigError::zero(
                construct.to_owned(),
                "aimd latency threshold",
            ));
        }
        Ok(())
    }
}

/// A gradient of latencies, in the style of Netflix's `Gradient2Limit`: the
/// limit follows the ratio of the unloaded latency to the latency now.
///
/// At the end of each window, with `short` the window's mean latency and
/// `baseline` the unloaded latency (below):
///
/// ```text
/// gradient = clamp(tolerance × baseline / short, 0.5, tolerance)
///
/// gradient < 1:  limit × gradient                             a fall takes effect at once
/// gradient ≥ 1:  limit × (1 + smoothing × (gradient − 1))     growth is smoothed
///                limit × gradient                             ... except in the slow start
/// a drop:        limit × 0.9
/// ```
///
/// While the latency stays near the baseline the gradient is above 1 and the
/// limit grows: by 20% a window in the *slow start* (until the first fall,
/// as TCP's), by 4% a window after it (the defaults). Once jobs queue up
/// behind the resource the latency rises; past `tolerance × baseline` the
/// gradient falls below 1 and the limit with it, by half at most in one
/// window. The limit comes to rest where the latency is `tolerance` times
/// the unloaded latency: the tolerance is the queue the limit allows in
/// front of the resource. A window in which fewer than half the allowed
/// jobs were in flight changes nothing (the caller, not the resource, was
/// the bottleneck).
///
/// Netflix's `Gradient2Limit` updates at every sample and smooths both
/// directions; weir's updates once a window (so one noisy job moves
/// nothing), which is why a fall is not smoothed: a resource whose capacity
/// halved is overloaded until the limit follows, and a window lasts about
/// one (overloaded) job latency.
///
/// Gradient2 adds a fixed or `√limit` queue allowance to each step instead;
/// at small limits that term outweighs the gradient and the limit rests far
/// above the capacity (at a limit near 12, a `√limit` allowance rests at
/// about 1.7 times the capacity of a queueing resource), so here the
/// tolerance plays that part.
///
/// # The baseline, and why it is probed
///
/// Netflix's `Gradient2Limit` takes the baseline as a long moving average of
/// the latency. Under steady load that average drifts up towards the loaded
/// latency, and the limit with it: the limit never finds a resting point. Here
/// the baseline is instead the lowest window mean since the last probe, and
/// every [`probe_every`](Self::probe_every) windows one window runs at half
/// the limit to measure it afresh (as BBR's `PROBE_RTT` does), after which
/// the limit goes back to where it was. The first probes come sooner (after
/// 5, 10, 20, 40 and 80 windows): a limit that starts above the capacity
/// takes its first measurement under overload, and an early probe corrects
/// it. A resource that truly became slower
/// shows it in the next probe; one that only got busier does not drag the
/// baseline along.
///
/// # Examples
///
/// ```
/// use weir_core::{AdaptiveLimit, Gradient};
///
/// # fn main() -> Result<(), weir_core::ConfigError> {
/// let limit = AdaptiveLimit::builder()
///     .gradient(Gradient::new().tolerance(1.5).probe_every(200))
///     .initial(4)
///     .build()?;
/// assert_eq!(limit.limit(), 4);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Gradient {
    tolerance: f64,
    smoothing: f64,
    probe_every: u32,
}

impl Default for Gradient {
    fn default() -> Self {
        Self::new()
    }
}

impl Gradient {
    /// The most a tolerance may be: a latency ten times the unloaded one is
    /// no longer "tolerated", it is an outage.
    const MAX_TOLERANCE: f64 = 10.0;

    /// Tolerance 1.2, smoothing 0.2, a probe every 100 windows.
    pub fn new() -> Self {
        Self {
            tolerance: 1.2,
            smoothing: 0.2,
            probe_every: 100,
        }
    }

    /// How much slower than the baseline a window may be before the limit
    /// shrinks, and so where it comes to rest (default 1.2: 20% slower).
    /// Netflix's default is 1.5 for a per-request gradient; window means are
    /// steadier, so weir's default is tighter, which keeps the limit closer
    /// to the resource's capacity. Checked at `build()`: above 1, at most 10
    /// (at exactly 1 the limit could only shrink).
    pub fn tolerance(mut self, ratio: f64) -> Self {
        self.tolerance = ratio;
        self
    }

    /// How much of the gradient's growth one window takes after the slow
    /// start (default 0.2: +4% a window at a tolerance of 1.2). Falls are
    /// not smoothed. Checked at `build()`: above 0, at most 1.
    pub fn smoothing(mut self, ratio: f64) -> Self {
        self.smoothing = ratio;
        self
    }

    /// Probe the unloaded latency every `windows` windows (default 100).
    /// Checked at `build()`: at least 2.
    pub fn probe_every(mut self, windows: u32) -> Self {
        self.probe_every = windows;
        self
    }

    fn check(&self, construct: &str) -> Result<(), ConfigError> {
        let tol = self.tolerance;
        if !(tol > 1.0 && tol <= Self::MAX_TOLERANCE) {
            return Err(ConfigError::invalid(
                construct.to_owned(),
                "gradient tolerance",
                format!(
                    "must be above 1 and at most {} (got {tol})",
                    Self::MAX_TOLERANCE
                ),
            ));
        }
        let s = self.smoothing;
        if !(s > 0.0 && s <= 1.0) {
            return Err(ConfigError::invalid(
                construct.to_owned(),
                "gradient smoothing",
                format!("must be above 0 and at most 1 (got {s})"),
            ));
        }
        if self.probe_every < 2 {
            return Err(ConfigError::invalid(
                construct.to_owned(),
                "gradient probe interval",
                format!("must be at least 2 windows (got {})", self.probe_every),
            ));
        }
        Ok(())
    }
}

/// The algorithm of an [`AdaptiveLimit`](super::AdaptiveLimit); see
/// [`Aimd`] and [`Gradient`]. The default is [`Gradient`], which needs no
/// knowledge of the resource.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LimitAlgorithm {
    /// Additive increase, multiplicative decrease.
    Aimd(Aimd),
    /// The latency gradient with a probed baseline.
    Gradient(Gradient),
}

impl Default for LimitAlgorithm {
    fn default() -> Self {
        Self::Gradient(Gradient::new())
    }
}

impl From<Aimd> for LimitAlgorithm {
    fn from(a: Aimd) -> Self {
        Self::Aimd(a)
    }
}

impl From<Gradient> for LimitAlgorithm {
    fn from(g: Gradient) -> Self {
        Self::Gradient(g)
    }
}

impl LimitAlgorithm {
    pub(super) fn check(&self, construct: &str) -> Result<(), ConfigError> {
        match self {
            Self::Aimd(a) => a.check(construct),
            Self::Gradient(g) => g.check(construct),
        }
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            Self::Aimd(_) => "aimd",
            Self::Gradient(_) => "gradient",
        }
    }
}

fn check_ratio(construct: &str, setting: &'static str, r: f64) -> Result<(), ConfigError> {
    if r > 0.0 && r < 1.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            construct.to_owned(),
            setting,
            format!("must be strictly between 0 and 1 (got {r})"),
        ))
    }
}

/// The gradient's first probe comes after this many windows.
const FIRST_PROBE: u32 = 5;

/// What the gradient multiplies the limit by after a window with a drop.
const DROP_BACKOFF: f64 = 0.9;

/// Why the limit moved: the `reason` field of the tracing event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reason {
    Increase,
    Decrease,
    Drop,
    Probe,
    ProbeEnd,
}

impl Reason {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Increase => "increase",
            Self::Decrease => "decrease",
            Self::Drop => "drop",
            Self::Probe => "probe",
            Self::ProbeEnd => "probe end",
        }
    }
}

/// An algorithm with its running state.
#[derive(Debug)]
pub(super) enum Algo {
    Aimd(Aimd),
    Gradient(GradientState),
}

#[derive(Debug)]
pub(super) struct GradientState {
    settings: Gradient,
    /// The lowest window mean since the last probe, in seconds.
    baseline: Option<f64>,
    windows_since_probe: u32,
    /// Windows from one probe to the next: `FIRST_PROBE`, doubling up to
    /// `probe_every`.
    probe_interval: u32,
    /// While a probe window runs: the estimate to go back to.
    probing: Option<f64>,
    /// Until the first fall, growth takes the whole gradient.
    slow_start: bool,
}

impl Algo {
    pub(super) fn new(algorithm: LimitAlgorithm) -> Self {
        match algorithm {
            LimitAlgorithm::Aimd(a) => Self::Aimd(a),
            LimitAlgorithm::Gradient(g) => Self::Gradient(GradientState {
                probe_interval: FIRST_PROBE.min(g.probe_every),
                settings: g,
                baseline: None,
                windows_since_probe: 0,
                probing: None,
                slow_start: true,
            }),
        }
    }

    /// The new estimate after a window, and why it moved (`None`: it did
    /// not). `limit` is the whole-number limit in force during the window.
    pub(super) fn update(
        &mut self,
        estimate: f64,
        limit: usize,
        w: &Summary,
    ) -> (f64, Option<Reason>) {
        match self {
            Self::Aimd(a) => aimd(a, estimate, limit, w),
            Self::Gradient(g) => g.update(estimate, limit, w),
        }
    }

    /// Whether a window's verdicts so far already call for a fall: a drop,
    /// or a mean latency past the threshold (AIMD) or past `tolerance ×
    /// baseline` (gradient).
    pub(super) fn overloaded(&self, w: &Summary) -> bool {
        if w.drops > 0 {
            return true;
        }
        let Some(mean) = w.mean else {
            return false;
        };
        match self {
            Self::Aimd(a) => a.latency_threshold.is_some_and(|t| mean > t),
            Self::Gradient(g) => g
                .baseline
                .is_some_and(|b| mean.as_secs_f64() > g.settings.tolerance * b),
        }
    }

    /// The baseline latency, for the stats (`None` for AIMD and before the
    /// first window).
    pub(super) fn baseline(&self) -> Option<Duration> {
        match self {
            Self::Aimd(_) => None,
            Self::Gradient(g) => g.baseline.map(Duration::from_secs_f64),
        }
    }
}

fn aimd(a: &Aimd, estimate: f64, limit: usize, w: &Summary) -> (f64, Option<Reason>) {
    if w.drops > 0 {
        return (estimate * a.backoff, Some(Reason::Drop));
    }
    let slow = match (a.latency_threshold, w.mean) {
        (Some(t), Some(mean)) => mean > t,
        _ => false,
    };
    if slow {
        (estimate * a.backoff, Some(Reason::Decrease))
    } else if w.peak_in_flight >= limit {
        (estimate + a.increase as f64, Some(Reason::Increase))
    } else {
        (estimate, None)
    }
}

impl GradientState {
    fn update(&mut self, estimate: f64, limit: usize, w: &Summary) -> (f64, Option<Reason>) {
        let short = w.mean.map(|d| d.as_secs_f64());
        if let Some(restore) = self.probing.take() {
            // The probe window ran at half the limit: its mean is the
            // unloaded latency as of now, higher or lower than before.
            if let Some(short) = short {
                self.baseline = Some(short);
            }
            return (restore, Some(Reason::ProbeEnd));
        }
        if let Some(short) = short {
            self.baseline = Some(self.baseline.map_or(short, |b| b.min(short)));
        }
        if w.drops == 0 && w.peak_in_flight * 2 < limit {
            // Limited by the caller, not by the resource: nothing learnt
            // about the limit (the baseline above did learn).
            return (estimate, None);
        }
        self.windows_since_probe += 1;
        if self.windows_since_probe >= self.probe_interval {
            self.windows_since_probe = 0;
            self.probe_interval = (self.probe_interval * 2).min(self.settings.probe_every);
            self.probing = Some(estimate);
            return (estimate / 2.0, Some(Reason::Probe));
        }
        if w.drops > 0 {
            self.slow_start = false;
            return (estimate * DROP_BACKOFF, Some(Reason::Drop));
        }
        let tolerance = self.settings.tolerance;
        let gradient = match (short, self.baseline) {
            (Some(short), Some(base)) if short > base => {
                (tolerance * base / short).clamp(0.5, tolerance)
            }
            // No queueing to be seen: grow.
            _ => tolerance,
        };
        if gradient < 1.0 {
            self.slow_start = false;
            return (estimate * gradient, Some(Reason::Decrease));
        }
        let next = if self.slow_start {
            estimate * gradient
        } else {
            estimate * (1.0 + self.settings.smoothing * (gradient - 1.0))
        };
        (next, Some(Reason::Increase))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn window(mean_ms: Option<u64>, drops: u64, peak: usize) -> Summary {
        Summary {
            mean: mean_ms.map(Duration::from_millis),
            samples: 20,
            drops,
            peak_in_flight: peak,
        }
    }

    #[test]
    fn aimd_increases_only_when_the_window_was_full() {
        let a = Aimd::new().latency_threshold(Duration::from_millis(100));
        assert_eq!(
            aimd(&a, 10.0, 10, &window(Some(50), 0, 10)),
            (11.0, Some(Reason::Increase))
        );
        assert_eq!(aimd(&a, 10.0, 10, &window(Some(50), 0, 9)), (10.0, None));
        assert_eq!(
            aimd(&a, 10.0, 10, &window(Some(150), 0, 10)),
            (7.5, Some(Reason::Decrease))
        );
        assert_eq!(
            aimd(&a, 10.0, 10, &window(None, 1, 1)),
            (7.5, Some(Reason::Drop))
        );
        // Without a threshold latency says nothing.
        let a = Aimd::new();
        assert_eq!(
            aimd(&a, 10.0, 10, &window(Some(9_000), 0, 10)).1,
            Some(Reason::Increase)
        );
    }

    #[test]
    fn gradient_shrinks_when_latency_rises_and_grows_when_it_does_not() {
        let mut g = Algo::new(Gradient::new().into());
        if let Algo::Gradient(state) = &mut g {
            state.probe_interval = u32::MAX; // no probe in the way
        }
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        // The slow start: the whole gradient.
        let (up, why) = g.update(16.0, 16, &window(Some(100), 0, 16));
        assert_eq!(why, Some(Reason::Increase));
        assert!(close(up, 16.0 * 1.2), "{up}");
        // 1.2 × the baseline: the resting point.
        let (same, _) = g.update(16.0, 16, &window(Some(120), 0, 16));
        assert!(close(same, 16.0), "{same}");
        // Twice the baseline: gradient 1.2 / 2 = 0.6, at once; the slow
        // start is over.
        let (down, why) = g.update(16.0, 16, &window(Some(200), 0, 16));
        assert_eq!(why, Some(Reason::Decrease));
        assert!(close(down, 16.0 * 0.6), "{down}");
        // Smoothed growth now: 1 + 0.2 × 0.2.
        let (up, _) = g.update(16.0, 16, &window(Some(100), 0, 16));
        assert!(close(up, 16.0 * 1.04), "{up}");
        // Ten times: the gradient stops at 0.5.
        let (floor, _) = g.update(16.0, 16, &window(Some(1000), 0, 16));
        assert!(close(floor, 8.0), "{floor}");
        // App-limited: no change.
        assert_eq!(g.update(16.0, 16, &window(Some(500), 0, 7)), (16.0, None));
        // A drop: × 0.9.
        let (dropped, why) = g.update(16.0, 16, &window(None, 3, 2));
        assert_eq!(why, Some(Reason::Drop));
        assert!(close(dropped, 16.0 * 0.9));
    }

    #[test]
    fn overload_is_a_drop_or_a_latency_past_the_line() {
        let a = Algo::new(
            Aimd::new()
                .latency_threshold(Duration::from_millis(100))
                .into(),
        );
        assert!(a.overloaded(&window(Some(101), 0, 1)));
        assert!(!a.overloaded(&window(Some(100), 0, 1)));
        assert!(a.overloaded(&window(None, 1, 1)));
        assert!(!Algo::new(Aimd::new().into()).overloaded(&window(Some(9_000), 0, 1)));
        let mut g = Algo::new(Gradient::new().into());
        // No baseline yet: nothing to compare with.
        assert!(!g.overloaded(&window(Some(500), 0, 10)));
        g.update(10.0, 10, &window(Some(100), 0, 10));
        assert!(!g.overloaded(&window(Some(120), 0, 10)));
        assert!(g.overloaded(&window(Some(121), 0, 10)));
    }

    #[test]
    fn probes_come_early_then_every_probe_every() {
        let mut g = Algo::new(Gradient::new().probe_every(12).into());
        let mut probes = Vec::new();
        for i in 1..=60 {
            let (_, why) = g.update(20.0, 20, &window(Some(100), 0, 20));
            if why == Some(Reason::Probe) {
                probes.push(i);
            }
        }
        // After 5 windows, 10 more (and the probe window), 12, 12, ...
        assert_eq!(probes, [5, 16, 29, 42, 55]);
    }

    #[test]
    fn gradient_probes_and_comes_back() {
        let mut g = Algo::new(Gradient::new().probe_every(3).into());
        g.update(20.0, 20, &window(Some(100), 0, 20));
        g.update(20.0, 20, &window(Some(100), 0, 20));
        assert_eq!(
            g.update(20.0, 20, &window(Some(100), 0, 20)),
            (10.0, Some(Reason::Probe))
        );
        // The probe window measures a new (higher) unloaded latency and the
        // estimate goes back.
        assert_eq!(
            g.update(10.0, 10, &window(Some(300), 0, 10)),
            (20.0, Some(Reason::ProbeEnd))
        );
        assert_eq!(g.baseline(), Some(Duration::from_millis(300)));
    }

    #[test]
    fn settings_are_checked() {
        let bad = |a: LimitAlgorithm| a.check("adaptive limit").unwrap_err().setting().to_owned();
        assert_eq!(bad(Aimd::new().increase(0).into()), "aimd increase");
        assert_eq!(bad(Aimd::new().backoff(1.0).into()), "aimd backoff");
        assert_eq!(bad(Aimd::new().backoff(f64::NAN).into()), "aimd backoff");
        assert_eq!(
            bad(Aimd::new().latency_threshold(Duration::ZERO).into()),
            "aimd latency threshold"
        );
        assert_eq!(
            bad(Gradient::new().tolerance(1.0).into()),
            "gradient tolerance"
        );
        assert_eq!(
            bad(Gradient::new().tolerance(f64::INFINITY).into()),
            "gradient tolerance"
        );
        assert_eq!(
            bad(Gradient::new().smoothing(0.0).into()),
            "gradient smoothing"
        );
        assert_eq!(
            bad(Gradient::new().probe_every(1).into()),
            "gradient probe interval"
        );
        assert!(LimitAlgorithm::default().check("x").is_ok());
        assert!(
            Aimd::new()
                .latency_threshold(Duration::MAX)
                .check("x")
                .is_ok()
        );
    }
}
