//! The canned reports as set-returning functions: `SELECT * FROM report_pages('2026-11-01', '2026-11-30')`.
//!
//! The first two positional arguments are the range (`from`, `to`); every other parameter of the report API
//! is named (`report_pages('2026-11-01', '2026-11-30', country => 'DE', "limit" => '20')`), spelt as in
//! `/v1/reports/{name}?…`. Each call runs through the same path as the HTTP API (`routes::run_report`:
//! parameters checked the same way, the tenant's k-threshold applied), and its rows become an in-memory
//! table the statement reads in the call's place, so `WHERE`, `ORDER BY` and joins work on them.
//!
//! A `reports`-scoped key reaches these and nothing else: its statements may read report calls and their
//! own CTEs, never `events`.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, Ident, ObjectName, ObjectNamePart, Query, TableAlias,
    TableFactor, Value, Visit, VisitMut, Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use pgwire::error::PgWireError;

use super::error;

/// Report calls one statement may make.
pub(super) const MAX_CALLS: usize = 8;

/// The names the calls' rows are registered under (`&'static` for `QueryEngine::sql_with_tables`).
const TABLES: [&str; MAX_CALLS] = [
    "__tacet_report_1",
    "__tacet_report_2",
    "__tacet_report_3",
    "__tacet_report_4",
    "__tacet_report_5",
    "__tacet_report_6",
    "__tacet_report_7",
    "__tacet_report_8",
];

/// One `report_<name>(...)` in a statement.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Call {
    pub report: String,
    pub params: BTreeMap<String, String>,
    /// The in-memory table the statement reads in its place.
    pub table: &'static str,
}

/// A statement whose report calls were replaced by their tables.
#[derive(Debug)]
pub(super) struct Rewritten {
    pub sql: String,
    pub calls: Vec<Call>,
    /// Relations the statement reads besides the calls' tables and its own CTEs (`events`, ...).
    pub others: Vec<String>,
}

/// The report calls in `sql`, or `None` when it has none (or does not parse: the engine then says why).
pub(super) fn rewrite(sql: &str) -> Result<Option<Rewritten>, PgWireError> {
    // Most statements call no report: they are not parsed here at all (the engine parses them).
    if !sql
        .as_bytes()
        .windows(7)
        .any(|w| w.eq_ignore_ascii_case(b"report_"))
    {
        return Ok(None);
    }
    let Ok(mut statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return Ok(None);
    };
    if statements.len() != 1 {
        return Ok(None);
    }
    let mut statement = statements.remove(0);
    let mut found = Calls::default();
    if let ControlFlow::Break(e) = VisitMut::visit(&mut statement, &mut found) {
        return Err(e);
    }
    if found.calls.is_empty() {
        return Ok(None);
    }
    let mut names = Relations::default();
    let _ = Visit::visit(&statement, &mut names);
    let tables: Vec<&str> = found.calls.iter().map(|c| c.table).collect();
    let others = names
        .relations
        .into_iter()
        .filter(|r| !tables.contains(&r.as_str()) && !names.ctes.contains(r))
        .collect();
    Ok(Some(Rewritten {
        sql: statement.to_string(),
        calls: found.calls,
        others,
    }))
}

#[derive(Default)]
struct Calls {
    calls: Vec<Call>,
}

