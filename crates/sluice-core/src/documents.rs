//! Rows as search-engine documents: the JSON body of each row and the
//! metadata columns (`_id`, `_source`) as text, shared by the document
//! sinks and by `verify`, which compares documents the way they are written.

use arrow::array::{AsArray, RecordBatch, StringArray};
use arrow::datatypes::DataType;

/// Each row's columns other than the document metadata columns
/// ([`crate::reserved::ALL`]) as a JSON object per row.
pub fn row_documents(data: &RecordBatch) -> arrow::error::Result<Vec<Vec<u8>>> {
    let keep: Vec<usize> = (0..data.num_columns())
        .filter(|&i| !crate::reserved::ALL.contains(&data.schema().field(i).name().as_str()))
        .collect();
    let projected = data.project(&keep)?;
    let mut buf = Vec::with_capacity(projected.get_array_memory_size());
    {
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut buf);
        writer.write(&projected)?;
        writer.finish()?;
    }
    let mut lines: Vec<Vec<u8>> = buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    lines.resize(data.num_rows(), b"{}".to_vec());
    Ok(lines)
}

/// Column `name` of `data` as text, whatever its type (a numeric `_id`, a
/// `_source` read as large strings); `None` when there is no such column.
pub fn text_column(data: &RecordBatch, name: &str) -> arrow::error::Result<Option<StringArray>> {
    match data.column_by_name(name) {
        Some(a) => Ok(Some(
            arrow::compute::cast(a, &DataType::Utf8)?.as_string::<i32>().clone(),
        )),
        None => Ok(None),
    }
}
