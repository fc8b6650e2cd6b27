//! Crash groups as people triage them: `tacet_group(fingerprint, stack)`, the group a crash belongs to once
//! its tenant's merges and splits apply.
//!
//! A fingerprint groups crashes by their normalised top frames (tacet-privacy's `fingerprint.rs`); that is
//! right most of the time, and the rest is what triage fixes:
//!
//! - **merge**: group `a` is the same bug as group `b` (`a → b`): every crash of `a` counts as `b`'s. The
//!   same serves crashes that arrived before their release's source map, whose minified frames made a
//!   fingerprint of their own: merged into the symbolicated group, both paths end in one group.
//! - **split**: group `g` holds two bugs, told apart by a frame: crashes of `g` (merged-in ones included)
//!   with a frame containing `text` become a group of their own, whose fingerprint is derived from `g` and
//!   `text` ([`split_fingerprint`], 16 hex characters like any other); merges apply to it as to any group.
//!
//! Every crash report groups and filters by `tacet_group(fingerprint, stack)` instead of `fingerprint`;
//! the stored column is never rewritten (raw SQL sees it as it came, and may call the function). A tenant
//! with no rules gets the identity: the column, untouched. The rules come from the tenant's triage marks
//! (tacet-server) through [`crate::ReportScope::groups`]. Daily rollups of crashes (days whose raw crashes
//! expired) are kept by stored fingerprint: merges apply to them, splits cannot (they hold no stacks).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, cast,
};

/// The function's name in SQL.
pub const NAME: &str = "tacet_group";

/// Merge chains longer than this are cut (a cycle written by hand into the triage file ends here).
const MAX_HOPS: usize = 16;

/// One tenant's merges and splits.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash)]
pub struct CrashGroups {
    /// fingerprint → the group it was merged into.
    merged: BTreeMap<String, String>,
    /// fingerprint → frame texts that split crashes off it, in the order they were added.
    splits: BTreeMap<String, Vec<String>>,
}

/// The fingerprint of the group split off `fingerprint` by frames containing `frame`.
pub fn split_fingerprint(fingerprint: &str, frame: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("tacet split\n{fingerprint}\n{frame}"));
    hex::encode(&digest[..8])
}

impl CrashGroups {
    pub fn new(merged: BTreeMap<String, String>, splits: BTreeMap<String, Vec<String>>) -> Self {
        Self { merged, splits }
    }

    pub fn is_empty(&self) -> bool {
        self.merged.is_empty() && self.splits.is_empty()
    }

