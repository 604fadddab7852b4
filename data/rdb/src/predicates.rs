//! Predicates (OpenHarmony's `RdbPredicates`): conditions on one table,
//! built by chaining, compiled to a `WHERE … ORDER BY … LIMIT …` tail whose
//! every value is a bound parameter. Column names are checked identifiers
//! (quoted when emitted), so no string a caller passes becomes SQL text.
//!
//! Conditions follow each other joined by `AND` unless `or()` comes
//! between; `begin_wrap`/`end_wrap` are parentheses. A misuse (a bad
//! column name, `or()` with nothing before it, unbalanced wraps, a negative
//! limit) is remembered and reported as [`RdbError::InvalidPredicates`]
//! when the predicates are used.

use crate::{check_identifier, quote, RdbError, Value};

/// Conditions on the rows of one table.
#[derive(Debug, Clone)]
pub struct RdbPredicates {
    table: String,
    clause: String,
    args: Vec<Value>,
    /// The next condition needs a conjunction before it.
    after_condition: bool,
    /// `or()` was the last call.
    pending_or: bool,
    wraps: i32,
    order: Vec<String>,
    group: Vec<String>,
    limit: Option<i64>,
    offset: Option<i64>,
    distinct: bool,
    error: Option<String>,
}

impl RdbPredicates {
    /// Predicates on `table` that match every row.
    pub fn new(table: &str) -> RdbPredicates {
        let error = check_identifier(table).err().map(|e| e.to_string());
        RdbPredicates {
            table: table.to_owned(),
            clause: String::new(),
            args: Vec::new(),
            after_condition: false,
            pending_or: false,
            wraps: 0,
            order: Vec::new(),
            group: Vec::new(),
            limit: None,
            offset: None,
            distinct: false,
            error,
        }
    }

