//! Property tests of the engine's delivery algebra over the in-memory
//! harness, each case on its own paused-clock runtime and world:
//!
//! - the stored checkpoint never passes a batch some sink does not hold
//!   durably (random batch sizes, slow, pipelined, out-of-order and failing
//!   sinks, two at once);
//! - every stream's rows add up: read = written + rejected + filtered, with
//!   source rejections, read retries, a filter, sink refusals and sink
//!   retries;
//! - a run killed at any step (a fatal failure, a lost acknowledgement, a
//!   crash, a cancellation) and resumed leaves every row exactly once in a
//!   transactional sink.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::harness::{Fault, Rig, SinkSpec, SourceSpec, Step, paused_runtime, value};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        // Shrinking re-runs whole pipelines; a failure is clear without many rounds.
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    }
}

fn step() -> impl Strategy<Value = Step> {
    (any::<bool>(), 1..=12u64).prop_map(|(write, n)| if write { Step::Write(n) } else { Step::Flush(n) })
}

/// A sink for the checkpoint property: any shape, slow or not, with at most one fault.
fn any_sink() -> impl Strategy<Value = SinkSpec> {
    let fault = prop_oneof![
        Just(Fault::Retryable),
        Just(Fault::Fatal),
        Just(Fault::LostAck { retryable: true }),
        Just(Fault::LostAck { retryable: false }),
        Just(Fault::PartialFlush),
    ];
    (
        any::<bool>(),
        prop_oneof![Just(1usize), 2..=4usize],
        any::<bool>(),
        prop_oneof![Just(0u64), Just(50), Just(250)],
        proptest::option::weighted(0.8, (step(), fault)),
        prop_oneof![Just(1usize), 2..=4usize],
    )
        .prop_map(
            |(transactional, depth, out_of_order, delay, fault, per_flush)| SinkSpec {
                transactional,
                depth,
                out_of_order,
                per_flush,
                flush_delay: Duration::from_millis(delay),
                faults: fault.into_iter().collect(),
                ..Default::default()
            },
        )
}

/// The same sink without its faults.
fn healed(s: &SinkSpec) -> SinkSpec {
    SinkSpec {
        faults: Vec::new(),
        ..s.clone()
    }
}

fn runtime(batch_rows: usize, parallelism: usize) -> String {
    format!("batch_rows = {batch_rows}\nparallelism = {parallelism}\nretry_initial_ms = 100\nretry_max_ms = 400")
}

proptest! {
    #![proptest_config(config())]

    /// The stored checkpoint never passes a batch some sink has not made
    /// durable, checked before every commit of every sink; a failed run is
    /// resumed with the sinks healed, and the job ends checkpointed at the
    /// end of every partition with every row in every sink (exactly once
    /// in the transactional ones).
    #[test]
    fn the_checkpoint_never_passes_what_a_sink_holds(
        partitions in 1..=2usize,
        rows in 1..=40u64,
        batch_rows in 1..=8usize,
        parallelism in 1..=2usize,
        a in any_sink(),
        b in any_sink(),
    ) {
        paused_runtime().block_on(async {
            let rig = Rig::new();
            rig.world.audit(rig.state_dir());
            let source = SourceSpec::rows(1, partitions, rows);
            let text = rig.text(&["a", "b"], "", &runtime(batch_rows, parallelism));
            let registry = rig.world.registry(source.clone(), &[("a", a.clone()), ("b", b.clone())]);
            let first = rig.run(&rig.pipeline(&text, registry), CancellationToken::new()).await;
            prop_assert_eq!(rig.world.audit_all(), Vec::<String>::new());
            if let Some(e) = &first.error {
                prop_assert!(e.to_string().contains("injected"), "{}", e);
                let registry = rig.world.registry(source.clone(), &[("a", healed(&a)), ("b", healed(&b))]);
                let again = rig.run(&rig.pipeline(&text, registry), CancellationToken::new()).await;
                prop_assert!(again.error.is_none(), "{:?}", again.error);
                prop_assert_eq!(rig.world.audit_all(), Vec::<String>::new());
            }
            // A partition that every sink already held whole when the run
            // resumed is not read again: the destinations' own positions
            // resume it, and the state store keeps the checkpoint it had.
            let all_transactional = a.transactional && b.transactional;
            let stored = rig.checkpoints("s0");
            for p in 0..partitions {
                let at = stored.get(&format!("s0#{p}")).copied().unwrap_or(0);
                prop_assert!(at == rows || (all_transactional && at <= rows), "partition {} checkpointed at {}", p, at);
            }
            for (name, spec) in [("a", &a), ("b", &b)] {
                let held = rig.world.dest(name).sorted("s0");
                if spec.transactional {
                    prop_assert_eq!(&held, &source.ids(), "sink {}", name);
                } else {
                    let distinct: Vec<i64> = held.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
                    prop_assert_eq!(&distinct, &source.ids(), "sink {}", name);
                }
            }
            Ok(())
        })?;
    }
}

