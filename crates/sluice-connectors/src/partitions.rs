//! How many parallel reads a database table gets, and the key ranges they
//! cover. The PostgreSQL and MySQL sources share these rules, so a table of
//! the same size is read the same way from either.

/// Rows per partition when the number of partitions is automatic.
pub const ROWS_PER_PARTITION: u64 = 250_000;
/// Most partitions an automatic split gives one table.
pub const MAX_PARTITIONS: usize = 8;

/// Partitions for a table of about `estimated_rows` rows: the configured
/// number, else one per [`ROWS_PER_PARTITION`] rows, between 1 and
/// [`MAX_PARTITIONS`] and at most one per core (two on a machine with
/// one): sluice reads as many partitions at once as it has cores, and each
/// partition costs the server a key-range scan of its own, so more would
/// add work and no parallelism. An unknown estimate reads the table in
/// one piece.
pub fn count(configured: Option<usize>, estimated_rows: Option<u64>) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    count_on(configured, estimated_rows, cores)
}

/// [`count`] on a machine with `cores` cores.
fn count_on(configured: Option<usize>, estimated_rows: Option<u64>, cores: usize) -> usize {
    match configured {
        Some(n) => n.max(1),
        None => {
            let rows = estimated_rows.unwrap_or(0);
            (rows.div_ceil(ROWS_PER_PARTITION) as usize).clamp(1, MAX_PARTITIONS.min(cores.max(2)))
        }
    }
}

/// `n` ranges `[lo, hi)` of an integer key whose values lie in
/// `[min, max]`, as even as integers allow; the first range has no lower
/// bound and the last no upper one, so rows added after the bounds were
/// read still fall in one. Never more ranges than values.
pub fn int_ranges(min: i128, max: i128, n: usize) -> Vec<(Option<i128>, Option<i128>)> {
    let span = (max - min + 1).max(1);
    let n = (n.max(1) as i128).min(span);
    let bound = |i: i128| min + span * i / n;
    (0..n)
        .map(|i| ((i > 0).then(|| bound(i)), (i < n - 1).then(|| bound(i + 1))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_count_follows_the_row_estimate_with_a_ceiling() {
        assert_eq!(count_on(None, None, 16), 1);
        assert_eq!(count_on(None, Some(0), 16), 1);
        assert_eq!(count_on(None, Some(250_000), 16), 1);
        assert_eq!(count_on(None, Some(250_001), 16), 2);
        assert_eq!(count_on(None, Some(1_000_000), 16), 4);
        assert_eq!(count_on(None, Some(3_000_000), 16), 8);
        // One per core, two on one core.
        assert_eq!(count_on(None, Some(3_000_000), 4), 4);
        assert_eq!(count_on(None, Some(3_000_000), 2), 2);
        assert_eq!(count_on(None, Some(3_000_000), 1), 2);
        // What the configuration says, whatever the machine.
        assert_eq!(count_on(Some(3), Some(10), 2), 3);
        assert_eq!(count_on(Some(16), None, 2), 16);
        assert_eq!(count_on(Some(0), None, 2), 1);
    }

    #[test]
    fn int_ranges_cover_every_value_once() {
        let r = int_ranges(1, 100, 4);
        assert_eq!(
            r,
            vec![
                (None, Some(26)),
                (Some(26), Some(51)),
                (Some(51), Some(76)),
                (Some(76), None)
            ]
        );
        assert_eq!(int_ranges(5, 5, 4), vec![(None, None)]);
        assert_eq!(int_ranges(1, 3, 8).len(), 3);
        // Each value falls in exactly one range.
        let r = int_ranges(-7, 1000, 7);
        for v in -20..1020 {
            let hits = r
                .iter()
                .filter(|(lo, hi)| lo.is_none_or(|lo| v >= lo) && hi.is_none_or(|hi| v < hi))
                .count();
            assert_eq!(hits, 1, "value {v}");
        }
    }
}
