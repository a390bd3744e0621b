//! How publications, join/leave events and presence entries are written into Redis and
//! read back.
//!
//! A publication's *body* (id, time, data, info, tags, meta) is a run of fields, each
//! `-` when absent or `<length>:<bytes>`: binary-safe, no JSON parsing of payloads that
//! pass through untouched. The body is what the history stream keeps; the PUB/SUB message
//! adds the offset and epoch the publish script assigned, in front:
//!
//! - `p<offset>:<epoch>:<body>` a publication (offset 0: the channel keeps no history)
//! - `j<info>`, `l<info>`, `u<info>` a join, a leave, a member update.

use std::sync::Arc;

use bytes::Bytes;

use crate::{Event, NewPublication, Publication};

fn put(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => out.push(b'-'),
        Some(b) => {
            out.extend_from_slice(b.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(b);
        }
    }
}

/// Reads one field off the front of `input`.
fn take<'a>(input: &mut &'a [u8]) -> Option<Option<&'a [u8]>> {
    if let Some(rest) = input.strip_prefix(b"-") {
        *input = rest;
        return Some(None);
    }
    let colon = input.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&input[..colon]).ok()?.parse().ok()?;
    let start = colon + 1;
    let field = input.get(start..start.checked_add(len)?)?;
    *input = &input[start + len..];
    Some(Some(field))
}

/// The body of a new publication with its id and time.
pub(super) fn encode_body(new: &NewPublication, id: &str, time_ms: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(new.data.len() + 64);
    put(&mut out, Some(id.as_bytes()));
    put(&mut out, Some(time_ms.to_string().as_bytes()));
    put(&mut out, Some(&new.data));
    put(&mut out, new.info.as_deref());
    put(&mut out, new.tags.as_deref());
    put(&mut out, new.meta.as_deref());
    out
}

/// The publication a body stands for, at `offset`.
pub(super) fn decode_body(body: &[u8], offset: u64) -> Option<Publication> {
    let mut input = body;
    let id = std::str::from_utf8(take(&mut input)??).ok()?.to_owned();
    let time_ms = std::str::from_utf8(take(&mut input)??).ok()?.parse().ok()?;
    let data = Bytes::copy_from_slice(take(&mut input)??);
    let mut optional = || take(&mut input).map(|f| f.map(Bytes::copy_from_slice));
    let (info, tags, meta) = (optional()?, optional()?, optional()?);
    Some(Publication {
        id,
        offset,
        data,
        info,
        tags,
        meta,
        time_ms,
        encoded: std::sync::OnceLock::new(),
    })
}

/// A join, leave or update as a PUB/SUB message (publications are framed by the publish
/// script). `None` for a publication.
pub(super) fn encode_presence_event(event: &Event) -> Option<Vec<u8>> {
    let (tag, info) = match event {
        Event::Join(i) => (b'j', i),
        Event::Leave(i) => (b'l', i),
        Event::Update(i) => (b'u', i),
        Event::Publication(_) => return None,
    };
    let mut out = Vec::with_capacity(info.len() + 1);
    out.push(tag);
    out.extend_from_slice(info);
    Some(out)
}

/// What arrived on a channel: the event, and for a publication its epoch.
#[derive(Debug)]
pub(super) struct Message {
    pub(super) event: Event,
    pub(super) epoch: Option<String>,
}

/// Decodes a PUB/SUB message.
pub(super) fn decode_message(payload: &[u8]) -> Option<Message> {
    let (&tag, rest) = payload.split_first()?;
    let info = || Bytes::copy_from_slice(rest);
    let event = match tag {
        b'j' => Event::Join(info()),
        b'l' => Event::Leave(info()),
        b'u' => Event::Update(info()),
        b'p' => {
            let colon = rest.iter().position(|&b| b == b':')?;
            let offset: u64 = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
            let rest = &rest[colon + 1..];
            let colon = rest.iter().position(|&b| b == b':')?;
            let epoch = std::str::from_utf8(&rest[..colon]).ok()?.to_owned();
            let publication = decode_body(&rest[colon + 1..], offset)?;
            return Some(Message {
                event: Event::Publication(Arc::new(publication)),
                epoch: Some(epoch),
            });
        }
        _ => return None,
    };
    Some(Message { event, epoch: None })
}

/// A presence hash value: the user, then the `ClientInfo`.
pub(super) fn encode_presence(user: &str, info: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(user.len() + info.len() + 8);
    put(&mut out, Some(user.as_bytes()));
    out.extend_from_slice(info);
    out
}

pub(super) fn decode_presence(value: &[u8]) -> Option<(String, Bytes)> {
    let mut input = value;
    let user = std::str::from_utf8(take(&mut input)??).ok()?.to_owned();
    Some((user, Bytes::copy_from_slice(input)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_and_messages_round_trip() {
        let new = NewPublication {
            data: Bytes::from_static(b"{\"a\":\"x:1-\"}"),
            info: None,
            tags: Some(Bytes::from_static(b"{}")),
            meta: Some(Bytes::new()),
        };
        let body = encode_body(&new, "id-1", 1234);
        let p = decode_body(&body, 9).expect("decodes");
        assert_eq!((p.id.as_str(), p.offset, p.time_ms), ("id-1", 9, 1234));
        assert_eq!(
            (p.data, p.info, p.tags, p.meta),
            (new.data, None, new.tags, new.meta)
        );

        let mut msg = b"p9:abcd1234:".to_vec();
        msg.extend_from_slice(&body);
        let m = decode_message(&msg).expect("decodes");
        assert_eq!(m.epoch.as_deref(), Some("abcd1234"));
        assert!(matches!(m.event, Event::Publication(p) if p.offset == 9));

        let join = encode_presence_event(&Event::Join(Bytes::from_static(b"{}"))).expect("event");
        assert_eq!(
            decode_message(&join).map(|m| m.event),
            Some(Event::Join(Bytes::from_static(b"{}")))
        );
        assert!(decode_message(b"p1:e:3:ab").is_none(), "truncated body");
        assert!(decode_message(b"").is_none());

        let v = encode_presence("u:1", b"{\"client\":\"c\"}");
        assert_eq!(
            decode_presence(&v),
            Some(("u:1".to_owned(), Bytes::from_static(b"{\"client\":\"c\"}")))
        );
    }
}