/// The sink that refuses rows in the accounting property.
#[derive(Debug, Clone)]
enum Refuser {
    /// Keeps no positions; retryable failures before it commits.
    Plain(Vec<Step>),
    /// Transactional; retryable failures, and commits whose acknowledgement is lost.
    Transactional(Vec<(Step, bool)>),
    /// Pipelined, refusals found while flushing; it retries on its own, so no faults.
    Pipelined { depth: usize, out_of_order: bool },
}

fn refuser() -> impl Strategy<Value = Refuser> {
    prop_oneof![
        proptest::collection::vec(step(), 0..3).prop_map(Refuser::Plain),
        proptest::collection::vec((step(), any::<bool>()), 0..3).prop_map(Refuser::Transactional),
        (2..=4usize, any::<bool>()).prop_map(|(depth, out_of_order)| Refuser::Pipelined { depth, out_of_order }),
    ]
}

impl Refuser {
    fn spec(&self, refuse: BTreeSet<i64>) -> SinkSpec {
        let mut s = SinkSpec {
            refuse,
            ..Default::default()
        };
        match self {
            Refuser::Plain(steps) => s.faults = steps.iter().map(|st| (*st, Fault::Retryable)).collect(),
            Refuser::Transactional(faults) => {
                s.transactional = true;
                s.faults = faults
                    .iter()
                    .map(|(st, lost)| match (st, lost) {
                        (Step::Flush(_), true) => (*st, Fault::LostAck { retryable: true }),
                        _ => (*st, Fault::Retryable),
                    })
                    .collect();
            }
            Refuser::Pipelined { depth, out_of_order } => {
                s.depth = *depth;
                s.out_of_order = *out_of_order;
            }
        }
        s
    }
}

proptest! {
    #![proptest_config(config())]

    /// For every stream, read = written + rejected + filtered, and each
    /// term is what the data says: the source's undecodable rows and the
    /// sink's refusals counted once each (also across retries), the
    /// filter's drops, and exactly the rest in the sinks; the state store
    /// and the dead-letter file agree with the report.
    #[test]
    fn every_row_read_is_written_rejected_or_filtered(
        streams in 1..=2usize,
        partitions in 1..=2usize,
        rows in 1..=40u64,
        batch_rows in 1..=10usize,
        parallelism in 1..=2usize,
        undecodable in proptest::collection::btree_set(0..80i64, 0..8),
        read_failures in proptest::collection::btree_set(1..=10u64, 0..3),
        threshold in 0..=100i64,
        refused in proptest::collection::btree_set(0..80i64, 0..10),
        sink in refuser(),
        second_sink in any::<bool>(),
    ) {
        paused_runtime().block_on(async {
            let rig = Rig::new();
            let source = SourceSpec {
                rejects: undecodable.clone(),
                fail_after: read_failures,
                ..SourceSpec::rows(streams, partitions, rows)
            };
            let mut sinks = vec![("a", sink.spec(refused.clone()))];
            if second_sink {
                sinks.push(("b", SinkSpec::default()));
            }
            let names: Vec<&str> = sinks.iter().map(|(n, _)| *n).collect();
            let filter = format!("[[transforms]]\ntype = \"filter\"\npredicate = \"v >= {threshold}\"\n");
            let text = rig.text(&names, &filter, &format!("{}\non_error = \"dlq\"", runtime(batch_rows, parallelism)));
            let registry = rig.world.registry(source.clone(), &sinks);
            let outcome = rig.run(&rig.pipeline(&text, registry), CancellationToken::new()).await;
            prop_assert!(outcome.error.is_none(), "{:?}", outcome.error);

            let ids = source.ids();
            let decoded: Vec<i64> = ids.iter().copied().filter(|id| !undecodable.contains(id)).collect();
            let passing: Vec<i64> = decoded.iter().copied().filter(|id| value(*id) >= threshold).collect();
            let kept: Vec<i64> = passing.iter().copied().filter(|id| !refused.contains(id)).collect();
            let expect_rejected = (ids.len() - decoded.len()) + (passing.len() - kept.len());
            let stored = rig.state().streams("p").unwrap();
            let mut dead = 0;
            for name in source.stream_names() {
                let s = outcome.report.streams.iter().find(|s| s.name == name).expect("stream in the report");
                prop_assert_eq!(s.read, s.written + s.rejected + s.filtered, "{}", name);
                prop_assert_eq!(s.read, ids.len() as u64, "{}", name);
                prop_assert_eq!(s.filtered, (decoded.len() - passing.len()) as u64, "{}", name);
                prop_assert_eq!(s.rejected, expect_rejected as u64, "{}", name);
                prop_assert_eq!(s.written, kept.len() as u64, "{}", name);
                prop_assert_eq!(&rig.world.dest("a").sorted(&name), &kept, "{}", name);
                if second_sink {
                    prop_assert_eq!(&rig.world.dest("b").sorted(&name), &passing, "{}", name);
                }
                let st = stored.iter().find(|st| st.stream == name).expect("stream in the state store");
                prop_assert_eq!(
                    (st.counts.read, st.counts.written, st.counts.rejected, st.counts.filtered),
                    (s.read, s.written, s.rejected, s.filtered),
                    "{}", name
                );
                dead += s.rejected;
            }
            prop_assert_eq!(rig.dlq_lines().len() as u64, dead);
            Ok(())
        })?;
    }
}

