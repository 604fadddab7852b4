//! Faults a review found in the relational store, each kept as a test of
//! the public API: counts after a jump past the end, a misspelt column, more
//! result sets than readers, a backup over the store itself, snapshots,
//! writes through `query_sql`, restores under open readers, reentrancy.
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use accord_rdb::*;

struct Schema;
impl OpenCallback for Schema {
    fn on_create(&self, tx: &Transaction<'_>) -> Result<(), RdbError> {
        tx.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, k INTEGER)", &[])?;
        Ok(())
    }
}

fn open(dir: &Path, readers: usize) -> RdbStore {
    RdbStore::open(&StoreConfig::new(dir.join("a.db")).readers(readers), 1, &Schema).unwrap()
}

fn fill(s: &RdbStore, n: i64) {
    let rows: Vec<ValuesBucket> = (0..n).map(|i| ValuesBucket::new().put("name", format!("n{i}")).put("k", 7)).collect();
    s.batch_insert("t", &rows).unwrap();
}

/// Moving the cursor past the end leaves row_count() the number of rows
/// (it once reported the row asked for).
#[test]
fn row_count_after_go_to_row_past_end() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path(), 4);
    // More than a page, so the first page does not tell the total.
    fill(&s, 300);
    let mut rs = s.query(&RdbPredicates::new("t"), &[]).unwrap();
    assert!(!rs.go_to_row(1000).unwrap());
    assert_eq!(rs.row_count().unwrap(), 300, "300 rows in the table");
}

/// The same with the query's own limit: limit 5, cursor to row 7.
#[test]
fn row_count_with_limit_after_go_to_row_past_limit() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path(), 4);
    fill(&s, 10);
    let mut rs = s.query(&RdbPredicates::new("t").limit(5), &[]).unwrap();
    assert!(!rs.go_to_row(7).unwrap());
    assert_eq!(rs.row_count().unwrap(), 5, "limit 5");
}

/// A column name that is not in the table is quoted with "..."; with
/// SQLite's double-quoted-string fallback it became a string literal and a
/// typo in a predicate matched every row (here: deleted the whole table).
/// The fallback is off: it is an error.
#[test]
fn a_misspelt_column_is_an_error_not_every_row() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path(), 4);
    fill(&s, 10);
    let r = s.delete(&RdbPredicates::new("t").not_equal_to("nmae", "n3"));
    assert!(r.is_err(), "a predicate on a column that does not exist deleted {r:?} rows");
}

/// ORDER BY on a non-unique column, read page by page (each page is its own
/// LIMIT/OFFSET query): every row exactly once.
#[test]
fn paging_with_ties_in_order_by() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path(), 4);
    fill(&s, 2000);
    let mut rs = s.query(&RdbPredicates::new("t").order_by_asc("k"), &["id"]).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut n = 0;
    while let Some(r) = rs.next_row().unwrap() {
        seen.insert(r[0].as_i64().unwrap());
        n += 1;
    }
    assert_eq!((n, seen.len()), (2000, 2000));
}

/// More live result sets than readers, on one thread: the next query is a
/// named error after the pool's wait, not a hang.
#[test]
fn more_result_sets_than_readers_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let s = Arc::new(open(d.path(), 2));
    // More rows than a page: each result set keeps its reader.
    fill(&s, 600);
    let (tx, rx) = std::sync::mpsc::channel();
    let s2 = s.clone();
    std::thread::spawn(move || {
        let a = s2.query(&RdbPredicates::new("t"), &[]).unwrap();
        let b = s2.query(&RdbPredicates::new("t"), &[]).unwrap();
        // A nested query while iterating two others.
        let c = s2.query(&RdbPredicates::new("t"), &[]).err().map(|e| e.to_string());
        drop((a, b));
        // With the two given back, a query works again.
        let d = s2.query(&RdbPredicates::new("t"), &[]).is_ok();
        let _ = tx.send((c, d));
    });
    let (c, d) = rx.recv_timeout(Duration::from_secs(60)).expect("the third query returned");
    let c = c.expect("the third query is refused");
    assert!(c.contains("readers") && c.contains("a.db"), "{c}");
    assert!(d);
}

