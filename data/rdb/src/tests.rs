use std::sync::atomic::{AtomicU32, Ordering};

use proptest::prelude::*;

use super::*;

struct Schema;

impl OpenCallback for Schema {
    fn on_create(&self, tx: &Transaction<'_>) -> Result<(), RdbError> {
        tx.execute("CREATE TABLE employee(id INTEGER PRIMARY KEY, name TEXT NOT NULL, age INTEGER, salary REAL, dept TEXT, photo BLOB)", &[])?;
        Ok(())
    }
}

fn open(dir: &Path) -> RdbStore {
    RdbStore::open(&StoreConfig::new(dir.join("rdb.db")), 1, &Schema).expect("open")
}

fn person(name: &str, age: i64, dept: Option<&str>) -> ValuesBucket {
    ValuesBucket::new().put("name", name).put("age", age).put("salary", age as f64 * 100.5).put("dept", dept)
}

fn names(rs: &mut ResultSet) -> Vec<String> {
    let i = rs.column_index("name").expect("a name column");
    let mut out = Vec::new();
    while let Some(row) = rs.next_row().unwrap() {
        out.push(row[i].as_str().unwrap_or("?").to_owned());
    }
    out
}

fn staffed(dir: &Path) -> RdbStore {
    let s = open(dir);
    let rows = [
        person("ann", 30, Some("eng")),
        person("bob", 25, Some("eng")),
        person("cat", 41, Some("ops")),
        person("dan", 35, None),
        person("eve", 28, Some("ops")),
        person("Ann2", 52, Some("mgmt")),
    ];
    assert_eq!(s.batch_insert("employee", &rows).unwrap(), 6);
    s
}

#[test]
fn predicates_select_what_they_say() {
    let d = tempfile::tempdir().unwrap();
    let s = staffed(d.path());
    let q = |p: RdbPredicates| names(&mut s.query(&p, &[]).unwrap());
    let e = || RdbPredicates::new("employee");
    assert_eq!(q(e().equal_to("dept", "eng").order_by_asc("name")), ["ann", "bob"]);
    assert_eq!(q(e().not_equal_to("dept", "eng").order_by_asc("name")), ["Ann2", "cat", "eve"]);
    assert_eq!(q(e().like("name", "an%").order_by_asc("id")), ["ann", "Ann2"], "LIKE ignores ASCII case");
    assert_eq!(q(e().glob("name", "[a-c]*").order_by_asc("id")), ["ann", "bob", "cat"]);
    assert_eq!(q(e().between("age", 28, 35).order_by_asc("age")), ["eve", "ann", "dan"]);
    assert_eq!(q(e().not_between("age", 28, 50).order_by_asc("age")), ["bob", "Ann2"]);
    assert_eq!(q(e().in_values("name", ["eve", "bob", "zed"]).order_by_asc("name")), ["bob", "eve"]);
    assert!(q(e().in_values("name", Vec::<String>::new())).is_empty());
    assert_eq!(q(e().not_in_values("dept", ["eng", "ops"]).order_by_asc("id")), ["Ann2"]);
    assert_eq!(q(e().is_null("dept")), ["dan"]);
    assert_eq!(q(e().is_not_null("dept")).len(), 5);
    assert_eq!(q(e().greater_than("age", 40).order_by_desc("age")), ["Ann2", "cat"]);
    assert_eq!(q(e().less_than_or_equal_to("age", 28).order_by_asc("age")), ["bob", "eve"]);
    // (dept = eng AND age > 26) OR dept IS NULL
    let p = e().begin_wrap().equal_to("dept", "eng").and().greater_than("age", 26).end_wrap().or().is_null("dept");
    assert_eq!(q(p.order_by_asc("id")), ["ann", "dan"]);
    // dept = ops AND (age < 30 OR age > 40): conditions join with AND by default.
    let p = e().equal_to("dept", "ops").begin_wrap().less_than("age", 30).or().greater_than("age", 40).end_wrap();
    assert_eq!(q(p.order_by_asc("name")), ["cat", "eve"]);
    assert_eq!(q(e().order_by_asc("age").offset(1).limit(2)), ["eve", "ann"]);
    assert_eq!(q(e().order_by_asc("age").offset(5)), ["Ann2"]);
    assert!(q(e().limit(0)).is_empty());

    let mut rs = s.query(&e().is_not_null("dept").group_by(&["dept"]).order_by_asc("dept"), &["dept"]).unwrap();
    let mut depts = Vec::new();
    while let Some(r) = rs.next_row().unwrap() {
        depts.push(r[0].as_str().unwrap().to_owned());
    }
    assert_eq!(depts, ["eng", "mgmt", "ops"]);
    let mut rs = s.query(&e().distinct(), &["dept"]).unwrap();
    assert_eq!(rs.row_count().unwrap(), 4);
}

