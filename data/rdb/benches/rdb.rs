//! `make bench` part: the relational store against the same SQL on bare
//! rusqlite under the same pragmas (WAL, `synchronous=FULL`), side by side
//! in one run, interleaved in rounds so the disk's moods hit both (issue 9:
//! ≤ 1.1×):
//!
//! - insert: one row per transaction (durable), `RdbStore::insert` vs a
//!   cached `INSERT` statement;
//! - predicate query: `equal_to(dept).between(age).order_by_asc(age)
//!   .limit(20)` read through a `ResultSet` vs the same SELECT stepped with
//!   rusqlite, on 10,000 rows with an index.

use std::time::{Duration, Instant};

use accord_rdb::{OpenCallback, RdbError, RdbPredicates, RdbStore, StoreConfig, Transaction, Value, ValuesBucket};
use rusqlite::{params, Connection};

const INSERTS: usize = 200;
const ROWS: i64 = 10_000;
const QUERIES: usize = 2_000;
const ROUNDS: usize = 4;

const SCHEMA: &str =
    "CREATE TABLE employee(id INTEGER PRIMARY KEY, name TEXT NOT NULL, age INTEGER, dept TEXT); CREATE INDEX by_dept_age ON employee(dept, age);";

struct Schema;

impl OpenCallback for Schema {
    fn on_create(&self, tx: &Transaction<'_>) -> Result<(), RdbError> {
        for stmt in SCHEMA.split(';').filter(|s| !s.trim().is_empty()) {
            tx.execute(stmt, &[])?;
        }
        Ok(())
    }
}

fn p50(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

fn dept(i: i64) -> &'static str {
    ["eng", "ops", "mgmt", "sales"][(i % 4) as usize]
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = RdbStore::open(&StoreConfig::new(dir.path().join("rdb.db")), 1, &Schema).expect("store");
    let bare = Connection::open(dir.path().join("bare.db")).expect("bare");
    bare.execute_batch(&format!("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; {SCHEMA}")).expect("bare schema");

    let (mut rdb_ins, mut bare_ins) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for i in 0..INSERTS / ROUNDS {
            let n = (round * INSERTS + i) as i64;
            let t = Instant::now();
            store.insert("employee", &ValuesBucket::new().put("name", format!("p{n}")).put("age", n % 60).put("dept", dept(n))).expect("insert");
            rdb_ins.push(t.elapsed());
            let t = Instant::now();
            bare.prepare_cached("INSERT INTO employee(name, age, dept) VALUES(?, ?, ?)")
                .and_then(|mut st| st.execute(params![format!("p{n}"), n % 60, dept(n)]))
                .expect("bare insert");
            bare_ins.push(t.elapsed());
        }
    }

    // Fill both to ROWS in one transaction each.
    let have = INSERTS as i64;
    let rows: Vec<ValuesBucket> = (have..ROWS).map(|n| ValuesBucket::new().put("name", format!("p{n}")).put("age", n % 60).put("dept", dept(n))).collect();
    store.batch_insert("employee", &rows).expect("fill");
    bare.execute_batch("BEGIN").expect("begin");
    for n in have..ROWS {
        bare.prepare_cached("INSERT INTO employee(name, age, dept) VALUES(?, ?, ?)")
            .and_then(|mut st| st.execute(params![format!("p{n}"), n % 60, dept(n)]))
            .expect("fill bare");
    }
    bare.execute_batch("COMMIT").expect("commit");

    let (mut rdb_q, mut bare_q) = (Vec::new(), Vec::new());
    let mut check = (0usize, 0usize);
    for round in 0..ROUNDS {
        for i in 0..QUERIES / ROUNDS {
            let lo = ((round * 7 + i) % 40) as i64;
            let d = dept(i as i64);
            let t = Instant::now();
            let p = RdbPredicates::new("employee").equal_to("dept", d).between("age", lo, lo + 10).order_by_asc("age").limit(20);
            let mut rs = store.query(&p, &["id", "name", "age"]).expect("query");
            while let Some(r) = rs.next_row().expect("row") {
                if let Value::Integer(_) = r[0] {
                    check.0 += 1;
                }
            }
            drop(rs);
            rdb_q.push(t.elapsed());
            let t = Instant::now();
            let mut st =
                bare.prepare_cached("SELECT id, name, age FROM employee WHERE dept = ? AND age BETWEEN ? AND ? ORDER BY age ASC LIMIT 20").expect("prepare");
            let mut rows = st.query(params![d, lo, lo + 10]).expect("bare query");
            while let Some(r) = rows.next().expect("bare row") {
                // The same work as the result set: every column read out.
                let row: (i64, String, i64) = (r.get(0).expect("id"), r.get(1).expect("name"), r.get(2).expect("age"));
                std::hint::black_box(row);
                check.1 += 1;
            }
            drop(rows);
            drop(st);
            bare_q.push(t.elapsed());
        }
    }
    assert_eq!(check.0, check.1, "both read the same rows");

    let (ri, bi) = (p50(rdb_ins), p50(bare_ins));
    let (rq, bq) = (p50(rdb_q), p50(bare_q));
    println!("relational store vs bare rusqlite, same pragmas (WAL, synchronous=FULL), p50:");
    println!("  insert, one row per transaction: rdb {ri:8.1} µs   rusqlite {bi:8.1} µs   {:.2}x (target <= 1.1x)", ri / bi);
    println!("  predicate query (20 rows):       rdb {rq:8.1} µs   rusqlite {bq:8.1} µs   {:.2}x (target <= 1.1x)", rq / bq);
}
