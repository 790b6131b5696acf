//! What the hand-timed benches (`vs_go`, `stage_workers`) share: run one
//! case five times as a task on the runtime and print the median.

use std::future::Future;
use std::time::Instant;

/// Runs `f`'s future five times, each as a task spawned on `rt` (so the
/// case shares the runtime's threads with what it spawns, as Go's main
/// goroutine shares its Ps), and prints `<side> <name> <ns per item>`, the
/// median. `<PREFIX>_ONLY=a,b` keeps the cases whose `side.name` contains
/// one of the words; `<PREFIX>_ALL=1` also prints every run on stderr.
pub(crate) fn measure<F, Fut>(
    rt: &tokio::runtime::Runtime,
    prefix: &str,
    side: &str,
    name: &str,
    items: u64,
    f: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = u64> + Send + 'static,
{
    if let Ok(only) = std::env::var(format!("{prefix}_ONLY")) {
        let case = format!("{side}.{name}");
        if !only.split(',').any(|w| case.contains(w)) {
            return;
        }
    }
    let mut ns: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            let case = f();
            std::hint::black_box(
                rt.block_on(async move { tokio::spawn(case).await.expect("case panicked") }),
            );
            start.elapsed().as_nanos() as f64 / items as f64
        })
        .collect();
    if std::env::var_os(format!("{prefix}_ALL")).is_some() {
        eprintln!("{side} {name} runs {ns:.1?}");
    }
    ns.sort_by(f64::total_cmp);
    println!("{side} {name} {:.1}", ns[2]);
}
