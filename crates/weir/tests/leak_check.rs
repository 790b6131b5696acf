//! weir::testing::LeakCheck: each construct left running is named, with
//! where it was made; clean runs, late-but-in-grace ends and ignored
//! constructs pass; tasks weir did not spawn are counted; checks of two
//! runtimes running at once stay apart.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use weir::group::Group;
use weir::testing::{Construct, LeakCheck, LeakError};
use weir::{Pipeline, Pool, Shutdown, WorkerBuilder};

/// The leaked tasks' one-line descriptions, for asserts on the listing.
fn lines(err: &LeakError) -> Vec<String> {
    err.leaked.iter().map(ToString::to_string).collect()
}

#[tokio::test(start_paused = true)]
async fn a_leaked_pool_is_named_with_its_workers_and_where_it_was_built() {
    let leaks = LeakCheck::start();
    let builder = Pool::builder().name("thumbnails").workers(2);
    let handler = |n: u64| async move { anyhow::Ok(n) };
    let line = line!() + 1; // the line that builds the pool:
    let pool = builder.build(handler).unwrap();

    let err = leaks.verify().await.unwrap_err();
    assert!(err.leaked.iter().all(|t| t.construct == Construct::Pool));
    assert!(err.leaked.iter().all(|t| t.name == "thumbnails"));
    let mut tasks: Vec<_> = err.leaked.iter().map(|t| (t.task, t.index)).collect();
    tasks.sort_unstable();
    assert_eq!(
        tasks,
        [("watcher", None), ("worker", Some(0)), ("worker", Some(1))]
    );
    let at = err.leaked[0].location.unwrap();
    assert!(at.file().ends_with("leak_check.rs"), "{at}");
    assert_eq!(at.line(), line);
    assert_eq!(err.other_tasks, 0);
    let text = err.to_string();
    assert!(
        text.contains("pool `thumbnails` worker 1, created at "),
        "{text}"
    );
    assert!(
        text.starts_with("tasks still alive after a grace of 1s: 3 weir, 0 other"),
        "{text}"
    );

    pool.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_leaked_pipeline_is_named_by_stage_and_worker() {
    let leaks = LeakCheck::start();
    // The generator keeps its emitter and never ends: the stage waits on it.
    let (out, handle) = Pipeline::generate(|emit: weir::Emitter<u64>| async move {
        let _emit = emit;
        std::future::pending().await
    })
    .name("etl")
    .map("parse", 2, |x: u64| async move { anyhow::Ok(x) })
    .into_stream()
    .unwrap();

    let err = leaks.verify().await.unwrap_err();
    let listed = lines(&err);
    // With the metrics feature on anywhere in the build (feature
    // unification), the pipeline also has its metrics publisher task.
    assert!(
        listed
            .iter()
            .all(|l| l.starts_with("pipeline `etl` stage ")
                || l.starts_with("pipeline `etl` metrics")),
        "{listed:?}"
    );
    for stage in ["stage `source` 0", "stage `parse` 0", "stage `parse` 1"] {
        assert!(
            listed.iter().any(|l| l.contains(stage)),
            "{stage} in {listed:?}"
        );
    }
    assert!(err.leaked.iter().all(|t| t.location.is_some()));

    handle.cancel();
    drop(out);
    let _ = handle.join().await;
}

#[tokio::test(start_paused = true)]
async fn a_leaked_group_task_is_named_with_its_index() {
    let leaks = LeakCheck::start();
    let mut group: Group<()> = Group::builder().name("crawl").build().unwrap();
    group.spawn(async { anyhow::Ok(()) }).await;
    group.spawn(std::future::pending()).await;

    let err = leaks.verify().await.unwrap_err();
    assert_eq!(lines(&err).len(), 1, "{err}");
    let task = &err.leaked[0];
    assert_eq!(
        (task.construct, task.name.as_str()),
        (Construct::Group, "crawl")
    );
    assert_eq!((task.task, task.index), ("task", Some(1)));

    // The pending task ignores cancellation; dropping the group aborts it.
    drop(group);
    tokio::task::yield_now().await;
    LeakCheck::start().verify_none().await;
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn a_leaked_worker_and_shutdown_task_are_named() {
    let leaks = LeakCheck::start();
    let worker = WorkerBuilder::new("flusher").spawn(|ctx| async move {
        ctx.cancelled().await;
        anyhow::Ok(())
    });
    let shutdown = Shutdown::new();
    shutdown
        .spawn("listener", |ctx| async move { ctx.cancelled().await })
        .unwrap();

    let err = leaks.verify().await.unwrap_err();
    let listed = lines(&err);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed[0].starts_with("worker `flusher` task, created at "),
        "{listed:?}"
    );
    assert!(
        listed[1].starts_with("shutdown `listener` task, created at "),
        "{listed:?}"
    );

    worker.stop().await.unwrap();
    shutdown.shutdown(Duration::from_secs(1)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn fan_branches_left_running_are_named_by_function() {
    let leaks = LeakCheck::start();
    let pending = || futures::stream::pending::<u8>();
    let out = weir::merge(vec![pending(), pending()]).unwrap();

    let err = leaks.verify().await.unwrap_err();
    let listed = lines(&err);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed[0].starts_with("fan `merge` branch 0, created at "),
        "{listed:?}"
    );

    let handle = out.handle();
    handle.cancel();
    drop(out);
}

#[tokio::test(start_paused = true)]
async fn a_clean_run_of_every_construct_passes() {
    let leaks = LeakCheck::start();
    let pool = Pool::builder()
        .workers(3)
        .build(|n: u64| async move { anyhow::Ok(n) })
        .unwrap();
    for n in 0..10 {
        drop(pool.submit(n).await.unwrap());
    }
    pool.join().await.unwrap();

    let squares = Pipeline::from_iter(1..=5u64)
        .map("square", 2, |x| async move { anyhow::Ok(x * x) })
        .collect()
        .await
        .unwrap();
    assert_eq!(squares.len(), 5);

    let mut group: Group<u64> = Group::new();
    group.spawn(async { anyhow::Ok(1) }).await;
    group.join().await.unwrap();

    let worker = WorkerBuilder::new("flusher").spawn(|ctx| async move {
        ctx.cancelled().await;
        anyhow::Ok(())
    });
    worker.stop().await.unwrap();

    leaks.verify_none().await;
}

#[tokio::test(start_paused = true)]
async fn a_task_that_ends_within_the_grace_passes_and_one_after_it_fails() {
    let leaks = LeakCheck::start().grace(Duration::from_secs(2));
    let _worker = WorkerBuilder::new("slow").spawn(|_ctx| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        anyhow::Ok(())
    });
    leaks.verify().await.unwrap();

    let leaks = LeakCheck::start().grace(Duration::from_millis(500));
    let worker = WorkerBuilder::new("slower").spawn(|_ctx| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        anyhow::Ok(())
    });
    let started = tokio::time::Instant::now();
    let err = leaks.verify().await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(500));
    assert_eq!(err.leaked[0].name, "slower");
    worker.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn ignored_constructs_and_names_do_not_fail_the_check() {
    let leaks = LeakCheck::start()
        .ignore_name("flusher")
        .ignore_construct(Construct::Pool);
    let worker = WorkerBuilder::new("flusher").spawn(|ctx| async move {
        ctx.cancelled().await;
        anyhow::Ok(())
    });
    let pool = Pool::builder()
        .build(|n: u64| async move { anyhow::Ok(n) })
        .unwrap();
    leaks.verify().await.unwrap();

    // An ignore list names exactly what it ignores.
    let leaks = LeakCheck::start().ignore_name("other");
    let other = WorkerBuilder::new("flusher2").spawn(|ctx| async move {
        ctx.cancelled().await;
        anyhow::Ok(())
    });
    let err = leaks.verify().await.unwrap_err();
    assert_eq!(lines(&err).len(), 1);

    other.stop().await.unwrap();
    worker.stop().await.unwrap();
    pool.join().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn tasks_weir_did_not_spawn_are_counted_by_the_runtime() {
    let leaks = LeakCheck::start();
    let mine = tokio::spawn(std::future::pending::<()>());
    let err = leaks.verify().await.unwrap_err();
    assert!(err.leaked.is_empty());
    assert_eq!(err.other_tasks, 1);
    assert_eq!(err.runtime_tasks, Some(1));
    assert!(
        err.to_string().contains("1 task(s) weir did not spawn"),
        "{err}"
    );

    let leaks = LeakCheck::start().ignore_other_tasks();
    let also_mine = tokio::spawn(std::future::pending::<()>());
    leaks.verify_none().await;
    mine.abort();
    also_mine.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_multi_thread_runtime_tasks_on_worker_threads_are_seen() {
    let leaks = LeakCheck::start().grace(Duration::from_millis(50));
    // A worker spawned by a job: the job runs in a pool task on a worker
    // thread, and what it spawns belongs to the same check.
    let pool = Pool::builder()
        .name("mt")
        .workers(4)
        .build(|_: u64| async move {
            let inner = WorkerBuilder::new("inner").spawn(|ctx| async move {
                ctx.cancelled().await;
                anyhow::Ok(())
            });
            anyhow::Ok(inner)
        })
        .unwrap();
    let inner = pool.submit(1).await.unwrap().await.unwrap();
    // The one case the check cannot attribute: a construct made inside a
    // task of the test's own, on a worker thread. The runtime counts it.
    let grow = pool.clone();
    tokio::spawn(async move { grow.resize(5).unwrap() })
        .await
        .unwrap();

    let err = leaks.verify().await.unwrap_err();
    let mut names: Vec<_> = err
        .leaked
        .iter()
        .map(|t| (t.name.as_str(), t.task))
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            ("inner", "task"),
            ("mt", "watcher"),
            ("mt", "worker"),
            ("mt", "worker"),
            ("mt", "worker"),
            ("mt", "worker")
        ],
        "{err}"
    );
    assert_eq!(err.other_tasks, 1, "{err}"); // the fifth worker
    inner.stop().await.unwrap();
    pool.join().await.unwrap();

    let leaks = LeakCheck::start();
    let pool = Pool::builder()
        .workers(4)
        .build(|n: u64| async move { anyhow::Ok(n) })
        .unwrap();
    pool.join().await.unwrap();
    leaks.verify_none().await;
}

