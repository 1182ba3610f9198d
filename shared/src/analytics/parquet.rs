//! The Parquet side of the sink: the schema of a row type and the encoding of a file.

use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

use super::{AnalyticsRow, Column, ColumnType, Value};

pub fn schema<R: AnalyticsRow>(topic: &str) -> anyhow::Result<Type> {
    use parquet::basic::{LogicalType, Repetition, TimeUnit, Type as Physical};
    let mut columns = R::columns();
    columns.push(Column::required("kafka_partition", ColumnType::Int32));
    columns.push(Column::required("kafka_offset", ColumnType::Int64));
    let fields = columns
        .iter()
        .map(|c| {
            let (physical, logical) = match c.ty {
                ColumnType::Utf8 => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
                ColumnType::Int32 => (Physical::INT32, None),
                ColumnType::Int64 => (Physical::INT64, None),
                ColumnType::Double => (Physical::DOUBLE, None),
                ColumnType::Bool => (Physical::BOOLEAN, None),
                ColumnType::TimestampMillis => (
                    Physical::INT64,
                    Some(LogicalType::timestamp(true, TimeUnit::MILLIS)),
                ),
            };
            let repetition = if c.optional {
                Repetition::OPTIONAL
            } else {
                Repetition::REQUIRED
            };
            Type::primitive_type_builder(c.name, physical)
                .with_logical_type(logical)
                .with_repetition(repetition)
                .build()
                .map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let name: String = topic
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    Ok(Type::group_type_builder(&name)
        .with_fields(fields)
        .build()?)
}

/// `rows` (the table's cells, then `kafka_partition` and `kafka_offset`) as one Parquet file
/// with one row group, Snappy-compressed.
pub fn encode(
    schema: &Arc<Type>,
    columns: &[Column],
    rows: &[Vec<Value>],
) -> anyhow::Result<Vec<u8>> {
    let file: Vec<u8> = Vec::new();
    let properties = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let mut writer = SerializedFileWriter::new(file, Arc::clone(schema), properties)?;
    let mut group = writer.next_row_group()?;
    let mut index = 0;
    let extra = [
        Column::required("kafka_partition", ColumnType::Int32),
        Column::required("kafka_offset", ColumnType::Int64),
    ];
    let all: Vec<&Column> = columns.iter().chain(extra.iter()).collect();
    while let Some(mut column) = group.next_column()? {
        let spec = all[index];
        let cells = rows.iter().map(|row| &row[index]);
        let definition: Vec<i16> = cells
            .clone()
            .map(|v| i16::from(!matches!(v, Value::Null)))
            .collect();
        let levels = spec.optional.then_some(definition.as_slice());
        // The non-null cells of the column, as the writer's type.
        fn cells_as<'r, T>(
            cells: impl Iterator<Item = &'r Value>,
            name: &str,
            extract: impl Fn(&Value) -> Option<T>,
        ) -> anyhow::Result<Vec<T>> {
            cells
                .filter(|v| !matches!(v, Value::Null))
                .map(|v| {
                    extract(v).ok_or_else(|| {
                        anyhow::anyhow!("column {name} holds a value of another type")
                    })
                })
                .collect()
        }
        let name = spec.name;
        match spec.ty {
            ColumnType::Utf8 => {
                let values = cells_as(cells, name, |v| match v {
                    Value::Utf8(s) => Some(ByteArray::from(s.as_str())),
                    _ => None,
                })?;
                column
                    .typed::<ByteArrayType>()
                    .write_batch(&values, levels, None)?;
            }
            ColumnType::Int32 => {
                let values = cells_as(cells, name, |v| match v {
                    Value::Int32(n) => Some(*n),
                    _ => None,
                })?;
                column
                    .typed::<Int32Type>()
                    .write_batch(&values, levels, None)?;
            }
            ColumnType::Int64 | ColumnType::TimestampMillis => {
                let values = cells_as(cells, name, |v| match v {
                    Value::Int64(n) | Value::TimestampMillis(n) => Some(*n),
                    _ => None,
                })?;
                column
                    .typed::<Int64Type>()
                    .write_batch(&values, levels, None)?;
            }
            ColumnType::Double => {
                let values = cells_as(cells, name, |v| match v {
                    Value::Double(n) => Some(*n),
                    _ => None,
                })?;
                column
                    .typed::<DoubleType>()
                    .write_batch(&values, levels, None)?;
            }
            ColumnType::Bool => {
                let values = cells_as(cells, name, |v| match v {
                    Value::Bool(b) => Some(*b),
                    _ => None,
                })?;
                column
                    .typed::<BoolType>()
                    .write_batch(&values, levels, None)?;
            }
        }
        column.close()?;
        index += 1;
    }
    group.close()?;
    Ok(writer.into_inner()?)
}

#[cfg(test)]
mod tests {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;

    use super::*;

    #[derive(serde::Deserialize)]
    struct Row;

    impl AnalyticsRow for Row {
        fn columns() -> Vec<Column> {
            vec![
                Column::required("name", ColumnType::Utf8),
                Column::optional("score", ColumnType::Double),
            ]
        }
        fn values(&self) -> Vec<Value> {
            Vec::new()
        }
        fn event_time(&self) -> chrono::DateTime<chrono::Utc> {
            chrono::Utc::now()
        }
    }

    #[test]
    fn a_file_reads_back_with_its_nulls_and_kafka_columns() {
        let schema = Arc::new(schema::<Row>("ws1.t-1").unwrap());
        let rows = vec![
            vec![
                Value::Utf8("a".into()),
                Value::Double(1.5),
                Value::Int32(3),
                Value::Int64(10),
            ],
            vec![
                Value::Utf8("b".into()),
                Value::Null,
                Value::Int32(3),
                Value::Int64(11),
            ],
        ];
        let bytes = encode(&schema, &Row::columns(), &rows).unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        assert_eq!(reader.metadata().file_metadata().schema().name(), "ws1_t_1");
        let read: Vec<(String, Option<f64>, i32, i64)> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|row| {
                let row = row.unwrap();
                (
                    row.get_string(0).unwrap().clone(),
                    row.get_double(1).ok(),
                    row.get_int(2).unwrap(),
                    row.get_long(3).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            read,
            [
                ("a".to_owned(), Some(1.5), 3, 10),
                ("b".to_owned(), None, 3, 11)
            ]
        );
        let wrong = vec![vec![
            Value::Int64(1),
            Value::Null,
            Value::Int32(0),
            Value::Int64(0),
        ]];
        assert!(encode(&schema, &Row::columns(), &wrong).is_err());
    }
}
