//! Isolating the rows a database refuses, shared by the table sinks
//! (PostgreSQL, MySQL/MariaDB). The SQLite sink needs none of it: it inserts
//! one row per execution of a prepared statement, so a refused row costs
//! its own statement only.
//!
//! A sink first asks the database to judge whole sets of rows at once: it
//! stages the rows in an unconstrained temporary table and evaluates the
//! destination's `NOT NULL` and `CHECK` constraints as one query, so rows
//! refused for those reasons cost a fixed number of statements however many
//! there are. What remains (unique and foreign keys, values a column type
//! cannot hold) is found here by bisection: a set of rows is tried, and when
//! the database refuses it, each half is tried in turn until every refused
//! row stands alone. With `r` such rows among `n`, that is at most about
//! `2·r·log2(n)` attempts.
//!
//! How an attempt can be undone is what differs between databases
//! ([`Trial::undo`]):
//!
//! - [`Undo::Statement`] (MySQL/InnoDB): a failed statement undoes itself and
//!   a successful one costs nothing to keep, so accepted sets are kept as
//!   they are found.
//! - [`Undo::Savepoint`] (PostgreSQL): an attempt runs in a subtransaction,
//!   and every subtransaction that wrote and was kept holds a lock until the
//!   end of the transaction (the batch's, which also stores its checkpoint),
//!   so thousands of them exhaust the server's lock table. Bisection therefore
//!   only probes, rolling every attempt back (an aborted subtransaction
//!   releases its locks), and the rows that pass are then loaded in one
//!   attempt. Rows that pass alone but not together (two rows with the same
//!   new key) make that load fail: the trial may name the repeated keys as
//!   a set ([`Trial::repeats`]); what is left after that is isolated keeping
//!   accepted sets as they are found.
//!
//! Cancellation: attempts are awaited one at a time; dropping the future
//! leaves the transaction to the caller, who rolls it back.

use async_trait::async_trait;
use sluice_core::Result;

/// How a database undoes an attempt that loaded rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undo {
    /// A refused statement undoes itself; accepted ones are kept for free.
    Statement,
    /// Attempts run in savepoints; a kept one holds a lock to the end of the
    /// transaction, a rolled-back one does not.
    Savepoint,
}

/// Loads sets of rows for [`isolate`].
#[async_trait]
pub trait Trial: Send {
    /// Tries to load `rows` (indexes into the rows being isolated, in
    /// increasing order) in one atomic step. `keep = false` asks for the
    /// rows to be undone even when accepted (a probe).
    ///
    /// `Ok(None)`: accepted; `Ok(Some(reason))`: refused for their data,
    /// with the server's message, and undone; `Err`: anything else (the
    /// connection, a missing privilege), which ends the batch.
    async fn attempt(&mut self, rows: &[usize], keep: bool) -> Result<Option<String>>;

    /// How attempts are undone.
    fn undo(&self) -> Undo {
        Undo::Statement
    }

    /// Of `rows`, each accepted alone, those refused because an earlier one
    /// holds the same unique key, judged as a set, with the reason; `None`
    /// when this trial cannot tell.
    async fn repeats(&mut self, rows: &[usize]) -> Result<Option<Vec<(usize, String)>>> {
        let _ = rows;
        Ok(None)
    }
}

