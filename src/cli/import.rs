//! Reading an import file into the objects `POST /api/api-keys/import` takes: JSON lines, a
//! JSON array, or CSV with a header row naming the same fields.

use keygate::routes::api::import::Objects;
use serde_json::{Map, Value};

/// JSON lines, or (when the file starts with `[`) a JSON array.
pub fn json_objects(text: &str) -> Objects {
    if text.trim_start().starts_with('[') {
        return match serde_json::from_str::<Vec<Value>>(text) {
            Ok(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Object(map) => (i + 1, Ok(map)),
                    _ => (i + 1, Err("expected a JSON object".to_owned())),
                })
                .collect(),
            Err(e) => vec![(1, Err(format!("not a JSON array: {e}")))],
        };
    }
    keygate::routes::api::import::json_lines(text)
}

/// CSV with a header row; line numbers are the file's (the header is line 1). Empty cells are
/// left out (so defaults apply); `null` is null; limits are numbers, `is_active` a boolean,
/// `scopes` and `ip_allowlist` lists separated by spaces, `meta` JSON, and times may use a space
/// instead of `T` (as Django and PostgreSQL print them).
pub fn csv_objects(text: &str) -> Result<Objects, String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("the CSV header: {e}"))?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let mut objects = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                objects.push((line, Err(format!("not CSV: {e}"))));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        let mut map = Map::new();
        for (name, cell) in headers.iter().zip(record.iter()) {
            if !cell.is_empty() {
                map.insert(name.clone(), cell_value(name, cell));
            }
        }
        objects.push((line, Ok(map)));
    }
    Ok(objects)
}

fn cell_value(field: &str, cell: &str) -> Value {
    if cell == "null" {
        return Value::Null;
    }
    match field {
        f if f.starts_with("rate_limit_per_") => cell
            .parse::<i64>()
            .map_or_else(|_| Value::String(cell.to_owned()), Value::from),
        "is_active" => match cell.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" | "yes" => Value::Bool(true),
            "false" | "f" | "0" | "no" => Value::Bool(false),
            _ => Value::String(cell.to_owned()),
        },
        "scopes" | "ip_allowlist" => Value::Array(
            cell.split(|c: char| c.is_whitespace() || c == ',')
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ),
        "meta" => serde_json::from_str(cell).unwrap_or_else(|_| Value::String(cell.to_owned())),
        "expires_at" | "created_at" | "last_used_at" => Value::String(rfc3339(cell)),
        _ => Value::String(cell.to_owned()),
    }
}

/// `2024-05-01 10:00:00+00` → `2024-05-01T10:00:00+00:00`; RFC 3339 as it is.
fn rfc3339(cell: &str) -> String {
    let mut text = cell.trim().replacen(' ', "T", 1);
    // A zone given as +HH (PostgreSQL) needs its minutes.
    if let Some(at) = text.rfind(['+', '-']).filter(|&at| at > 10)
        && text.len() - at == 3
    {
        text.push_str(":00");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_become_typed_fields() {
        let text = "key,owner,name,rate_limit_per_minute,is_active,scopes,created_at,meta\n\
                    abc.def,a@x.io,one,60,f,\"orders:read reports:*\",2024-05-01 10:00:00+00,\"{\"\"plan\"\":\"\"pro\"\"}\"\n\
                    ghi,a@x.io,two,,,,,\n";
        let objects = csv_objects(text).expect("csv");
        assert_eq!(objects.len(), 2);
        let (line, first) = &objects[0];
        let first = first.as_ref().expect("a row");
        assert_eq!(*line, 2);
        assert_eq!(first["rate_limit_per_minute"], 60);
        assert_eq!(first["is_active"], false);
        assert_eq!(first["scopes"], serde_json::json!(["orders:read", "reports:*"]));
        assert_eq!(first["created_at"], "2024-05-01T10:00:00+00:00");
        assert_eq!(first["meta"]["plan"], "pro");
        let second = objects[1].1.as_ref().expect("a row");
        assert!(
            !second.contains_key("rate_limit_per_minute"),
            "empty cells are left out"
        );
    }

    #[test]
    fn json_files_are_lines_or_an_array() {
        assert_eq!(json_objects("{\"a\":1}\n\n{\"b\":2}\n").len(), 2);
        assert_eq!(json_objects("[{\"a\":1},{\"b\":2},3]").len(), 3);
        assert!(json_objects("[{\"a\":1},{\"b\":2},3]")[2].1.is_err());
    }
}
