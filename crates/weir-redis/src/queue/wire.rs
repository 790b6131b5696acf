//! Reading the server's replies to the queue's commands and scripts.

use std::sync::Arc;

use redis::{ErrorKind, RedisError, RedisResult, Value};

/// One stream entry as read (new, or reclaimed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawEntry {
    /// Shared by the delivery and the consumer's set of held ids.
    pub(crate) id: Arc<str>,
    /// The `job` field: JSON text.
    pub(crate) payload: String,
    /// Failed deliveries before this entry was added.
    pub(crate) attempts: u32,
    /// Deliveries of this entry, this one included.
    pub(crate) deliveries: u32,
}

fn unexpected(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::UnexpectedReturnType, what))
}

pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".to_owned()),
        _ => None,
    }
}

pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn array(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(a) | Value::Set(a) => Some(a),
        _ => None,
    }
}

/// Takes the text out of a reply value without copying it (the common
/// case: valid UTF-8 in a bulk string).
fn into_text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(
            String::from_utf8(b)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
        Value::SimpleString(s) => Some(s),
        other => text(&other),
    }
}

fn is(v: &Value, name: &[u8]) -> bool {
    match v {
        Value::BulkString(b) => b == name,
        Value::SimpleString(s) => s.as_bytes() == name,
        _ => false,
    }
}

/// The fields of one entry: `[id, [field, value, ...]]`.
fn entry(v: Value) -> Option<RawEntry> {
    let Value::Array(parts) = v else {
        return None;
    };
    let [id, Value::Array(fields)] = <[Value; 2]>::try_from(parts).ok()? else {
        return None;
    };
    let mut out = RawEntry {
        id: Arc::from(into_text(id)?),
        payload: String::new(),
        attempts: 0,
        deliveries: 1,
    };
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if is(&name, b"job") {
            out.payload = into_text(value)?;
        } else if is(&name, b"attempts") {
            out.attempts = u32::try_from(int(&value)?).ok()?;
        }
    }
    Some(out)
}

/// `XREADGROUP ... STREAMS key >`: nil on a timeout, else
/// `[[key, [entry, ...]]]`.
pub(crate) fn read_reply(v: Value) -> RedisResult<Vec<RawEntry>> {
    let streams = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(a) => a,
        _ => return Err(unexpected("XREADGROUP: unexpected reply")),
    };
    let mut out = Vec::new();
    for stream in streams {
        let Value::Array(parts) = stream else {
            return Err(unexpected("XREADGROUP: stream"));
        };
        let Some(Value::Array(entries)) = parts.into_iter().nth(1) else {
            return Err(unexpected("XREADGROUP: entries"));
        };
        out.reserve(entries.len());
        for e in entries {
            out.push(entry(e).ok_or_else(|| unexpected("XREADGROUP: entry"))?);
        }
    }
    Ok(out)
}

/// The reclaim script: `{cursor, dead, id, payload, attempts, deliveries, ...}`.
pub(crate) fn reclaim_reply(v: &Value) -> RedisResult<(String, u64, Vec<RawEntry>)> {
    let bad = || unexpected("reclaim script: unexpected reply");
    let a = array(v).ok_or_else(bad)?;
    let [cursor, dead, rest @ ..] = a else {
        return Err(bad());
    };
    let mut out = Vec::new();
    for e in rest.chunks(4) {
        let [id, payload, attempts, deliveries] = e else {
            return Err(bad());
        };
        out.push(RawEntry {
            id: Arc::from(text(id).ok_or_else(bad)?),
            payload: text(payload).ok_or_else(bad)?,
            attempts: int(attempts)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(bad)?,
            deliveries: int(deliveries)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(bad)?,
        });
    }
    let dead = int(dead)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(bad)?;
    Ok((text(cursor).ok_or_else(bad)?, dead, out))
}

/// An entry's id and its fields, as pairs.
pub(crate) type Entry = (String, Vec<(String, String)>);

/// `XRANGE`: `[entry, ...]` with every field, as pairs.
pub(crate) fn range_reply(v: &Value) -> RedisResult<Vec<Entry>> {
    let bad = || unexpected("XRANGE: unexpected reply");
    let mut out = Vec::new();
    for e in array(v).ok_or_else(bad)? {
        let [id, fields] = array(e).ok_or_else(bad)? else {
            return Err(bad());
        };
        let pairs = array(fields)
            .ok_or_else(bad)?
            .chunks(2)
            .filter_map(|p| match p {
                [k, v] => Some((text(k)?, text(v)?)),
                _ => None,
            })
            .collect();
        out.push((text(id).ok_or_else(bad)?, pairs));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_entries() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("q"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("job"), bulk("{}")]),
                ]),
                Value::Array(vec![
                    bulk("1-1"),
                    Value::Array(vec![bulk("job"), bulk("[1]"), bulk("attempts"), bulk("2")]),
                ]),
            ]),
        ])]);
        let got = read_reply(reply).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            (&*got[1].id, got[1].payload.as_str(), got[1].attempts),
            ("1-1", "[1]", 2)
        );
        assert!(read_reply(Value::Nil).unwrap().is_empty());
        assert!(read_reply(Value::Int(3)).is_err());
    }

    #[test]
    fn reads_the_reclaim_script() {
        let reply = Value::Array(vec![
            bulk("0-0"),
            Value::Int(1),
            bulk("5-0"),
            bulk("{}"),
            Value::Int(1),
            Value::Int(2),
        ]);
        let (cursor, dead, entries) = reclaim_reply(&reply).unwrap();
        assert_eq!(
            (cursor.as_str(), dead, entries[0].deliveries),
            ("0-0", 1, 2)
        );
        assert!(reclaim_reply(&Value::Array(vec![bulk("0-0")])).is_err());
    }
}
