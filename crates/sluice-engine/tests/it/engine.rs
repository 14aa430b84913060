//! The engine against in-memory connectors that misbehave on purpose
//! (`harness.rs`): acknowledgements, checkpoints, retries, failures,
//! cancellation, pipelined sinks, and the timing of each on a paused clock.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::harness::{Fault, Rig, SinkSpec, SourceSpec, Step};

const BATCH_10: &str = "batch_rows = 10\nparallelism = 1";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn the_checkpoint_waits_for_the_slow_sink_and_stops_where_a_failing_one_did() {
    let rig = Rig::new();
    rig.world.audit(rig.state_dir());
    let source = SourceSpec::rows(1, 1, 100);
    // `b` takes 700 ms per flush and fails for good at its fifth.
    let slow = SinkSpec {
        flush_delay: ms(700),
        ..Default::default()
    };
    let registry = rig.world.registry(
        source.clone(),
        &[
            ("a", SinkSpec::transactional()),
            ("b", slow.clone().fault(Step::Flush(5), Fault::Fatal)),
        ],
    );
    let text = rig.text(&["a", "b"], "", BATCH_10);
    let outcome = rig.run(&rig.pipeline(&text, registry), CancellationToken::new()).await;

    let error = outcome.error.expect("the run fails").to_string();
    assert!(error.contains("injected failure of flush 5"), "{error}");
    // `a` got further, but only what `b` acknowledged is checkpointed.
    assert!(rig.world.dest("a").sorted("s0").len() > 40, "a was not ahead of b");
    assert_eq!(rig.world.dest("b").sorted("s0"), (0..40).collect::<Vec<_>>());
    assert_eq!(rig.checkpoints("s0")["s0#0"], 40);
    assert_eq!(rig.state().streams("p").unwrap()[0].status, "failed");

    // Again with `b` well: `b` resumes after row 40, `a` skips what it holds.
    let registry = rig
        .world
        .registry(source.clone(), &[("a", SinkSpec::transactional()), ("b", slow)]);
    let outcome = rig.run(&rig.pipeline(&text, registry), CancellationToken::new()).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.report.streams[0].resumed_from, 40);
    assert_eq!(rig.world.dest("a").sorted("s0"), source.ids());
    assert_eq!(rig.world.dest("b").sorted("s0"), source.ids());
    assert_eq!(rig.checkpoints("s0")["s0#0"], 100);
    assert_eq!(rig.world.audit_all(), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn a_retryable_sink_failure_reopens_the_sink_and_delivers_each_row_once() {
    let rig = Rig::new();
    let source = SourceSpec::rows(1, 2, 30);
    let sink = SinkSpec::transactional()
        // Committed, but the acknowledgement was lost: the reopened sink
        // says it holds the batch, which is not written again.
        .fault(Step::Flush(2), Fault::LostAck { retryable: true })
        .fault(Step::Write(4), Fault::Retryable)
        .fault(Step::Flush(6), Fault::Retryable);
    let registry = rig.world.registry(source.clone(), &[("a", sink)]);
    let text = rig.text(&["a"], "", &format!("{BATCH_10}\nretry_initial_ms = 100"));
    let outcome = rig.run(&rig.pipeline(&text, registry), CancellationToken::new()).await;

    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let dest = rig.world.dest("a");
    assert_eq!(dest.sorted("s0"), source.ids());
    assert_eq!(dest.opens, 4, "opened once, and again after each of three failures");
    let s = &outcome.report.streams[0];
    assert_eq!((s.read, s.written, s.rejected, s.retries), (60, 60, 0, 3));
    assert_eq!(rig.state().streams("p").unwrap()[0].counts.written, 60);
}

#[tokio::test(start_paused = true)]
async fn a_batch_written_again_after_a_failure_counts_its_refused_rows_once() {
    let rig = Rig::new();
    let source = SourceSpec::rows(1, 1, 20);
    let refused: BTreeSet<i64> = [3, 4, 15].into();
    // Each batch is refused in part, then its flush fails once: the engine
    // writes it again to a reopened sink, which refuses the same rows.
    let sink = SinkSpec {
        refuse: refused.clone(),
        ..Default::default()
    }
    .fault(Step::Flush(1), Fault::Retryable)
    .fault(Step::Flush(3), Fault::Retryable);
    let registry = rig.world.registry(source.clone(), &[("a", sink)]);
    let text = rig.text(
        &["a"],
        "",
        &format!(
            "{BATCH_10}
on_error = \"dlq\"\nretry_initial_ms = 100"
        ),
    );
    let outcome = rig.run(&rig.pipeline(&text, registry), CancellationToken::new()).await;

    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let s = &outcome.report.streams[0];
    assert_eq!((s.read, s.written, s.rejected, s.retries), (20, 17, 3, 2));
    assert_eq!(outcome.report.rejected, 3);
    assert_eq!(
        rig.dlq_lines().len(),
        3,
        "each refused row once in the dead-letter file"
    );
    let expected: Vec<i64> = source.ids().into_iter().filter(|id| !refused.contains(id)).collect();
    assert_eq!(rig.world.dest("a").sorted("s0"), expected);
}

#[tokio::test(start_paused = true)]
async fn a_fatal_sink_failure_ends_the_run_and_the_state_says_where_to_resume() {
    let rig = Rig::new();
    let source = SourceSpec::rows(1, 1, 100);
    let sink = SinkSpec::transactional().fault(Step::Flush(4), Fault::Fatal);
    let registry = rig.world.registry(source.clone(), &[("a", sink)]);
    let text = rig.text(&["a"], "", BATCH_10);
    let outcome = rig.run(&rig.pipeline(&text, registry), CancellationToken::new()).await;

    let error = outcome.error.expect("the run fails").to_string();
    assert!(
        error.contains("mem:a") && error.contains("injected failure of flush 4"),
        "{error}"
    );
    assert_eq!(outcome.report.streams[0].written, 30);
    let state = rig.state();
    assert_eq!(state.last_run_status("p").unwrap().as_deref(), Some("failed"));
    let stream = &state.streams("p").unwrap()[0];
    assert_eq!(stream.status, "failed");
    assert!(
        stream
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("injected failure of flush 4")
    );
    assert_eq!(rig.checkpoints("s0")["s0#0"], 30);
    assert_eq!(rig.world.dest("a").ends["s0"], ["failed"]);

    let registry = rig.world.registry(source.clone(), &[("a", SinkSpec::transactional())]);
    let outcome = rig.run(&rig.pipeline(&text, registry), CancellationToken::new()).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.report.resumed_run, Some(1));
    let s = &outcome.report.streams[0];
    assert_eq!((s.resumed_from, s.read, s.written), (30, 70, 70));
    assert_eq!(rig.world.dest("a").sorted("s0"), source.ids());
    assert_eq!(rig.world.dest("a").ends["s0"], ["failed", "complete"]);
}