#[test]
fn values_are_bound_never_spliced_and_names_are_checked() {
    let d = tempfile::tempdir().unwrap();
    let s = staffed(d.path());
    let evil = "x'); DROP TABLE employee; --";
    s.insert("employee", &person(evil, 1, Some("\"dept\""))).unwrap();
    let mut rs = s.query(&RdbPredicates::new("employee").equal_to("name", evil), &["name", "dept"]).unwrap();
    assert_eq!(rs.next_row().unwrap().unwrap(), [Value::Text(evil.into()), Value::Text("\"dept\"".into())]);
    drop(rs);
    for bad in ["name\"", "name; DROP TABLE employee", "", "1abc", "a b"] {
        let e = s.query(&RdbPredicates::new("employee").equal_to(bad, 1), &[]).err().expect("refused");
        assert!(matches!(e, RdbError::InvalidPredicates(_)), "{bad:?}: {e}");
        assert!(matches!(s.insert("employee", &ValuesBucket::new().put(bad, 1)), Err(RdbError::InvalidIdentifier(_))));
        assert!(matches!(s.query(&RdbPredicates::new(bad), &[]), Err(RdbError::InvalidPredicates(_))));
        assert!(matches!(s.query(&RdbPredicates::new("employee"), &[bad]), Err(RdbError::InvalidIdentifier(_))));
    }
    assert_eq!(s.query(&RdbPredicates::new("employee"), &[]).unwrap().row_count().unwrap(), 7);
}

#[test]
fn misused_predicates_are_named_errors() {
    let d = tempfile::tempdir().unwrap();
    let s = staffed(d.path());
    let e = || RdbPredicates::new("employee");
    let why = |p: RdbPredicates| match s.query(&p, &[]) {
        Err(RdbError::InvalidPredicates(w)) => w,
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("accepted"),
    };
    assert!(why(e().or().equal_to("age", 1)).contains("or()"));
    assert!(why(e().equal_to("age", 1).or()).contains("or()"));
    assert!(why(e().begin_wrap().equal_to("age", 1)).contains("not closed"));
    assert!(why(e().end_wrap()).contains("end_wrap"));
    assert!(why(e().begin_wrap().end_wrap()).contains("empty"));
    assert!(why(e().limit(-1)).contains("negative"));
    // What a write cannot carry out is refused, not ignored.
    let e2 = s.delete(&e().equal_to("age", 30).limit(1)).unwrap_err();
    assert!(e2.to_string().contains("queries"), "{e2}");
    assert!(s.update(&ValuesBucket::new().put("age", 1), &e().order_by_asc("age")).is_err());
    assert!(matches!(s.update(&ValuesBucket::new(), &e()), Err(RdbError::EmptyBucket)));
    assert_eq!(s.query(&e(), &[]).unwrap().row_count().unwrap(), 6, "nothing was deleted");
}

#[test]
fn insert_update_delete_and_types() {
    let d = tempfile::tempdir().unwrap();
    let s = staffed(d.path());
    let id = s.insert("employee", &person("fay", 22, Some("eng")).put("photo", vec![1u8, 2, 3])).unwrap();
    assert_eq!(id, 7);
    let n = s.update(&ValuesBucket::new().put("dept", "rnd"), &RdbPredicates::new("employee").equal_to("dept", "eng")).unwrap();
    assert_eq!(n, 3);
    let mut rs = s.query(&RdbPredicates::new("employee").equal_to("id", id), &["name", "age", "salary", "dept", "photo"]).unwrap();
    assert_eq!(
        rs.next_row().unwrap().unwrap(),
        [Value::Text("fay".into()), Value::Integer(22), Value::Real(2211.0), Value::Text("rnd".into()), Value::Blob(vec![1, 2, 3])]
    );
    drop(rs);
    assert_eq!(s.delete(&RdbPredicates::new("employee").less_than("age", 30)).unwrap(), 3);
    assert_eq!(s.delete(&RdbPredicates::new("employee")).unwrap(), 4);
    assert_eq!(s.execute("INSERT INTO employee(name) VALUES(?)", &["raw".into()]).unwrap(), 1);
    let mut rs = s.query_sql("SELECT name, age FROM employee WHERE name = ?", &["raw".into()]).unwrap();
    assert_eq!(rs.next_row().unwrap().unwrap(), [Value::Text("raw".into()), Value::Null]);
    // A constraint is a named error, not a panic.
    let e = s.insert("employee", &ValuesBucket::new().put("age", 1)).unwrap_err();
    assert!(e.to_string().contains("NOT NULL") && e.to_string().contains("rdb.db"), "{e}");
}

