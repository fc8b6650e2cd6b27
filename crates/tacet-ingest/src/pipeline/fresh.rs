//! What queries see of the events this node accepted and has not written to the lake yet.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::NaiveDate;
use tacet_lake::PartitionKey;
use tacet_model::TenantId;
use tacet_privacy::{EventBatch, Packed};

use super::Pipeline;
use crate::Result;

/// A batch of the file schema with the partition columns `kind` and `date` appended, as the lake's
/// listing table shows them.
fn with_partition_columns(
    batch: &arrow::array::RecordBatch,
    key: &PartitionKey,
) -> Result<arrow::array::RecordBatch, tacet_privacy::ArrowError> {
    use arrow::array::{ArrayRef, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let n = batch.num_rows();
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for (name, value) in [
        ("kind", key.kind.as_str().to_owned()),
        ("date", key.date.format("%Y-%m-%d").to_string()),
    ] {
        fields.push(Field::new(name, DataType::Utf8, false));
        columns.push(std::sync::Arc::new(StringArray::from(vec![value; n])));
    }
    arrow::array::RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
}

impl Pipeline {
    /// The events of `tenant` that are durable in the log but may not be in the lake yet (buffered, in a
    /// flush, or in a failed flush), as Arrow batches in the file schema plus the partition columns `kind`
    /// and `date` (one batch per partition); and the highest log sequence number every lake file at or
    /// below which holds none of them. A query that counts these events and hides the lake files whose
    /// range starts above that number counts every event once, whatever flushes run meanwhile.
    pub fn buffered_snapshot(
        &self,
        tenant: &TenantId,
    ) -> Result<(Vec<arrow::array::RecordBatch>, u64)> {
        let (parts, threshold) = {
            let st = self.state.lock().expect("pipeline lock");
            // The buffer's partitions are copied (bytes, a memcpy each); a flush's are shared.
            let mut parts: Vec<(PartitionKey, Arc<Packed>)> = st
                .buffer
                .partitions
                .iter()
                .filter(|(k, _)| k.tenant == *tenant)
                .map(|(k, v)| (k.clone(), Arc::new(v.clone())))
                .collect();
            let mut threshold = self.wal.checkpoint().persisted;
            if let Some(p) = &st.pending {
                threshold = threshold.min(p.from.saturating_sub(1));
                parts.extend(
                    p.partitions
                        .iter()
                        .filter(|(k, _, _)| k.tenant == *tenant)
                        .map(|(k, v, _)| (k.clone(), Arc::clone(v))),
                );
            }
            if let Some((from, flight)) = &st.in_flight {
                threshold = threshold.min(from.saturating_sub(1));
                parts.extend(
                    flight
                        .iter()
                        .filter(|(k, _)| k.tenant == *tenant)
                        .map(|(k, v)| (k.clone(), Arc::clone(v))),
                );
            }
            (parts, threshold)
        };
        let batches = parts
            .into_iter()
            .map(|(key, events)| {
                let batch = EventBatch::from_packed(&events)?;
                Ok(with_partition_columns(batch.record_batch(), &key)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((batches, threshold))
    }

    /// The UTC days of the tenant's events `buffered_snapshot` would return, without building them.
    pub fn buffered_days(&self, tenant: &TenantId) -> BTreeSet<NaiveDate> {
        let st = self.state.lock().expect("pipeline lock");
        let mut days: BTreeSet<NaiveDate> = st
            .buffer
            .partitions
            .keys()
            .filter(|k| k.tenant == *tenant)
            .map(|k| k.date)
            .collect();
        if let Some(p) = &st.pending {
            days.extend(
                p.partitions
                    .iter()
                    .filter(|(k, _, _)| k.tenant == *tenant)
                    .map(|(k, _, _)| k.date),
            );
        }
        if let Some((_, flight)) = &st.in_flight {
            days.extend(
                flight
                    .iter()
                    .filter(|(k, _)| k.tenant == *tenant)
                    .map(|(k, _)| k.date),
            );
        }
        days
    }
}