/// How a run is killed in the exactly-once property.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// The sink fails for good at a step.
    Fails(Step),
    /// A flush commits and then fails for good.
    LosesAck(u64),
    /// The process dies at a step, before it does anything.
    Crashes(Step),
    /// The process dies after a flush committed, before it returned.
    CrashesAfterCommit(u64),
    /// Ctrl-C after the source's Nth batch.
    Cancelled(u64),
}

fn kill() -> impl Strategy<Value = Kill> {
    prop_oneof![
        step().prop_map(Kill::Fails),
        (1..=12u64).prop_map(Kill::LosesAck),
        step().prop_map(Kill::Crashes),
        (1..=12u64).prop_map(Kill::CrashesAfterCommit),
        (1..=12u64).prop_map(Kill::Cancelled),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Runs killed at random steps, then one run that is left alone: the
    /// transactional sink holds every row of every stream exactly once,
    /// and no checkpoint ever passed what it held.
    #[test]
    fn a_killed_run_resumed_delivers_every_row_exactly_once(
        streams in 1..=2usize,
        partitions in 1..=3usize,
        rows in 1..=30u64,
        batch_rows in 1..=8usize,
        parallelism in 1..=3usize,
        kills in proptest::collection::vec(kill(), 1..=2),
    ) {
        paused_runtime().block_on(async {
            let rig = Rig::new();
            rig.world.audit(rig.state_dir());
            let text = rig.text(&["a"], "", &runtime(batch_rows, parallelism));
            let clean = SourceSpec::rows(streams, partitions, rows);
            for kill in &kills {
                let cancel = CancellationToken::new();
                let mut source = clean.clone();
                let sink = match *kill {
                    Kill::Fails(step) => SinkSpec::transactional().fault(step, Fault::Fatal),
                    Kill::LosesAck(n) => SinkSpec::transactional().fault(Step::Flush(n), Fault::LostAck { retryable: false }),
                    Kill::Crashes(step) => SinkSpec::transactional().fault(step, Fault::Crash),
                    Kill::CrashesAfterCommit(n) => SinkSpec::transactional().fault(Step::Flush(n), Fault::CrashAfterCommit),
                    Kill::Cancelled(n) => {
                        source.cancel_after = Some((n, cancel.clone()));
                        SinkSpec::transactional()
                    }
                };
                let registry = rig.world.registry(source, &[("a", sink)]);
                if let Some(outcome) = rig.run_until_crash(&rig.pipeline(&text, registry), cancel).await
                    && let Some(e) = &outcome.error
                {
                    prop_assert!(e.to_string().contains("injected"), "{}", e);
                }
            }
            let registry = rig.world.registry(clean.clone(), &[("a", SinkSpec::transactional())]);
            let last = rig.run(&rig.pipeline(&text, registry), CancellationToken::new()).await;
            prop_assert!(last.error.is_none(), "{:?}", last.error);
            prop_assert!(!last.report.interrupted);
            let status = rig.state().last_run_status("p").unwrap();
            prop_assert_eq!(status.as_deref(), Some("completed"));
            for name in clean.stream_names() {
                prop_assert_eq!(&rig.world.dest("a").sorted(&name), &clean.ids(), "{}", name);
            }
            prop_assert_eq!(rig.world.audit_all(), Vec::<String>::new());
            Ok(())
        })?;
    }
}