#[test]
fn a_result_set_pages_from_one_snapshot() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let rows: Vec<ValuesBucket> = (0..1000).map(|i| person(&format!("p{i:04}"), i, None)).collect();
    s.batch_insert("employee", &rows).unwrap();
    let mut rs = s.query(&RdbPredicates::new("employee").order_by_asc("age"), &["name", "age"]).unwrap();
    assert!(rs.go_to_first_row().unwrap());
    assert!(rs.rows_in_page() <= PAGE_ROWS, "one page in memory, not the whole result");
    // The writer carries on; the result set keeps its snapshot.
    s.delete(&RdbPredicates::new("employee").greater_than("age", 500)).unwrap();
    s.insert("employee", &person("late", -1, None)).unwrap();
    let mut seen = 1;
    while let Some(row) = rs.next_row().unwrap() {
        assert_eq!(row[1], Value::Integer(seen));
        seen += 1;
    }
    assert_eq!(seen, 1000);
    assert_eq!(rs.row_count().unwrap(), 1000);
    assert!(rs.go_to_row(999).unwrap() && rs.get(1) == Some(&Value::Integer(999)));
    assert!(rs.go_to_row(3).unwrap() && rs.get(1) == Some(&Value::Integer(3)));
    assert!(!rs.go_to_row(1000).unwrap() && rs.row().is_none());
    drop(rs);
    assert_eq!(s.query(&RdbPredicates::new("employee"), &[]).unwrap().row_count().unwrap(), 502);
    let mut rs = s.query(&RdbPredicates::new("employee").offset(490).limit(20), &[]).unwrap();
    assert_eq!(rs.row_count().unwrap(), 12);
}

#[test]
fn big_rows_make_small_pages() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let rows: Vec<ValuesBucket> = (0..6).map(|i| person("big", i, None).put("photo", vec![i as u8; 400 << 10])).collect();
    s.batch_insert("employee", &rows).unwrap();
    let mut rs = s.query(&RdbPredicates::new("employee").order_by_asc("age"), &["photo"]).unwrap();
    let mut n = 0;
    while let Some(row) = rs.next_row().unwrap() {
        assert_eq!(row[0], Value::Blob(vec![n as u8; 400 << 10]));
        assert!(rs.rows_in_page() <= 3, "a page holds about {PAGE_BYTES} bytes");
        n += 1;
    }
    assert_eq!(n, 6);
}

#[test]
fn transactions_commit_or_roll_back_whole() {
    let d = tempfile::tempdir().unwrap();
    let s = staffed(d.path());
    let count = |s: &RdbStore| s.query(&RdbPredicates::new("employee"), &[]).unwrap().row_count().unwrap();
    let r: Result<(), RdbError> = s.transaction(|tx| {
        tx.insert("employee", &person("gus", 1, None))?;
        tx.delete(&RdbPredicates::new("employee").equal_to("name", "ann"))?;
        Err(RdbError::InvalidPredicates("the caller changed its mind".into()))
    });
    assert!(r.is_err());
    assert_eq!(count(&s), 6);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = s.transaction(|tx| -> Result<(), RdbError> {
            tx.insert("employee", &person("hal", 1, None))?;
            panic!("a bug in the caller");
        });
    }));
    assert!(caught.is_err());
    assert_eq!(count(&s), 6, "a panic rolls back");
    let seen = s
        .transaction(|tx| {
            tx.insert("employee", &person("ivy", 1, None))?;
            tx.query_all(&RdbPredicates::new("employee").equal_to("name", "ivy"), &["name"])
        })
        .unwrap();
    assert_eq!(seen, [[Value::Text("ivy".into())]]);
    assert_eq!(count(&s), 7);
    // A failing statement inside a batch leaves none of it.
    let bad = [person("j1", 1, None), ValuesBucket::new().put("age", 2)];
    assert!(s.batch_insert("employee", &bad).is_err());
    assert_eq!(count(&s), 7);
}