#[tokio::test(start_paused = true)]
async fn a_commit_whose_acknowledgement_was_lost_is_not_written_again_by_the_next_run() {
    let rig = Rig::new();
    let source = SourceSpec::rows(1, 1, 100);
    let sink = SinkSpec::transactional().fault(Step::Flush(3), Fault::LostAck { retryable: false });
    let registry = rig.world.registry(source.clone(), &[("a", sink)]);
    let text = rig.text(&["a"], "", BATCH_10);
    let outcome = rig.run(&rig.pipeline(&text, registry), CancellationToken::new()).await;
    assert!(outcome.error.is_some());
    // The state store saw two batches acknowledged; the destination holds three.
    assert_eq!(rig.checkpoints("s0")["s0#0"], 20);
    assert_eq!(rig.world.dest("a").sorted("s0").len(), 30);

    let registry = rig.world.registry(source.clone(), &[("a", SinkSpec::transactional())]);
    let outcome = rig.run(&rig.pipeline(&text, registry), CancellationToken::new()).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(
        outcome.report.streams[0].resumed_from, 30,
        "resumed from what the destination holds"
    );
    assert_eq!(rig.world.dest("a").sorted("s0"), source.ids());
}

#[tokio::test(start_paused = true)]
async fn a_process_killed_between_commit_and_acknowledgement_resumes_without_duplicates() {
    let rig = Rig::new();
    let source = SourceSpec::rows(2, 2, 25);
    let sink = SinkSpec::transactional().fault(Step::Flush(7), Fault::CrashAfterCommit);
    let registry = rig.world.registry(source.clone(), &[("a", sink)]);
    let text = rig.text(&["a"], "", "batch_rows = 10\nparallelism = 2");
    let killed = rig
        .run_until_crash(&rig.pipeline(&text, registry), CancellationToken::new())
        .await;
    assert!(killed.is_none(), "the run was not killed");
    assert_eq!(rig.state().last_run_status("p").unwrap().as_deref(), Some("running"));

    let registry = rig.world.registry(source.clone(), &[("a", SinkSpec::transactional())]);
    let outcome = rig.run(&rig.pipeline(&text, registry), CancellationToken::new()).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.report.resumed_run, Some(1));
    for stream in source.stream_names() {
        assert_eq!(rig.world.dest("a").sorted(&stream), source.ids(), "{stream}");
    }
}