    /// The group of a crash with `fingerprint` and `stack` frames: merges first (a split applies to the
    /// group as people see it, merged-in crashes included), then the group's splits, then merges of the
    /// split-off group.
    pub fn resolve<'a>(
        &self,
        fingerprint: &str,
        stack: impl IntoIterator<Item = &'a str>,
    ) -> String {
        let group = self.merged_group(fingerprint);
        let Some(texts) = self.splits.get(&group) else {
            return group;
        };
        let frames: Vec<&str> = stack.into_iter().collect();
        match texts
            .iter()
            .find(|t| frames.iter().any(|f| f.contains(t.as_str())))
        {
            Some(text) => self.merged_group(&split_fingerprint(&group, text)),
            None => group,
        }
    }

    /// Where merges take `fingerprint` (itself when it was never merged).
    pub fn merged_group(&self, fingerprint: &str) -> String {
        let mut fp = fingerprint;
        for _ in 0..MAX_HOPS {
            match self.merged.get(fp) {
                Some(next) => fp = next,
                None => break,
            }
        }
        fp.to_owned()
    }

    /// The groups merged into `group` (directly or through others).
    pub fn merged_into(&self, group: &str) -> Vec<String> {
        self.merged
            .keys()
            .filter(|from| from.as_str() != group && self.merged_group(from) == group)
            .cloned()
            .collect()
    }

    /// The function for a session, with these rules.
    pub fn udf(self: &Arc<Self>) -> ScalarUDF {
        ScalarUDF::new_from_impl(GroupFn {
            rules: Arc::clone(self),
            signature: Signature::any(2, Volatility::Immutable),
        })
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct GroupFn {
    rules: Arc<CrashGroups>,
    signature: Signature,
}

impl ScalarUDFImpl for GroupFn {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    /// Without rules the group is the fingerprint: the planner puts the column itself in the call's place,
    /// so a crash report reads no stack (a list of strings, most of a crash file's bytes).
    fn simplify(&self, mut args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        if !self.rules.is_empty() || args.len() != 2 {
            return Ok(ExprSimplifyResult::Original(args));
        }
        let fingerprint = args.swap_remove(0);
        Ok(ExprSimplifyResult::Simplified(cast(
            fingerprint,
            DataType::Utf8,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [fingerprint, stack] = &args.args[..] else {
            return exec_err!("{NAME}(fingerprint, stack) takes two arguments");
        };
        let rows = args.number_rows;
        let fingerprint = fingerprint.to_array(rows)?;
        let fingerprint = arrow::compute::cast(&fingerprint, &DataType::Utf8)?;
        if self.rules.is_empty() {
            return Ok(ColumnarValue::Array(fingerprint));
        }
        let fps: &StringArray = fingerprint.as_string::<i32>();
        let stack = stack.to_array(rows)?;
        let frames = |i: usize| -> Vec<String> {
            match stack.data_type() {
                DataType::List(_) => {
                    let list = stack.as_list::<i32>();
                    if list.is_null(i) {
                        return Vec::new();
                    }
                    let values = list.value(i);
                    match arrow::compute::cast(&values, &DataType::Utf8) {
                        Ok(v) => v
                            .as_string::<i32>()
                            .iter()
                            .flatten()
                            .map(str::to_owned)
                            .collect(),
                        Err(_) => Vec::new(),
                    }
                }
                _ => Vec::new(),
            }
        };
        let mut out = StringBuilder::with_capacity(rows, rows * 16);
        for i in 0..rows {
            if fps.is_null(i) {
                out.append_null();
                continue;
            }
            let group = self.rules.merged_group(fps.value(i));
            if self.rules.splits.contains_key(&group) {
                let f = frames(i);
                out.append_value(self.rules.resolve(&group, f.iter().map(String::as_str)));
            } else {
                out.append_value(group);
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tenant without rules reads no stack: the call is planned away; with a split the stack is read, and
    /// both give each crash its group.
    #[tokio::test]
    async fn without_rules_the_stack_is_not_read() {
        use arrow::array::{ListBuilder, RecordBatch};
        use datafusion::prelude::SessionContext;
        let mut stack = ListBuilder::new(StringBuilder::new());
        for frames in [&["at a (x.js:1:1)"][..], &["at checkout (y.js:2:2)"], &[]] {
            for f in frames {
                stack.values().append_value(f);
            }
            stack.append(true);
        }
        let fingerprint: ArrayRef = Arc::new(StringArray::from(vec![
            Some("aaaaaaaaaaaaaaaa"),
            Some("dddddddddddddddd"),
            None,
        ]));
        let batch = RecordBatch::try_from_iter([
            ("fingerprint", fingerprint),
            ("stack", Arc::new(stack.finish()) as ArrayRef),
        ])
        .unwrap();
        let split = CrashGroups::new(
            BTreeMap::new(),
            [("dddddddddddddddd".into(), vec!["at checkout".into()])].into(),
        );
        let expected_split = split_fingerprint("dddddddddddddddd", "at checkout");
        for (rules, reads_stack, second) in [
            (CrashGroups::default(), false, "dddddddddddddddd".to_owned()),
            (split, true, expected_split),
        ] {
            let ctx = SessionContext::new();
            ctx.register_batch("crashes", batch.clone()).unwrap();
            ctx.register_udf(Arc::new(rules).udf());
            let df = ctx
                .sql("SELECT tacet_group(fingerprint, stack) AS g FROM crashes")
                .await
                .unwrap();
            let plan = df.clone().into_optimized_plan().unwrap();
            let scan = plan.display_indent().to_string();
            assert_eq!(scan.contains("stack"), reads_stack, "{scan}");
            let rows = df.collect().await.unwrap();
            let groups: Vec<Option<&str>> = rows[0].column(0).as_string::<i32>().iter().collect();
            assert_eq!(
                groups,
                [Some("aaaaaaaaaaaaaaaa"), Some(second.as_str()), None]
            );
        }
    }

    #[test]
    fn merges_follow_chains_and_splits_apply_to_the_merged_group() {
        let groups = CrashGroups::new(
            [
                ("aaaaaaaaaaaaaaaa".into(), "bbbbbbbbbbbbbbbb".into()),
                ("bbbbbbbbbbbbbbbb".into(), "cccccccccccccccc".into()),
                // A cycle written by hand ends after MAX_HOPS.
                ("1111111111111111".into(), "2222222222222222".into()),
                ("2222222222222222".into(), "1111111111111111".into()),
            ]
            .into(),
            [("dddddddddddddddd".into(), vec!["at checkout".into()])].into(),
        );
        assert_eq!(groups.merged_group("aaaaaaaaaaaaaaaa"), "cccccccccccccccc");
        assert_eq!(groups.merged_group("eeeeeeeeeeeeeeee"), "eeeeeeeeeeeeeeee");
        assert_eq!(
            groups.merged_into("cccccccccccccccc"),
            ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"]
        );
        let cycle = groups.merged_group("1111111111111111");
        assert!(cycle == "1111111111111111" || cycle == "2222222222222222");
        let split = split_fingerprint("dddddddddddddddd", "at checkout");
        assert_eq!(split.len(), 16);
        assert_eq!(
            groups.resolve(
                "dddddddddddddddd",
                ["at pay (a.js:1:1)", "at checkout (c.js:9:9)"]
            ),
            split
        );
        assert_eq!(
            groups.resolve("dddddddddddddddd", ["at pay (a.js:1:1)"]),
            "dddddddddddddddd"
        );
        // A crash merged into a split group is split like the group's own.
        let merged_then_split = CrashGroups::new(
            [("ffffffffffffffff".into(), "dddddddddddddddd".into())].into(),
            [("dddddddddddddddd".into(), vec!["at checkout".into()])].into(),
        );
        assert_eq!(
            merged_then_split.resolve("ffffffffffffffff", ["at checkout (c.js:1:1)"]),
            split
        );
    }

    #[tokio::test]
    async fn groups_in_sql_and_the_identity_without_rules() {
        use datafusion::prelude::SessionContext;
        let sql = "SELECT tacet_group(fp, stack) AS g FROM (VALUES
                ('aaaaaaaaaaaaaaaa', make_array('at a')),
                ('dddddddddddddddd', make_array('at x', 'at checkout (c.js:1:1)')),
                ('dddddddddddddddd', make_array('at x')),
                (NULL, make_array('at y'))) AS t(fp, stack)";
        let run = |groups: CrashGroups| async move {
            let ctx = SessionContext::new();
            ctx.register_udf(Arc::new(groups).udf());
            let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
            batches
                .iter()
                .flat_map(|b| {
                    let col = b.column(0).as_string::<i32>().clone();
                    (0..col.len())
                        .map(|i| (!col.is_null(i)).then(|| col.value(i).to_owned()))
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            run(CrashGroups::default()).await,
            [
                Some("aaaaaaaaaaaaaaaa".to_owned()),
                Some("dddddddddddddddd".to_owned()),
                Some("dddddddddddddddd".to_owned()),
                None
            ]
        );
        let rules = CrashGroups::new(
            [("aaaaaaaaaaaaaaaa".into(), "bbbbbbbbbbbbbbbb".into())].into(),
            [("dddddddddddddddd".into(), vec!["at checkout".into()])].into(),
        );
        assert_eq!(
            run(rules).await,
            [
                Some("bbbbbbbbbbbbbbbb".to_owned()),
                Some(split_fingerprint("dddddddddddddddd", "at checkout")),
                Some("dddddddddddddddd".to_owned()),
                None
            ]
        );
    }
}