struct Versions {
    upgrades: AtomicU32,
}

impl OpenCallback for Versions {
    fn on_create(&self, tx: &Transaction<'_>) -> Result<(), RdbError> {
        Schema.on_create(tx)
    }
    fn on_upgrade(&self, tx: &Transaction<'_>, old: u32, new: u32) -> Result<(), RdbError> {
        assert_eq!((old, new), (1, 2));
        self.upgrades.fetch_add(1, Ordering::Relaxed);
        tx.execute("ALTER TABLE employee ADD COLUMN email TEXT", &[])?;
        Ok(())
    }
}

struct FailingUpgrade;

impl OpenCallback for FailingUpgrade {
    fn on_create(&self, _tx: &Transaction<'_>) -> Result<(), RdbError> {
        unreachable!("the store exists")
    }
    fn on_upgrade(&self, tx: &Transaction<'_>, _old: u32, _new: u32) -> Result<(), RdbError> {
        tx.execute("ALTER TABLE employee ADD COLUMN half_done TEXT", &[])?;
        Err(RdbError::Callback { path: tx.path.to_owned(), why: "migration failed".into() })
    }
}

#[test]
fn versions_upgrade_once_and_downgrades_are_refused() {
    let d = tempfile::tempdir().unwrap();
    drop(staffed(d.path()));
    let cfg = StoreConfig::new(d.path().join("rdb.db"));
    assert!(matches!(RdbStore::open(&cfg, 2, &FailingUpgrade), Err(RdbError::Callback { .. })));
    let s = RdbStore::open(&cfg, 1, &Schema).unwrap();
    assert_eq!(s.version().unwrap(), 1, "a failed upgrade changed nothing");
    assert!(s.insert("employee", &ValuesBucket::new().put("name", "x").put("half_done", "y")).is_err());
    drop(s);
    let v = Versions { upgrades: AtomicU32::new(0) };
    let s = RdbStore::open(&cfg, 2, &v).unwrap();
    drop(s);
    let s = RdbStore::open(&cfg, 2, &v).unwrap();
    assert_eq!(v.upgrades.load(Ordering::Relaxed), 1);
    assert_eq!(s.version().unwrap(), 2);
    s.insert("employee", &ValuesBucket::new().put("name", "x").put("email", "x@example.org")).unwrap();
    drop(s);
    let e = RdbStore::open(&cfg, 1, &Schema).err().expect("refused");
    assert!(matches!(e, RdbError::VersionTooNew { stored: 2, asked: 1, .. }), "{e}");
}

