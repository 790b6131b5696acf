//! The pipeline pattern: stages run one item at a time each, but all stages
//! run at once, and a heavy stage gets several workers.
//!
//! read lines -> parse (2 workers) -> enrich (4 workers, ordered) -> keep
//! valid -> print. Run with `cargo run --example pipeline`.

use std::time::Duration;

use tokio::time::{Instant, sleep};
use weir::{ErrorPolicy, Pipeline};

#[derive(Debug)]
struct Order {
    id: u32,
    amount_cents: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let lines = vec![
        "1,1999", "2,250", "3,oops", "4,12000", "5,75", "6,", "7,4300", "8,990",
    ];
    let start = Instant::now();
    let (mut out, mut handle) = Pipeline::from_iter(lines)
        .error_policy(ErrorPolicy::Continue)
        .map("parse", 2, |line: &str| async move {
            let (id, amount) = line
                .split_once(',')
                .ok_or_else(|| anyhow::anyhow!("no comma in {line:?}"))?;
            let order = Order {
                id: id.parse()?,
                amount_cents: amount
                    .parse()
                    .map_err(|e| anyhow::anyhow!("line {line:?}: amount: {e}"))?,
            };
            anyhow::Ok(order)
        })
        .map_ordered("enrich", 4, |order: Order| async move {
            sleep(Duration::from_millis(30)).await; // a lookup per order
            let tax = order.amount_cents / 5;
            anyhow::Ok((order, tax))
        })
        .filter("big-enough", |(order, _)| order.amount_cents >= 100)
        .into_stream()?;
    let mut errors = handle.errors().expect("error stream");

    let printer = tokio::spawn(async move {
        while let Some(e) = errors.recv().await {
            println!("  error  : {e}");
        }
    });
    while let Some((order, tax)) = out.recv().await {
        println!(
            "  order {:>2}: {:>6.2} + tax {:>5.2}",
            order.id,
            order.amount_cents as f64 / 100.0,
            tax as f64 / 100.0
        );
    }
    let report = handle.join().await?;
    printer.await?;

    println!("\nfinished in {:?}", start.elapsed());
    for s in &report.stages {
        println!(
            "  stage {:<10} workers {}: in {} out {} failed {} filtered {} cancelled {}",
            s.name, s.workers, s.input, s.output, s.failed, s.filtered, s.cancelled
        );
    }
    println!("  every item accounted for: {}", report.is_balanced());
    Ok(())
}