/// Loads `rows`, returning those the database refuses with its reason;
/// every other row is loaded (kept) when this returns `Ok`. `rows` must be
/// in increasing order.
pub async fn isolate(trial: &mut dyn Trial, rows: &[usize]) -> Result<Vec<(usize, String)>> {
    let mut refused = Vec::new();
    if rows.is_empty() {
        return Ok(refused);
    }
    match trial.attempt(rows, true).await? {
        None => return Ok(refused),
        Some(reason) if rows.len() == 1 => {
            refused.push((rows[0], reason));
            return Ok(refused);
        }
        Some(_) => {}
    }
    let (left, right) = rows.split_at(rows.len() / 2);
    let keep = trial.undo() == Undo::Statement;
    bisect(trial, &[left, right], keep, &mut refused).await?;
    refused.sort_by_key(|(i, _)| *i);
    if keep {
        return Ok(refused);
    }
    let mut good: Vec<usize> = rows
        .iter()
        .copied()
        .filter(|i| refused.binary_search_by_key(i, |(r, _)| *r).is_err())
        .collect();
    if good.is_empty() || trial.attempt(&good, true).await?.is_none() {
        return Ok(refused);
    }
    // Rows accepted alone but refused together: a key repeated in the batch
    // (the first row holding it loads), or what only keeping rows as they
    // are found can tell.
    if let Some(repeats) = trial.repeats(&good).await?.filter(|r| !r.is_empty()) {
        good.retain(|i| repeats.binary_search_by_key(i, |(r, _)| *r).is_err());
        refused.extend(repeats);
        refused.sort_by_key(|(i, _)| *i);
        if good.is_empty() || trial.attempt(&good, true).await?.is_none() {
            return Ok(refused);
        }
    }
    let (left, right) = good.split_at(good.len() / 2);
    bisect(trial, &[left, right], true, &mut refused).await?;
    refused.sort_by_key(|(i, _)| *i);
    Ok(refused)
}

/// Tries `pieces` in order, splitting each refused one until each refused
/// row stands alone; accepted pieces are kept when `keep`.
async fn bisect(
    trial: &mut dyn Trial,
    pieces: &[&[usize]],
    keep: bool,
    refused: &mut Vec<(usize, String)>,
) -> Result<()> {
    // Pieces still to try, the first on top.
    let mut work: Vec<&[usize]> = pieces.iter().rev().copied().collect();
    while let Some(piece) = work.pop() {
        if piece.is_empty() {
            continue;
        }
        if let Some(reason) = trial.attempt(piece, keep).await? {
            if let [row] = piece {
                refused.push((*row, reason));
            } else {
                let (left, right) = piece.split_at(piece.len() / 2);
                work.push(right);
                work.push(left);
            }
        }
    }
    Ok(())
}

/// The condition an attempt selects `rows` (increasing) from a stage by:
/// `column` numbers row `i` as `i + first`. A few runs of consecutive rows
/// (what bisection mostly tries) become a `BETWEEN` each; otherwise `list`
/// is given the numbers, comma-separated, to write the database's list.
pub fn row_filter(column: &str, rows: &[usize], first: usize, list: impl FnOnce(&str) -> String) -> String {
    let runs = runs(rows);
    if runs.len() <= 8 {
        let ranges: Vec<String> = runs
            .iter()
            .map(|(a, b)| format!("{column} BETWEEN {} AND {}", a + first, b + first))
            .collect();
        return ranges.join(" OR ");
    }
    let ids: Vec<String> = rows.iter().map(|i| (i + first).to_string()).collect();
    list(&ids.join(","))
}