#[test]
fn a_security_level_is_never_lowered() {
    let d = tempfile::tempdir().unwrap();
    let cfg = StoreConfig::new(d.path().join("s.db")).security_level(SecurityLevel::S3);
    drop(RdbStore::open(&cfg, 1, &Schema).unwrap());
    let low = cfg.clone().security_level(SecurityLevel::S2);
    let e = RdbStore::open(&low, 1, &Schema).err().expect("refused");
    assert!(matches!(e, RdbError::SecurityLevelDowngrade { stored: 3, asked: 2, .. }), "{e}");
    drop(RdbStore::open(&cfg.clone().security_level(SecurityLevel::S4), 1, &Schema).unwrap());
    assert!(RdbStore::open(&cfg, 1, &Schema).is_err(), "S4 now");
    let mode = fs::metadata(d.path().join("s.db")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn backup_and_restore() {
    let d = tempfile::tempdir().unwrap();
    let s = staffed(d.path());
    let bak = d.path().join("copy.db");
    s.backup(&bak).unwrap();
    s.delete(&RdbPredicates::new("employee")).unwrap();
    s.insert("employee", &person("only", 1, None)).unwrap();
    // A reader open before the restore sees the restored rows after it.
    drop(s.query(&RdbPredicates::new("employee"), &[]).unwrap());
    s.restore(&bak).unwrap();
    let mut rs = s.query(&RdbPredicates::new("employee").order_by_asc("id"), &[]).unwrap();
    assert_eq!(names(&mut rs), ["ann", "bob", "cat", "dan", "eve", "Ann2"]);
    drop(rs);
    // A damaged or missing backup is refused; the store is untouched.
    let mut bytes = fs::read(&bak).unwrap();
    bytes[100..4096].fill(0x5a);
    let broken = d.path().join("broken.db");
    fs::write(&broken, &bytes).unwrap();
    assert!(s.restore(&broken).is_err());
    assert!(s.restore(&d.path().join("absent.db")).is_err());
    assert!(!d.path().join("absent.db").exists(), "restore never creates its source");
    assert_eq!(s.query(&RdbPredicates::new("employee"), &[]).unwrap().row_count().unwrap(), 6);
    assert_eq!(s.integrity_check().unwrap(), Ok(()));
}

#[test]
fn a_damaged_file_is_named_and_left_alone() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("rdb.db");
    fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let e = RdbStore::open(&StoreConfig::new(&path), 1, &Schema).err().expect("refused");
    assert!(matches!(&e, RdbError::Corrupted { path: p, .. } if *p == path), "{e}");
    assert_eq!(fs::read(&path).unwrap(), vec![0x42u8; 8192]);
}

#[test]
fn readers_run_beside_the_writer() {
    let d = tempfile::tempdir().unwrap();
    let s = Arc::new(open(d.path()));
    std::thread::scope(|sc| {
        let w = s.clone();
        sc.spawn(move || {
            for i in 0..200 {
                w.insert("employee", &person("w", i, None)).unwrap();
            }
        });
        for _ in 0..6 {
            let r = s.clone();
            sc.spawn(move || {
                let mut last = 0;
                for _ in 0..50 {
                    let mut rs = r.query(&RdbPredicates::new("employee"), &["id"]).unwrap();
                    let n = rs.row_count().unwrap();
                    assert!(n >= last, "rows went from {last} to {n}");
                    last = n;
                }
            });
        }
    });
    assert_eq!(s.query(&RdbPredicates::new("employee"), &[]).unwrap().row_count().unwrap(), 200);
    assert!(s.pool.idle.lock().unwrap().1 <= 4, "at most four readers");
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::Integer),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::Real),
        ".{0,24}".prop_map(Value::Text),
        prop::collection::vec(any::<u8>(), 0..48).prop_map(Value::Blob),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_value_round_trips_and_matches_itself(v in value()) {
        let d = tempfile::tempdir().unwrap();
        let s = RdbStore::open(&StoreConfig::new(d.path().join("p.db")), 1, &Untyped).unwrap();
        s.insert("t", &ValuesBucket::new().put("v", v.clone())).unwrap();
        let p = if v == Value::Null { RdbPredicates::new("t").is_null("v") } else { RdbPredicates::new("t").equal_to("v", v.clone()) };
        let mut rs = s.query(&p, &["v"]).unwrap();
        let row = rs.next_row().unwrap().map(<[Value]>::to_vec);
        prop_assert_eq!(row, Some(vec![v]));
    }

    #[test]
    fn any_chain_of_calls_is_sql_or_a_named_error(calls in prop::collection::vec((0u8..12, "[a-z\"; ]{0,6}", value()), 0..10)) {
        let d = tempfile::tempdir().unwrap();
        let s = RdbStore::open(&StoreConfig::new(d.path().join("p.db")), 1, &Untyped).unwrap();
        let mut p = RdbPredicates::new("t");
        for (op, col, v) in calls {
            p = match op {
                0 => p.equal_to(&col, v),
                1 => p.like(&col, "%a%"),
                2 => p.between(&col, v.clone(), v),
                3 => p.in_values(&col, [v]),
                4 => p.is_null(&col),
                5 => p.or(),
                6 => p.and(),
                7 => p.begin_wrap(),
                8 => p.end_wrap(),
                9 => p.order_by_desc(&col),
                10 => p.limit(3),
                _ => p.group_by(&[&col]),
            };
        }
        match s.query(&p, &[]) {
            Ok(_) | Err(RdbError::InvalidPredicates(_)) | Err(RdbError::InvalidIdentifier(_)) => {}
            Err(RdbError::Sqlite { source, .. }) => {
                // Only a column that does not exist may get this far.
                prop_assert!(source.to_string().contains("no such column"), "{}", source);
            }
            Err(other) => prop_assert!(false, "{}", other),
        }
    }
}

struct Untyped;

impl OpenCallback for Untyped {
    fn on_create(&self, tx: &Transaction<'_>) -> Result<(), RdbError> {
        tx.execute("CREATE TABLE t(v)", &[])?;
        Ok(())
    }
}