    /// The table these predicates are on.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn fail(&mut self, why: String) {
        if self.error.is_none() {
            self.error = Some(why);
        }
    }

    fn column(&mut self, column: &str) -> Option<String> {
        match check_identifier(column) {
            Ok(()) => Some(quote(column)),
            Err(e) => {
                self.fail(e.to_string());
                None
            }
        }
    }

    fn joiner(&mut self) {
        if self.after_condition {
            self.clause.push_str(if self.pending_or { " OR " } else { " AND " });
        }
        self.pending_or = false;
    }

    fn condition(mut self, column: &str, op: &str, args: Vec<Value>) -> RdbPredicates {
        if let Some(c) = self.column(column) {
            self.joiner();
            self.clause.push_str(&c);
            self.clause.push_str(op);
            self.args.extend(args);
            self.after_condition = true;
        }
        self
    }

    /// `column = value`.
    pub fn equal_to(self, column: &str, value: impl Into<Value>) -> Self {
        self.condition(column, " = ?", vec![value.into()])
    }
    /// `column <> value`.
    pub fn not_equal_to(self, column: &str, value: impl Into<Value>) -> Self {
        self.condition(column, " <> ?", vec![value.into()])
    }
    /// `column > value`.
    pub fn greater_than(self, column: &str, value: impl Into<Value>) -> Self {
        self.condition(column, " > ?", vec![value.into()])
    }
    /// `column >= value`.
    pub fn greater_than_or_equal_to(self, column: &str, value: impl Into<Value>) -> Self {
        self.condition(column, " >= ?", vec![value.into()])
    }
    /// `column < value`.
    pub fn less_than(self, column: &str, value: impl Into<Value>) -> Self {
        self.condition(column, " < ?", vec![value.into()])
    }
    /// `column <= value`.
    pub fn less_than_or_equal_to(self, column: &str, value: impl Into<Value>) -> Self {
        self.condition(column, " <= ?", vec![value.into()])
    }
    /// `column LIKE pattern` (`%` and `_` are wildcards, case-insensitive
    /// for ASCII, as SQLite's LIKE).
    pub fn like(self, column: &str, pattern: &str) -> Self {
        self.condition(column, " LIKE ?", vec![pattern.into()])
    }
    /// `column GLOB pattern` (`*`, `?`, `[…]`; case-sensitive).
    pub fn glob(self, column: &str, pattern: &str) -> Self {
        self.condition(column, " GLOB ?", vec![pattern.into()])
    }
    /// `column BETWEEN low AND high` (both ends included).
    pub fn between(self, column: &str, low: impl Into<Value>, high: impl Into<Value>) -> Self {
        self.condition(column, " BETWEEN ? AND ?", vec![low.into(), high.into()])
    }
    /// `column NOT BETWEEN low AND high`.
    pub fn not_between(self, column: &str, low: impl Into<Value>, high: impl Into<Value>) -> Self {
        self.condition(column, " NOT BETWEEN ? AND ?", vec![low.into(), high.into()])
    }
    /// `column IN (values…)`; an empty list matches no row.
    pub fn in_values<V: Into<Value>>(self, column: &str, values: impl IntoIterator<Item = V>) -> Self {
        let values: Vec<Value> = values.into_iter().map(Into::into).collect();
        let marks = vec!["?"; values.len()].join(", ");
        self.condition(column, &format!(" IN ({marks})"), values)
    }
    /// `column NOT IN (values…)`; an empty list matches every row.
    pub fn not_in_values<V: Into<Value>>(self, column: &str, values: impl IntoIterator<Item = V>) -> Self {
        let values: Vec<Value> = values.into_iter().map(Into::into).collect();
        let marks = vec!["?"; values.len()].join(", ");
        self.condition(column, &format!(" NOT IN ({marks})"), values)
    }
    /// `column IS NULL`.
    pub fn is_null(self, column: &str) -> Self {
        self.condition(column, " IS NULL", Vec::new())
    }
    /// `column IS NOT NULL`.
    pub fn is_not_null(self, column: &str) -> Self {
        self.condition(column, " IS NOT NULL", Vec::new())
    }

    /// Joins the conditions before and after with `AND` (the default).
    pub fn and(mut self) -> Self {
        if !self.after_condition {
            self.fail("and() with no condition before it".into());
        }
        self.pending_or = false;
        self
    }

    /// Joins the conditions before and after with `OR`.
    pub fn or(mut self) -> Self {
        if !self.after_condition {
            self.fail("or() with no condition before it".into());
        }
        self.pending_or = true;
        self
    }

    /// Opens a parenthesis.
    pub fn begin_wrap(mut self) -> Self {
        self.joiner();
        self.clause.push('(');
        self.wraps += 1;
        self.after_condition = false;
        self
    }

    /// Closes the last parenthesis opened.
    pub fn end_wrap(mut self) -> Self {
        if self.wraps == 0 {
            self.fail("end_wrap() without begin_wrap()".into());
            return self;
        }
        if !self.after_condition {
            self.fail("an empty begin_wrap() … end_wrap()".into());
        }
        self.clause.push(')');
        self.wraps -= 1;
        self.after_condition = true;
        self
    }

    /// Orders by `column`, ascending; several calls order by each in turn.
    pub fn order_by_asc(mut self, column: &str) -> Self {
        if let Some(c) = self.column(column) {
            self.order.push(format!("{c} ASC"));
        }
        self
    }
    /// Orders by `column`, descending.
    pub fn order_by_desc(mut self, column: &str) -> Self {
        if let Some(c) = self.column(column) {
            self.order.push(format!("{c} DESC"));
        }
        self
    }
    /// Groups by `columns`.
    pub fn group_by(mut self, columns: &[&str]) -> Self {
        for c in columns {
            if let Some(c) = self.column(c) {
                self.group.push(c);
            }
        }
        self
    }
    /// At most `n` rows.
    pub fn limit(mut self, n: i64) -> Self {
        if n < 0 {
            self.fail(format!("limit {n} is negative"));
        }
        self.limit = Some(n);
        self
    }
    /// Skips the first `n` rows.
    pub fn offset(mut self, n: i64) -> Self {
        if n < 0 {
            self.fail(format!("offset {n} is negative"));
        }
        self.offset = Some(n);
        self
    }
    /// Distinct rows only.
    pub fn distinct(mut self) -> Self {
        self.distinct = true;
        self
    }

    fn check(&self) -> Result<(), RdbError> {
        if let Some(e) = &self.error {
            return Err(RdbError::InvalidPredicates(e.clone()));
        }
        if self.wraps != 0 {
            return Err(RdbError::InvalidPredicates(format!("{} begin_wrap() not closed", self.wraps)));
        }
        if self.pending_or {
            return Err(RdbError::InvalidPredicates("or() with no condition after it".into()));
        }
        Ok(())
    }

    /// The `WHERE` clause (empty when nothing is asked) and its arguments.
    pub(crate) fn where_clause(&self) -> Result<(String, &[Value]), RdbError> {
        self.check()?;
        let w = if self.clause.is_empty() { String::new() } else { format!(" WHERE {}", self.clause) };
        Ok((w, &self.args))
    }

    /// The `WHERE` clause for an update or delete: ordering, grouping,
    /// limits and `distinct` apply to queries only and are refused here
    /// rather than ignored.
    pub(crate) fn write_clause(&self) -> Result<(String, &[Value]), RdbError> {
        if !self.order.is_empty() || !self.group.is_empty() || self.limit.is_some() || self.offset.is_some() || self.distinct {
            return Err(RdbError::InvalidPredicates("order_by, group_by, limit, offset and distinct apply to queries, not to updates or deletes".into()));
        }
        self.where_clause()
    }

    /// A whole `SELECT` for `columns` (all when empty) and its arguments;
    /// limit and offset are returned apart, for the result set's pages.
    pub(crate) fn select(&self, columns: &[&str]) -> Result<(String, Vec<Value>, Option<i64>, i64), RdbError> {
        let (w, args) = self.where_clause()?;
        let cols = if columns.is_empty() {
            "*".to_owned()
        } else {
            let mut out = Vec::with_capacity(columns.len());
            for c in columns {
                check_identifier(c)?;
                out.push(quote(c));
            }
            out.join(", ")
        };
        let mut sql = format!("SELECT {}{cols} FROM {}{w}", if self.distinct { "DISTINCT " } else { "" }, quote(&self.table));
        if !self.group.is_empty() {
            sql.push_str(" GROUP BY ");
            sql.push_str(&self.group.join(", "));
        }
        if !self.order.is_empty() {
            sql.push_str(" ORDER BY ");
            sql.push_str(&self.order.join(", "));
        }
        Ok((sql, args.to_vec(), self.limit, self.offset.unwrap_or(0)))
    }
}