/// Runs of consecutive numbers in `rows` (increasing), as inclusive ranges,
/// for a `BETWEEN` per run instead of a list.
pub fn runs(rows: &[usize]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &r in rows {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == r => *end = r,
            _ => out.push((r, r)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// A table with a unique key: a row is refused when its key is negative
    /// or already present; records what stays loaded.
    struct Table {
        keys: Vec<i64>,
        loaded: BTreeSet<i64>,
        undo: Undo,
        attempts: usize,
        /// Attempts kept (with `Undo::Savepoint`, the locks held).
        kept: usize,
    }

    #[async_trait]
    impl Trial for Table {
        async fn attempt(&mut self, rows: &[usize], keep: bool) -> Result<Option<String>> {
            self.attempts += 1;
            let mut added = BTreeSet::new();
            for &r in rows {
                let k = self.keys[r];
                if k < 0 {
                    return Ok(Some(format!("check failed for {k}")));
                }
                if self.loaded.contains(&k) || !added.insert(k) {
                    return Ok(Some(format!("duplicate key {k}")));
                }
            }
            if keep {
                self.kept += 1;
                self.loaded.extend(added);
            }
            Ok(None)
        }

        fn undo(&self) -> Undo {
            self.undo
        }

        async fn repeats(&mut self, rows: &[usize]) -> Result<Option<Vec<(usize, String)>>> {
            let mut seen = BTreeSet::new();
            Ok(Some(
                rows.iter()
                    .filter(|&&r| !seen.insert(self.keys[r]))
                    .map(|&r| (r, format!("duplicate key {}", self.keys[r])))
                    .collect(),
            ))
        }
    }

    async fn run(keys: Vec<i64>, undo: Undo) -> (Table, Vec<usize>) {
        let mut t = Table {
            keys,
            loaded: BTreeSet::new(),
            undo,
            attempts: 0,
            kept: 0,
        };
        let rows: Vec<usize> = (0..t.keys.len()).collect();
        let refused = isolate(&mut t, &rows).await.unwrap_or_default();
        (t, refused.into_iter().map(|(i, _)| i).collect())
    }

    #[tokio::test]
    async fn every_refused_row_is_found_and_every_other_row_loaded() {
        for undo in [Undo::Statement, Undo::Savepoint] {
            // Every third row negative, and key 7 twice (rows 7 and 22).
            let keys: Vec<i64> = (0..30)
                .map(|i| {
                    if i % 3 == 2 {
                        -i
                    } else if i == 22 {
                        7
                    } else {
                        i
                    }
                })
                .collect();
            let (t, refused) = run(keys.clone(), undo).await;
            let mut expected: Vec<usize> = (0..30).filter(|i| i % 3 == 2).collect();
            expected.push(22);
            expected.sort();
            assert_eq!(refused, expected, "{undo:?}");
            let want: BTreeSet<i64> = keys.iter().copied().filter(|k| *k >= 0).collect();
            assert_eq!(t.loaded, want, "{undo:?}");
        }
    }

    #[tokio::test]
    async fn savepoint_bisection_keeps_one_attempt_when_rows_are_only_refused_alone() {
        let keys: Vec<i64> = (0..10_000).map(|i| if i % 2 == 0 { -1 } else { i }).collect();
        let (t, refused) = run(keys, Undo::Savepoint).await;
        assert_eq!(refused.len(), 5_000);
        assert_eq!(t.loaded.len(), 5_000);
        assert_eq!(t.kept, 1, "kept attempts hold locks to the end of the transaction");
        // Probes only: at most one per node of the bisection tree.
        assert!(t.attempts <= 2 * 10_000 + 1, "{} attempts", t.attempts);
    }

    #[tokio::test]
    async fn keys_repeated_in_the_batch_are_found_as_a_set_without_keeping_attempts() {
        // Every row's key appears twice: the second of each pair is refused.
        let keys: Vec<i64> = (0..10_000).map(|i| i / 2).collect();
        let (t, refused) = run(keys, Undo::Savepoint).await;
        assert_eq!(refused, (0..10_000).filter(|i| i % 2 == 1).collect::<Vec<_>>());
        assert_eq!((t.loaded.len(), t.kept), (5_000, 1));
    }

    #[tokio::test]
    async fn nothing_refused_costs_one_attempt_and_everything_refused_loads_nothing() {
        let (t, refused) = run((0..100).collect(), Undo::Savepoint).await;
        assert_eq!((t.attempts, refused.len(), t.loaded.len()), (1, 0, 100));
        let (t, refused) = run(vec![-1], Undo::Savepoint).await;
        assert_eq!((refused, t.loaded.len()), (vec![0], 0));
        let (t, refused) = run(vec![-1; 100], Undo::Savepoint).await;
        assert_eq!((refused.len(), t.loaded.len(), t.kept), (100, 0, 0));
    }

    #[test]
    fn runs_join_consecutive_rows() {
        assert_eq!(runs(&[1, 2, 3, 7, 9, 10]), vec![(1, 3), (7, 7), (9, 10)]);
        assert!(runs(&[]).is_empty());
    }

    #[test]
    fn few_runs_are_ranges_and_many_a_list() {
        let list = |ids: &str| format!("n IN ({ids})");
        assert_eq!(
            row_filter("n", &[0, 1, 2, 5], 1, list),
            "n BETWEEN 1 AND 3 OR n BETWEEN 6 AND 6"
        );
        let scattered: Vec<usize> = (0..20).map(|i| 2 * i).collect();
        let filter = row_filter("n", &scattered, 0, list);
        assert!(
            filter.starts_with("n IN (0,2,4,") && filter.ends_with(",38)"),
            "{filter}"
        );
    }
}