impl VisitorMut for Calls {
    type Break = PgWireError;

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<PgWireError> {
        let TableFactor::Table {
            name, args, alias, ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let Some(function) = last_ident(name) else {
            return ControlFlow::Continue(());
        };
        let Some(report) = function.strip_prefix("report_").map(str::to_owned) else {
            return ControlFlow::Continue(());
        };
        let Some(call_args) = args.take() else {
            return ControlFlow::Continue(());
        };
        let Some(&table) = TABLES.get(self.calls.len()) else {
            return ControlFlow::Break(error(
                "54000",
                format!("a statement may call at most {MAX_CALLS} reports"),
            ));
        };
        let mut params = BTreeMap::new();
        let mut positional = 0;
        for arg in call_args.args {
            let (key, expr) = match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                    positional += 1;
                    let key = match positional {
                        1 => "from",
                        2 => "to",
                        _ => {
                            return ControlFlow::Break(error(
                                "42883",
                                format!(
                                    "{function}: only the range (from, to) is given by position; name the others ({function}('2026-11-01', '2026-11-30', country => 'DE'))"
                                ),
                            ));
                        }
                    };
                    (key.to_owned(), e)
                }
                FunctionArg::Named {
                    name,
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } => (name.value.to_ascii_lowercase(), e),
                FunctionArg::ExprNamed {
                    name: Expr::Identifier(name),
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } => (name.value.to_ascii_lowercase(), e),
                other => {
                    return ControlFlow::Break(error(
                        "42883",
                        format!("{function}: the argument {other} is not a value"),
                    ));
                }
            };
            let Some(value) = literal(&expr) else {
                return ControlFlow::Break(error(
                    "22023",
                    format!(
                        "{function}: the argument {key} must be a constant (a quoted string, a number or a boolean), not {expr}"
                    ),
                ));
            };
            if params.insert(key.clone(), value).is_some() {
                return ControlFlow::Break(error(
                    "42883",
                    format!("{function}: the argument {key} is given twice"),
                ));
            }
        }
        // The statement reads the call's rows under the name it used for it.
        if alias.is_none() {
            *alias = Some(TableAlias {
                explicit: true,
                name: Ident::with_quote('"', function.clone()),
                columns: Vec::new(),
                at: None,
            });
        }
        *name = ObjectName(vec![ObjectNamePart::Identifier(Ident::new(table))]);
        self.calls.push(Call {
            report,
            params,
            table,
        });
        ControlFlow::Continue(())
    }
}

fn last_ident(name: &ObjectName) -> Option<String> {
    match name.0.last()? {
        ObjectNamePart::Identifier(i) => Some(i.value.to_ascii_lowercase()),
        _ => None,
    }
}

/// A constant argument as the text the report API takes.
fn literal(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            Value::Number(n, _) => Some(n.to_string()),
            Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        },
        Expr::Cast { expr, .. } | Expr::Nested(expr) => literal(expr),
        Expr::UnaryOp { op, expr } if op.to_string() == "-" => {
            literal(expr).map(|v| format!("-{v}"))
        }
        _ => None,
    }
}

/// Every relation a statement names, and the CTE names it defines.
#[derive(Default)]
struct Relations {
    relations: Vec<String>,
    ctes: Vec<String>,
}

impl Visitor for Relations {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        self.relations.push(
            relation
                .0
                .iter()
                .map(|p| match p {
                    ObjectNamePart::Identifier(i) => i.value.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join("."),
        );
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            self.ctes
                .extend(with.cte_tables.iter().map(|c| c.alias.name.value.clone()));
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_calls_become_tables_with_their_parameters() {
        let r = rewrite(
            "SELECT page, visitors FROM report_pages('2026-11-01', '2026-11-30', country => 'DE', \"limit\" => 5) WHERE visitors > 1",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.calls.len(), 1);
        assert_eq!(r.calls[0].report, "pages");
        assert_eq!(
            r.calls[0].params,
            BTreeMap::from([
                ("country".to_owned(), "DE".to_owned()),
                ("from".to_owned(), "2026-11-01".to_owned()),
                ("limit".to_owned(), "5".to_owned()),
                ("to".to_owned(), "2026-11-30".to_owned()),
            ])
        );
        assert_eq!(
            r.sql,
            "SELECT page, visitors FROM __tacet_report_1 AS \"report_pages\" WHERE visitors > 1"
        );
        assert!(r.others.is_empty());
        // A join with events is named, for the scope check; a CTE is not.
        let r = rewrite(
            "WITH p AS (SELECT * FROM report_pages('2026-11-01', '2026-11-30')) SELECT * FROM p JOIN events e ON e.path = p.page",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.others, ["events"]);
        assert!(rewrite("SELECT * FROM events").unwrap().is_none());
        assert!(
            rewrite("SELECT * FROM report_pages('a', 'b', 'c')").is_err(),
            "a third positional argument"
        );
        assert!(rewrite("SELECT * FROM report_pages(now())").is_err());
    }
}