#[tokio::test(start_paused = true)]
async fn cancel_drains_what_was_read_and_the_next_run_reads_the_rest() {
    let rig = Rig::new();
    let cancel = CancellationToken::new();
    let source = SourceSpec {
        cancel_after: Some((3, cancel.clone())),
        ..SourceSpec::rows(1, 1, 100)
    };
    // A sink that keeps no positions: the state store's checkpoint alone
    // must say where to resume.
    let registry = rig.world.registry(source.clone(), &[("a", SinkSpec::default())]);
    let text = rig.text(&["a"], "", BATCH_10);
    let outcome = rig.run(&rig.pipeline(&text, registry), cancel).await;

    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert!(outcome.report.interrupted);
    let s = &outcome.report.streams[0];
    assert_eq!((s.read, s.written), (30, 30));
    assert_eq!(rig.world.dest("a").sorted("s0"), (0..30).collect::<Vec<_>>());
    assert_eq!(rig.world.dest("a").ends["s0"], ["interrupted"]);
    assert_eq!(rig.checkpoints("s0")["s0#0"], 30);
    assert_eq!(rig.state().streams("p").unwrap()[0].status, "interrupted");

    let source = SourceSpec::rows(1, 1, 100);
    let registry = rig.world.registry(source.clone(), &[("a", SinkSpec::default())]);
    let outcome = rig.run(&rig.pipeline(&text, registry), CancellationToken::new()).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.report.streams[0].read, 70);
    assert_eq!(rig.world.dest("a").sorted("s0"), source.ids());
}

#[tokio::test(start_paused = true)]
async fn a_pipelined_sink_counts_the_rows_it_refuses_while_flushing() {
    let rig = Rig::new();
    let source = SourceSpec::rows(1, 1, 100);
    let refused: BTreeSet<i64> = [3, 17, 42, 99].into();
    let sink = SinkSpec {
        depth: 4,
        out_of_order: true,
        refuse: refused.clone(),
        ..Default::default()
    };
    let registry = rig.world.registry(source.clone(), &[("a", sink)]);
    let text = rig.text(&["a"], "", &format!("{BATCH_10}\non_error = \"dlq\""));
    let outcome = rig.run(&rig.pipeline(&text, registry), CancellationToken::new()).await;

    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let s = &outcome.report.streams[0];
    assert_eq!((s.read, s.written, s.rejected), (100, 96, 4));
    let dest = rig.world.dest("a");
    let expected: Vec<i64> = source.ids().into_iter().filter(|id| !refused.contains(id)).collect();
    assert_eq!(dest.sorted("s0"), expected);
    assert_eq!(dest.flush_times.len(), 3, "ten batches flushed four at a time");
    let dead: BTreeSet<i64> = rig
        .dlq_lines()
        .iter()
        .map(|l| l["record"]["id"].as_i64().expect("refused row's id"))
        .collect();
    assert_eq!(dead, refused);
    let counts = &rig.state().streams("p").unwrap()[0].counts;
    assert_eq!((counts.written, counts.rejected), (96, 4));
}

#[tokio::test(start_paused = true)]
async fn a_source_read_failure_resumes_after_the_last_batch_handed_over() {
    let rig = Rig::new();
    let source = SourceSpec {
        fail_after: [2, 5].into(),
        ..SourceSpec::rows(1, 2, 40)
    };
    let registry = rig.world.registry(source.clone(), &[("a", SinkSpec::default())]);
    let text = rig.text(&["a"], "", &format!("{BATCH_10}\nretry_initial_ms = 100"));
    let outcome = rig.run(&rig.pipeline(&text, registry), CancellationToken::new()).await;

    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let s = &outcome.report.streams[0];
    assert_eq!((s.read, s.written, s.retries), (80, 80, 2));
    assert_eq!(rig.world.dest("a").sorted("s0"), source.ids(), "no row read twice");
}

