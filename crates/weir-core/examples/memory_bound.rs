//! Memory bound of a pipeline: 10M items through a pipeline of capacity 64
//! must not need more memory than 1M items (within 20%).
//!
//! Each size runs in its own child process (this same binary, with
//! `--child <items>`), so each peak (`VmHWM` from `/proc/self/status`,
//! Linux) is that run's alone. Prints both peaks and exits non-zero if the
//! 10M run's peak exceeds the 1M run's by more than 20%, or if a run's
//! counts do not add up.
//!
//! ```text
//! cargo run --release -p weir-core --example memory_bound
//! ```
//!
//! `.ci/reliability` runs it.

use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};
use weir_core::Pipeline;

const SMALL: u64 = 1_000_000;
const LARGE: u64 = 10_000_000;
const CAPACITY: usize = 64;
/// How much larger the 10M run's peak may be, in percent.
const TOLERANCE_PCT: u64 = 20;

fn main() -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, items] = args.as_slice()
        && flag == "--child"
    {
        let items: u64 = items.parse().context("item count")?;
        child(items)?;
        return Ok(ExitCode::SUCCESS);
    }

    let exe = std::env::current_exe().context("own path")?;
    println!(
        "memory bound: a pipeline (source -> map x2 -> map_ordered x2 -> filter -> sink), capacity {CAPACITY}"
    );
    let mut peaks = Vec::new();
    for items in [SMALL, LARGE] {
        let out = Command::new(&exe)
            .args(["--child", &items.to_string()])
            .output()
            .context("run child")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "child for {items} items failed ({}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        print!("{stdout}");
        let peak: u64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("peak_kb="))
            .context("child printed no peak")?
            .trim()
            .parse()?;
        peaks.push(peak);
    }
    let (small, large) = (peaks[0], peaks[1]);
    let limit = small + small * TOLERANCE_PCT / 100;
    let growth = (large as f64 / small as f64 - 1.0) * 100.0;
    println!(
        "peak RSS (VmHWM): {SMALL} items: {small} kB; {LARGE} items: {large} kB ({growth:+.1}%); \
         limit {limit} kB (+{TOLERANCE_PCT}%)"
    );
    if large > limit {
        println!("FAIL: the 10M-item run needed more than 1M-item run + {TOLERANCE_PCT}%");
        return Ok(ExitCode::FAILURE);
    }
    println!("ok: memory stays flat with the number of items");
    Ok(ExitCode::SUCCESS)
}

/// One run: pushes `items` through the pipeline, checks the report, prints
/// the counts and `peak_kb=<VmHWM>`.
fn child(items: u64) -> anyhow::Result<()> {
    // Timers on, as in any service runtime: with weir's `metrics` feature
    // (on in this crate's own examples) a pipeline publishes once a second.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()?;
    let start = std::time::Instant::now();
    let (sum, report) = rt.block_on(async {
        let mut sum = 0u64;
        let report = Pipeline::from_iter(0..items)
            .capacity(CAPACITY)
            .map("double", 2, |x| async move { anyhow::Ok(x * 2) })
            .map_ordered("ordered", 2, |x| async move { anyhow::Ok(x + 1) })
            .filter("odd", |x| x % 4 == 1)
            .for_each(|x| {
                sum = sum.wrapping_add(x);
                std::future::ready(())
            })
            .await?;
        anyhow::Ok((sum, report))
    })?;
    let elapsed = start.elapsed();
    // 2x+1 for x in 0..items, kept when 2x+1 = 1 (mod 4), i.e. x even.
    let kept = items.div_ceil(2);
    let expected: u64 = (0..items).step_by(2).map(|x| 2 * x + 1).sum();
    if !report.is_balanced() || report.delivered != kept || sum != expected {
        bail!(
            "counts do not add up for {items} items: sum {sum}, expected {expected}\n{report:#?}"
        );
    }
    let peak = vm_hwm_kb()?;
    println!(
        "  {items:>10} items: {} delivered, {} filtered, balanced, {:.2} s ({:.0} ns/item), peak {peak} kB",
        report.delivered,
        report.filtered(),
        elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 / items as f64
    );
    println!("peak_kb={peak}");
    Ok(())
}

/// The process's peak resident set size, in kB.
fn vm_hwm_kb() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")
        .context("read /proc/self/status (Linux only)")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM in /proc/self/status")?;
    let kb = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb)
}
