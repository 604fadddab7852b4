//! Result sets (OpenHarmony's `ResultSet`): a cursor over a query's rows
//! that holds one page in memory ([`PAGE_ROWS`] rows or [`PAGE_BYTES`] of
//! values, whichever comes first) and reads the next when the cursor moves
//! past it. Every page and [`ResultSet::row_count`] see the same snapshot
//! of the store however the writer changes it meanwhile: a result whose
//! first page holds every row is that one statement's snapshot and gives
//! its reader back at once; one with more rows keeps a reader and a read
//! transaction on it (its first page read again inside it), which
//! dropping the result set ends.

use std::sync::Arc;

use rusqlite::{params_from_iter, Connection};

use crate::{sql_err, Pool, RdbError, Value, PAGE_BYTES, PAGE_ROWS};

/// A cursor over the rows of a query.
pub struct ResultSet {
    pool: Arc<Pool>,
    conn: Option<Connection>,
    sql: String,
    args: Vec<Value>,
    /// The query's own limit and offset.
    limit: Option<i64>,
    offset: i64,
    columns: Vec<String>,
    /// The page's rows, one after the other (`width` values each).
    page: Vec<Value>,
    width: usize,
    /// Row number of `page[0]`.
    page_start: usize,
    /// The number of rows, once known.
    total: Option<usize>,
    /// The cursor's row; `None` before the first.
    pos: Option<usize>,
    /// Whether `conn` holds a read transaction of ours.
    in_txn: bool,
}

impl ResultSet {
    pub(crate) fn start(pool: Arc<Pool>, sql: String, args: Vec<Value>, limit: Option<i64>, offset: i64) -> Result<ResultSet, RdbError> {
        let conn = pool.take()?;
        let mut rs = ResultSet {
            conn: Some(conn),
            sql,
            args,
            limit,
            offset,
            columns: Vec::new(),
            page: Vec::new(),
            width: 0,
            page_start: 0,
            total: None,
            pos: None,
            pool,
            in_txn: false,
        };
        // One statement reads one snapshot: a first page that holds every
        // row needs no transaction, and its reader goes back now.
        rs.load(0)?;
        if rs.total.is_some() {
            if let Some(c) = rs.conn.take() {
                rs.pool.give_back(c);
            }
            return Ok(rs);
        }
        // More pages to come: they must agree with the first, so it is
        // read again inside a read transaction they all share.
        if let Some(c) = rs.conn.as_ref() {
            c.prepare_cached("BEGIN").and_then(|mut st| st.execute([])).map_err(sql_err(&rs.pool.path))?;
            rs.in_txn = true;
        }
        rs.load(0)?;
        Ok(rs)
    }

    /// Reads the page starting at row `start`.
    fn load(&mut self, start: usize) -> Result<(), RdbError> {
        let path = self.pool.path.clone();
        let e = sql_err(&path);
        let Some(conn) = self.conn.as_ref() else { return Ok(()) };
        let mut want = PAGE_ROWS as i64;
        if let Some(l) = self.limit {
            want = want.min(l - start as i64).max(0);
        }
        if want == 0 && !self.columns.is_empty() {
            // Past the query's own limit: nothing to ask SQLite (and no
            // total learnt: the query may have fewer rows than its limit).
            self.page.clear();
            self.page_start = start;
            return Ok(());
        }
        // The window is written as numbers of ours, not bound: SQLite plans
        // `ORDER BY … LIMIT 20` as a top-20 and a bound `LIMIT ?` as a whole
        // sort (2x slower on the bench's query).
        let sql = format!("{} LIMIT {want} OFFSET {}", self.sql, self.offset.saturating_add(start as i64));
        let mut st = conn.prepare_cached(&sql).map_err(&e)?;
        if self.columns.is_empty() {
            self.columns = st.column_names().into_iter().map(str::to_owned).collect();
        }
        let n = st.column_count();
        self.width = n;
        if want == 0 {
            // A query of no rows (`limit(0)`): prepared for its column
            // names only.
            if start == 0 {
                self.total = Some(0);
            }
            self.page.clear();
            self.page_start = start;
            return Ok(());
        }
        let mut rows = st.query(params_from_iter(&self.args)).map_err(&e)?;
        let mut page = std::mem::take(&mut self.page);
        page.clear();
        let mut bytes = 0;
        let mut cut = false;
        while let Some(r) = rows.next().map_err(&e)? {
            for i in 0..n {
                let v = Value::from(r.get_ref(i).map_err(&e)?);
                bytes += v.size();
                page.push(v);
            }
            if bytes >= PAGE_BYTES {
                cut = true;
                break;
            }
        }
        let got = page.len().checked_div(n).unwrap_or(0);
        // A short page ends the rows, unless it is empty past the start
        // (a jump beyond the end says nothing of where the end is).
        // A page that reaches the query's own limit ends the rows too.
        let at_limit = self.limit.is_some_and(|l| (start + got) as i64 == l);
        if !cut && (((got as i64) < want && (got > 0 || start == 0)) || at_limit) {
            self.total = Some(start + got);
        }
        self.page = page;
        self.page_start = start;
        Ok(())
    }