#[tokio::test(start_paused = true)]
async fn checks_on_two_runtimes_at_once_stay_apart() {
    let leaks = LeakCheck::start();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let other_test = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let theirs = LeakCheck::start().grace(Duration::ZERO);
            let pool = Pool::builder()
                .name("theirs")
                .workers(1)
                .build(|n: u64| async move { anyhow::Ok(n) })
                .unwrap();
            let err = theirs.verify().await.unwrap_err();
            ready_tx.send(()).unwrap();
            let _ = done_rx.await;
            pool.join().await.unwrap();
            err.leaked.len()
        })
    });
    ready_rx.await.unwrap();
    // Their pool is alive now; this check sees none of it.
    let verdict = leaks.verify().await;
    done_tx.send(()).unwrap();
    assert_eq!(other_test.join().unwrap(), 2);
    verdict.unwrap();
}

#[test]
fn a_dropped_check_ends_and_restores_the_one_before() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let outer = LeakCheck::start();
        drop(LeakCheck::start());
        let worker = WorkerBuilder::new("after").spawn(|ctx| async move {
            ctx.cancelled().await;
            anyhow::Ok(())
        });
        let err = outer.verify().await.unwrap_err();
        assert_eq!(err.leaked[0].name, "after");
        worker.stop().await.unwrap();
    });
}
