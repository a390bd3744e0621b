//! Centrifugo pushes for a connection's deliveries. A publication's push is encoded once
//! and the same bytes go to every subscriber ([`Publication::encoded`]); payloads are raw
//! JSON, inserted as they are.
//!
//! [`Publication::encoded`]: tollgate_broker::Publication::encoded

use bytes::Bytes;
use serde_json::Value;
use tollgate_broker::{Delivery, Event};

use super::Session;

impl Session {
    /// Pushes for a batch of deliveries, one per line, skipping what this connection must
    /// not see: channels it has left, publications it already got through recovery, and
    /// join/leave it did not ask for. A publication's push is encoded once and shared by
    /// every subscriber (`Publication::encoded`); payloads are raw JSON, inserted as is.
    pub(super) fn encode_pushes(&mut self, batch: &[Delivery]) -> Option<Bytes> {
        let mut pushes: Vec<Bytes> = Vec::with_capacity(batch.len());
        for d in batch {
            let Some(sub) = self.c.subs.get_mut(d.channel.as_ref()) else {
                continue;
            };
            match &d.event {
                Event::Publication(p) => {
                    if p.offset > 0 {
                        if p.offset <= sub.ext.last_offset {
                            continue;
                        }
                        sub.ext.last_offset = p.offset;
                    }
                    pushes.push(p.encoded.get_or_init(|| encode_pub(&d.channel, p)).clone());
                }
                // Centrifugo's protocol has no push for a member's state change.
                Event::Update(_) => {}
                Event::Join(info) | Event::Leave(info) => {
                    if !sub.ext.push_join_leave {
                        continue;
                    }
                    let kind = if matches!(d.event, Event::Join(_)) {
                        "join"
                    } else {
                        "leave"
                    };
                    let channel = Value::from(d.channel.as_ref()).to_string();
                    pushes.push(Bytes::from(format!(
                        r#"{{"push":{{"channel":{channel},"{kind}":{{"info":{}}}}}}}"#,
                        String::from_utf8_lossy(info)
                    )));
                }
            }
        }
        self.c.gw.metrics.delivered(pushes.len());
        match pushes.len() {
            0 => None,
            1 => pushes.pop(),
            _ => Some(Bytes::from(pushes.join(&b'\n'))),
        }
    }
}

/// A publication's push: `{"push":{"channel":…,"pub":{"data":…,"info":…,"offset":…,"tags":…}}}`.
fn encode_pub(channel: &str, p: &tollgate_broker::Publication) -> Bytes {
    let channel = Value::from(channel).to_string();
    let mut frame = String::with_capacity(64 + channel.len() + p.data.len());
    frame.push_str(r#"{"push":{"channel":"#);
    frame.push_str(&channel);
    frame.push_str(r#","pub":{"data":"#);
    frame.push_str(&String::from_utf8_lossy(&p.data));
    if let Some(info) = &p.info {
        frame.push_str(r#","info":"#);
        frame.push_str(&String::from_utf8_lossy(info));
    }
    if p.offset > 0 {
        frame.push_str(&format!(r#","offset":{}"#, p.offset));
    }
    if let Some(tags) = &p.tags {
        frame.push_str(r#","tags":"#);
        frame.push_str(&String::from_utf8_lossy(tags));
    }
    frame.push_str("}}}");
    Bytes::from(frame)
}