    /// Rows held in memory now.
    pub(crate) fn rows_in_page(&self) -> usize {
        self.page.len().checked_div(self.width).unwrap_or(0)
    }

    /// The result's column names.
    pub fn column_names(&self) -> &[String] {
        &self.columns
    }

    /// The index of column `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Moves the cursor to row `row` (from 0); false (and the cursor past
    /// the end) when there is no such row.
    pub fn go_to_row(&mut self, row: usize) -> Result<bool, RdbError> {
        if self.total.is_some_and(|t| row >= t) || self.limit.is_some_and(|l| row as i64 >= l) {
            self.pos = None;
            return Ok(false);
        }
        if row < self.page_start || row >= self.page_start + self.rows_in_page() {
            self.load(row)?;
        }
        if row < self.page_start + self.rows_in_page() {
            self.pos = Some(row);
            Ok(true)
        } else {
            self.pos = None;
            Ok(false)
        }
    }

    /// Moves to the first row; false if there are none.
    pub fn go_to_first_row(&mut self) -> Result<bool, RdbError> {
        self.go_to_row(0)
    }

    /// Moves to the next row (the first, before any); false past the last.
    pub fn go_to_next_row(&mut self) -> Result<bool, RdbError> {
        self.go_to_row(self.pos.map_or(0, |p| p + 1))
    }

    /// The next row, moving the cursor: `None` past the last.
    pub fn next_row(&mut self) -> Result<Option<&[Value]>, RdbError> {
        Ok(if self.go_to_next_row()? { self.row() } else { None })
    }

    /// The cursor's row number.
    pub fn position(&self) -> Option<usize> {
        self.pos
    }

    /// The row under the cursor.
    pub fn row(&self) -> Option<&[Value]> {
        let p = self.pos?.checked_sub(self.page_start)?;
        self.page.get(p * self.width..(p + 1) * self.width)
    }

    /// Column `index` of the row under the cursor.
    pub fn get(&self, index: usize) -> Option<&Value> {
        self.row()?.get(index)
    }

    /// How many rows the query has (counted in the same snapshot).
    pub fn row_count(&mut self) -> Result<usize, RdbError> {
        if let Some(t) = self.total {
            return Ok(t);
        }
        let path = self.pool.path.clone();
        let Some(conn) = self.conn.as_ref() else { return Ok(0) };
        let n: i64 = conn
            .prepare_cached(&format!("SELECT count(*) FROM ({})", self.sql))
            .and_then(|mut st| st.query_row(params_from_iter(&self.args), |r| r.get(0)))
            .map_err(sql_err(&path))?;
        let mut n = (n - self.offset).max(0);
        if let Some(l) = self.limit {
            n = n.min(l);
        }
        let n = n as usize;
        self.total = Some(n);
        Ok(n)
    }
}

impl Drop for ResultSet {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            if self.in_txn {
                let _ = c.prepare_cached("ROLLBACK").and_then(|mut st| st.execute([]));
            }
            self.pool.give_back(c);
        }
    }
}