// Paused clock: waits below are virtual and exact.

#[tokio::test(start_paused = true)]
async fn retries_wait_as_the_backoff_says_and_the_open_circuit_waits_longer() {
    let rig = Rig::new();
    let source = SourceSpec::rows(1, 1, 10);
    let mut sink = SinkSpec::default();
    for n in 1..=5 {
        sink = sink.fault(Step::Write(n), Fault::Retryable);
    }
    let registry = rig.world.registry(source.clone(), &[("a", sink)]);
    let runtime = format!("{BATCH_10}\nretry_initial_ms = 1000\nretry_max_ms = 8000\nbreaker_threshold = 4");
    let text = rig.text(&["a"], "", &runtime);
    let outcome = rig.run(&rig.pipeline(&text, registry), CancellationToken::new()).await;

    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.report.streams[0].retries, 5);
    assert_eq!(rig.world.dest("a").sorted("s0"), source.ids());
    let times = rig.world.dest("a").write_times;
    assert_eq!(times.len(), 6);
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // Full jitter: up to 1 s, 2 s, 4 s; then the circuit is open after four
    // failures in a row and each probe waits between half and all of the cap.
    for (i, cap) in [1000, 2000, 4000].into_iter().enumerate() {
        assert!(gaps[i] <= ms(cap), "wait {} was {:?}", i + 1, gaps[i]);
    }
    for gap in &gaps[3..] {
        assert!(*gap >= ms(4000) && *gap <= ms(8000), "open circuit waited {gap:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn batches_queued_behind_a_slow_commit_share_it_and_are_retried_together() {
    let rig = Rig::new();
    // Twenty batches against a sink whose commits take 200 ms: batches pile
    // up and up to four go into each transaction. The second commit goes
    // through but its answer is lost; a later write fails once.
    let source = SourceSpec::rows(1, 1, 200);
    let sink = SinkSpec {
        per_flush: 4,
        flush_delay: ms(200),
        ..SinkSpec::transactional()
    }
    .fault(Step::Flush(2), Fault::LostAck { retryable: true })
    .fault(Step::Write(9), Fault::Retryable);
    let registry = rig.world.registry(source.clone(), &[("a", sink)]);
    let text = rig.text(&["a"], "", BATCH_10);
    let pipeline = rig.pipeline(&text, registry);
    let outcome = rig.run(&pipeline, CancellationToken::new()).await;

    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let dest = rig.world.dest("a");
    // Every row once: the lost acknowledgement's batches are not written
    // again, the failed transaction's batches are.
    assert_eq!(dest.rows["s0"].len(), 200);
    assert_eq!(dest.sorted("s0"), source.ids());
    assert_eq!(outcome.report.streams[0].written, 200);
    let flushes = dest.flush_times.len();
    assert!(flushes < 12, "{flushes} commits for 20 batches");
    assert_eq!(rig.checkpoints("s0").get("s0#0"), Some(&200));
}

#[tokio::test(start_paused = true)]
async fn a_pipelined_sink_flushes_what_it_holds_when_input_pauses() {
    let rig = Rig::new();
    // Three batches, five seconds of silence, two more.
    let source = SourceSpec {
        stall_after: Some((3, Duration::from_secs(5))),
        ..SourceSpec::rows(1, 1, 50)
    };
    let sink = SinkSpec {
        depth: 8,
        ..Default::default()
    };
    let registry = rig.world.registry(source.clone(), &[("a", sink)]);
    let text = rig.text(&["a"], "", BATCH_10);
    let pipeline = rig.pipeline(&text, registry);
    let during_silence = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        rig.checkpoints("s0")
    };
    let (outcome, seen) = tokio::join!(rig.run(&pipeline, CancellationToken::new()), during_silence);

    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let dest = rig.world.dest("a");
    assert_eq!(dest.sorted("s0"), source.ids());
    assert_eq!(dest.flush_times.len(), 2);
    // 500 ms after the last batch before the silence (the linger), not at the end.
    assert_eq!(dest.flush_times[0] - dest.write_times[2], ms(500));
    assert_eq!(seen.get("s0#0"), Some(&30), "checkpoint during the silence");
}