/// A store's own method inside its transaction is an error, not a
/// deadlock; the transaction's writes are rolled back with it.
#[test]
fn the_store_inside_its_own_transaction_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path(), 2);
    let r = s.transaction(|tx| {
        tx.insert("t", &ValuesBucket::new().put("name", "a"))?;
        s.insert("t", &ValuesBucket::new().put("name", "b"))
    });
    assert!(matches!(r, Err(RdbError::Reentrant(_))), "{r:?}");
    assert_eq!(s.query(&RdbPredicates::new("t"), &[]).unwrap().row_count().unwrap(), 0);
    s.insert("t", &ValuesBucket::new().put("name", "c")).expect("outside it, the store works");
}

/// Backup to the store's own path while it is open.
#[test]
fn a_backup_over_the_store_itself_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path(), 2);
    fill(&s, 3);
    let r = s.backup(s.path());
    fill(&s, 3);
    drop(s);
    let s = open(d.path(), 2);
    let n = s.query(&RdbPredicates::new("t"), &[]).unwrap().row_count().unwrap();
    assert!(r.is_err(), "a backup onto the store itself was accepted");
    assert_eq!(n, 6, "and the store kept its rows");
}

/// A result that fits in its first page holds no reader: with one reader,
/// many such result sets live at once and the rows are all there.
#[test]
fn a_one_page_result_holds_no_reader() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path(), 1);
    fill(&s, 20);
    let mut held: Vec<_> = (0..5).map(|_| s.query(&RdbPredicates::new("t").order_by_asc("id").limit(20), &["id"]).unwrap()).collect();
    s.delete(&RdbPredicates::new("t")).unwrap();
    for rs in &mut held {
        assert_eq!(rs.row_count().unwrap(), 20);
        let mut n = 0;
        while rs.next_row().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 20);
    }
}

/// Pages read after the writer changed the table come from the result
/// set's snapshot.
#[test]
fn pages_after_a_write_come_from_the_snapshot() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path(), 2);
    fill(&s, 700);
    let mut rs = s.query(&RdbPredicates::new("t").order_by_asc("id"), &["id"]).unwrap();
    assert!(rs.go_to_first_row().unwrap());
    assert_eq!(s.delete(&RdbPredicates::new("t").greater_than("id", 100)).unwrap(), 600);
    fill(&s, 50);
    let mut n = 1;
    while rs.next_row().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 700);
    assert_eq!(rs.row_count().unwrap(), 700);
}

/// query_sql is raw SQL, but it runs on a read-only reader: no statement
/// after it, no write through it.
#[test]
fn query_sql_cannot_write() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path(), 2);
    fill(&s, 5);
    for sql in ["SELECT 1); DELETE FROM t; --", "SELECT 1) ; DELETE FROM t; SELECT (1", "DELETE FROM t RETURNING *"] {
        let r = s.query_sql(sql, &[]);
        println!("{sql:?}: {:?}", r.as_ref().err());
    }
    assert_eq!(s.query(&RdbPredicates::new("t"), &[]).unwrap().row_count().unwrap(), 5);
}

/// Restore while a result set is open and readers are pooled; then every
/// reader sees the restored rows and the store is sound.
#[test]
fn restore_with_open_readers() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path(), 2);
    fill(&s, 5);
    let bak = d.path().join("b.db");
    s.backup(&bak).unwrap();
    fill(&s, 500);
    // A pooled idle reader and a live result set.
    drop(s.query(&RdbPredicates::new("t"), &[]).unwrap());
    let mut live = s.query(&RdbPredicates::new("t"), &[]).unwrap();
    let r = s.restore(&bak);
    println!("restore: {r:?}");
    r.unwrap();
    assert_eq!(live.row_count().unwrap(), 505, "the live one keeps its snapshot");
    drop(live);
    for _ in 0..3 {
        assert_eq!(s.query(&RdbPredicates::new("t"), &[]).unwrap().row_count().unwrap(), 5);
    }
    assert_eq!(s.integrity_check().unwrap(), Ok(()));
    drop(s);
    let s = open(d.path(), 2);
    assert_eq!(s.query(&RdbPredicates::new("t"), &[]).unwrap().row_count().unwrap(), 5);
}
