//! The Socket.IO v5 packets swarmq speaks, on top of Engine.IO 4 (engineioxide): what clients
//! send (namespace CONNECT with `auth`, DISCONNECT, EVENT with an optional ack id) and what the
//! server sends (CONNECT, CONNECT_ERROR, EVENT, ACK). Only the default namespace exists and no
//! binary attachments are accepted: swarmq's clients only ever send small JSON joins.
//!
//! Wire format: `<type>[<namespace>,][<ack id>][<JSON>]`, the namespace omitted for `/`
//! (<https://socket.io/docs/v4/socket-io-protocol/>). Outgoing events are encoded once into a
//! [`Str`] that every socket of a room shares (a reference-counted buffer, never copied per socket).

use engineioxide::Str;
use engineioxide::sid::Sid;
use serde_json::Value;

/// A packet a client sent.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// Connect to `namespace`, with the `auth` object when one was given.
    Connect {
        namespace: String,
        auth: Option<Value>,
    },
    Disconnect {
        namespace: String,
    },
    /// An event: its name, its first argument (`Null` when none) and the ack id the client
    /// waits on, if any.
    Event {
        namespace: String,
        name: String,
        payload: Value,
        ack: Option<u64>,
    },
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    #[error("packet type {0} is not accepted from clients")]
    NotAccepted(char),
    #[error("malformed namespace")]
    Namespace,
    #[error("malformed ack id")]
    AckId,
    #[error("payload is not valid JSON")]
    Json,
    #[error("an event must be a JSON array whose first element is the event name")]
    EventShape,
}

/// Parses one Socket.IO packet (the Engine.IO message body).
pub fn parse(packet: &str) -> Result<Incoming, ProtocolError> {
    let mut chars = packet.chars();
    let kind = chars.next().ok_or(ProtocolError::Empty)?;
    let rest = chars.as_str();
    let (namespace, rest) = split_namespace(rest)?;
    match kind {
        '0' => Ok(Incoming::Connect {
            namespace,
            auth: optional_json(rest)?,
        }),
        '1' => Ok(Incoming::Disconnect { namespace }),
        '2' => {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let ack = match digits {
                0 => None,
                _ => Some(rest[..digits].parse().map_err(|_| ProtocolError::AckId)?),
            };
            let (name, payload) = event_args(&rest[digits..])?;
            Ok(Incoming::Event {
                namespace,
                name,
                payload,
                ack,
            })
        }
        '3'..='6' => Err(ProtocolError::NotAccepted(kind)),
        other => Err(ProtocolError::UnknownType(other)),
    }
}

/// `/admin,rest` → (`/admin`, `rest`); anything else is the default namespace.
fn split_namespace(rest: &str) -> Result<(String, &str), ProtocolError> {
    if !rest.starts_with('/') {
        return Ok(("/".to_owned(), rest));
    }
    match rest.split_once(',') {
        Some((ns, tail)) => Ok((ns.to_owned(), tail)),
        // `1/admin` (a disconnect) has no trailing comma.
        None if !rest.contains(['[', '{']) => Ok((rest.to_owned(), "")),
        None => Err(ProtocolError::Namespace),
    }
}

fn optional_json(text: &str) -> Result<Option<Value>, ProtocolError> {
    if text.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|_| ProtocolError::Json)
}

fn event_args(text: &str) -> Result<(String, Value), ProtocolError> {
    let value: Value = serde_json::from_str(text).map_err(|_| ProtocolError::Json)?;
    let Value::Array(mut args) = value else {
        return Err(ProtocolError::EventShape);
    };
    if args.is_empty() {
        return Err(ProtocolError::EventShape);
    }
    let payload = if args.len() > 1 {
        args.swap_remove(1)
    } else {
        Value::Null
    };
    match args.swap_remove(0) {
        Value::String(name) => Ok((name, payload)),
        _ => Err(ProtocolError::EventShape),
    }
}

/// The answer to a successful namespace CONNECT: `0{"sid":"…"}`.
pub fn connected(socket_id: Sid) -> Str {
    format!("0{{\"sid\":\"{socket_id}\"}}").into()
}

/// A refused CONNECT: `4{"message":"…"}` (the client's `connect_error`).
pub fn connect_error(message: &str) -> Str {
    format!("4{{\"message\":{}}}", json_string(message)).into()
}

/// An EVENT with one argument: `2["name",data]`, `data` being JSON (as recorded: it is never
/// re-serialized). `name` is one of swarmq's event names.
pub fn event(name: &str, data: &str) -> Str {
    let mut out = String::with_capacity(name.len() + data.len() + 8);
    out.push_str("2[");
    out.push_str(&json_string(name));
    out.push(',');
    out.push_str(data);
    out.push(']');
    out.into()
}

/// The ACK of the client's event `id`, with one argument: `3<id>[data]`.
pub fn ack(id: u64, data: &Value) -> Str {
    format!("3{id}[{data}]").into()
}

fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_packets_parse() {
        assert_eq!(
            parse("0"),
            Ok(Incoming::Connect {
                namespace: "/".into(),
                auth: None
            })
        );
        assert_eq!(
            parse(r#"0{"token":"t"}"#),
            Ok(Incoming::Connect {
                namespace: "/".into(),
                auth: Some(json!({"token": "t"}))
            })
        );
        assert_eq!(
            parse("0/admin,"),
            Ok(Incoming::Connect {
                namespace: "/admin".into(),
                auth: None
            })
        );
        assert_eq!(
            parse("1"),
            Ok(Incoming::Disconnect {
                namespace: "/".into()
            })
        );
        assert_eq!(
            parse("1/admin"),
            Ok(Incoming::Disconnect {
                namespace: "/admin".into()
            })
        );
        assert_eq!(
            parse(r#"212["session:join",{"sessionId":"x","since":3}]"#),
            Ok(Incoming::Event {
                namespace: "/".into(),
                name: "session:join".into(),
                payload: json!({"sessionId": "x", "since": 3}),
                ack: Some(12)
            })
        );
        assert_eq!(
            parse(r#"2["session:leave"]"#),
            Ok(Incoming::Event {
                namespace: "/".into(),
                name: "session:leave".into(),
                payload: Value::Null,
                ack: None
            })
        );
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        for bad in [
            "",
            "9",
            "x",
            "3[1]",
            "51-[\"a\",{\"_placeholder\":true,\"num\":0}]",
            "2",
            "2{}",
            "2[]",
            "2[5]",
            "2[\"a\"",
            "0{bad",
            "2/nsp[\"a\"]",
            "299999999999999999999999[\"a\"]",
            "2\u{0}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn server_packets_encode_as_the_protocol_says() {
        let data = r#"{"agentId":"a","seq":1}"#;
        assert_eq!(
            event("agent:terminated", data).as_str(),
            r#"2["agent:terminated",{"agentId":"a","seq":1}]"#
        );
        assert_eq!(ack(7, &json!({"ok": true})).as_str(), r#"37[{"ok":true}]"#);
        assert_eq!(
            connect_error("bad \"token\"").as_str(),
            r#"4{"message":"bad \"token\""}"#
        );
        assert!(connected(Sid::new()).as_str().starts_with("0{\"sid\":\""));
        // What we send parses back as the client would see it.
        let echoed = format!("2{}", &event("x", data).as_str()[1..]);
        assert!(matches!(parse(&echoed), Ok(Incoming::Event { name, .. }) if name == "x"));
    }
}