#[tokio::test(start_paused = true)]
async fn checkpoints_follow_a_running_stream_about_once_a_second() {
    let rig = Rig::new();
    // Twenty batches, one every 300 ms.
    let source = SourceSpec {
        delay: ms(300),
        ..SourceSpec::rows(1, 1, 200)
    };
    let registry = rig.world.registry(source.clone(), &[("a", SinkSpec::default())]);
    let text = rig.text(&["a"], "", BATCH_10);
    let pipeline = rig.pipeline(&text, registry);
    let start = Instant::now();
    let done = std::sync::atomic::AtomicBool::new(false);
    let watch = async {
        let mut seen = Vec::new();
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::time::sleep(ms(250)).await;
            let rows = rig.checkpoints("s0").get("s0#0").copied().unwrap_or(0);
            seen.push(((Instant::now() - start).as_millis() as u64, rows));
        }
        seen
    };
    let run = async {
        let outcome = rig.run(&pipeline, CancellationToken::new()).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        outcome
    };
    let (outcome, seen) = tokio::join!(run, watch);

    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(rig.world.dest("a").sorted("s0"), source.ids());
    // At any moment the checkpoint covers every batch acknowledged by the
    // last whole second before it (batch j arrives at 300 ms × j).
    for (at, rows) in seen.iter().filter(|(at, _)| *at < 6000) {
        let second = (at - 1) / 1000 * 1000;
        let floor = second.saturating_sub(300) / 300 * 10;
        assert!(
            *rows >= floor,
            "at {at} ms the checkpoint was {rows} rows, expected at least {floor}"
        );
        assert!(
            *rows < 200,
            "at {at} ms the whole stream was checkpointed before it was read"
        );
    }
    assert_eq!(rig.checkpoints("s0")["s0#0"], 200);
}

#[tokio::test(start_paused = true)]
async fn a_reader_that_ignores_cancellation_is_left_behind_after_three_seconds() {
    let rig = Rig::new();
    let cancel = CancellationToken::new();
    // After its second batch the source cancels the run, then blocks for an
    // hour where it cannot see the token.
    let source = SourceSpec {
        cancel_after: Some((2, cancel.clone())),
        stall_after: Some((2, Duration::from_secs(3600))),
        ignore_cancel: true,
        ..SourceSpec::rows(1, 1, 100)
    };
    let registry = rig.world.registry(source, &[("a", SinkSpec::default())]);
    let text = rig.text(&["a"], "", BATCH_10);
    let start = Instant::now();
    let outcome = rig.run(&rig.pipeline(&text, registry), cancel).await;
    let took = Instant::now() - start;

    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert!(outcome.report.interrupted);
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(rig.world.dest("a").sorted("s0"), (0..20).collect::<Vec<_>>());
    assert_eq!(rig.checkpoints("s0")["s0#0"], 20);
}

#[tokio::test(start_paused = true)]
async fn stored_partitions_that_do_not_parse_stop_the_resume_and_name_the_fix() {
    let rig = Rig::new();
    let source = SourceSpec::rows(1, 1, 50);
    let text = rig.text(&["a"], "", BATCH_10);
    let registry = rig.world.registry(source.clone(), &[("a", SinkSpec::transactional())]);
    let mut pipeline = rig.pipeline(&text, registry);
    // An unfinished job whose stored partition list was damaged.
    {
        let state = rig.state();
        let run = state.begin_run("p", &pipeline.plan_hash, None).unwrap();
        state.start_stream("p", "s0", run, "[{\"id\": ", None, 0).unwrap();
        state
            .end_run(run, sluice_state::Status::Failed, Some("killed"))
            .unwrap();
    }

    let outcome = rig.run(&pipeline, CancellationToken::new()).await;
    let error = outcome.error.expect("resuming unreadable partitions fails").to_string();
    assert!(
        error.contains("stream `s0`") && error.contains("pipeline `p`") && error.contains("--fresh"),
        "{error}"
    );
    assert!(rig.world.dest("a").sorted("s0").is_empty(), "nothing was read");
    assert_eq!(rig.state().last_run_status("p").unwrap().as_deref(), Some("failed"));

    // `--fresh` starts the job over and loads every row.
    pipeline.fresh = true;
    let outcome = rig.run(&pipeline, CancellationToken::new()).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(rig.world.dest("a").sorted("s0"), source.ids());
}
