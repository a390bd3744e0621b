//! SignalWire's `chat.*` methods — subscribe, unsubscribe, publish, members, messages and
//! member state — the server API's commands to a SignalWire connection, and the
//! `signalwire.event`s a connection's deliveries become. Channel work goes through the
//! gateway core, so everything here happens inside the connection's project.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tollgate_broker::{Delivery, Event, HistoryQuery, NewPublication, Publication, StreamPosition};

use super::wire::{
    Events, Reply, Turn, channel_names, close, error, member, message, now_secs_f64, ok,
    parse_bytes, request, rpc,
};
use super::{MAX_REPLAY_BYTES, MAX_STATE_BYTES, PAGE, SwSession};
use crate::core::client::{Sub, unix_to_instant};

impl SwSession {
    /// Joins `channel`: broker, presence, and a join for Chat members. Joining a channel
    /// again adds the events asked for.
    pub(super) async fn join(&mut self, channel: &str, events: Events) -> Result<(), ()> {
        self.join_from(channel, events, None).await
    }

    /// Joins `channel` as [`SwSession::join`] does and, for a channel that keeps history,
    /// notes where its stream is. With `since` (a resumed session's position) the
    /// publications the member missed after it are queued in `self.replay`, to go out
    /// right after the `signalwire.connect` result: the SDK never asks for them.
    pub(super) async fn join_from(
        &mut self,
        channel: &str,
        events: Events,
        since: Option<StreamPosition>,
    ) -> Result<(), ()> {
        if let Some(sub) = self.c.subs.get_mut(channel) {
            sub.ext.merge(events);
            return Ok(());
        }
        // Attached before the stream is read, as for Centrifugo's recovery: a publication
        // in between arrives in both, and the queued copy is skipped by offset.
        self.c.attach(channel).await.map_err(|_| ())?;
        self.replayed.remove(channel);
        if self.c.gw.publish_history(channel).is_some() {
            match self.read_position(channel, since.as_ref()).await {
                Ok((top, missed)) => {
                    let written = top.offset;
                    let mut position = top;
                    let missed = missed
                        .filter(|_| events.message)
                        .and_then(|m| self.replay_frames(channel, &m));
                    // The resume position stays before the replay: each replayed frame
                    // moves it as a live one does, once acknowledged, so a socket that
                    // dies again before then replays them again.
                    if let Some((first, _, _)) = missed.as_ref().and_then(|m| m.first()) {
                        position.offset = first.saturating_sub(1);
                    }
                    self.written.insert(channel.to_owned(), written);
                    self.positions.insert(channel.to_owned(), position);
                    if let Some(missed) = missed {
                        for (offset, id, frame) in missed {
                            self.replay_bytes += frame.len();
                            self.replay.push(frame);
                            self.sent(id, channel, offset);
                        }
                        self.replayed.insert(channel.to_owned(), written);
                    }
                }
                // No position: this session's messages carry on live, and a resume of it
                // replays nothing.
                Err(()) => {
                    self.positions.remove(channel);
                    self.written.remove(channel);
                }
            }
        }
        let sub = Sub {
            info: self.client_info(channel),
            presence: true,
            join_leave: self.is_chat(),
            ext: events,
        };
        self.c.add(channel, sub).await;
        Ok(())
    }

    /// The replay of `missed` in `channel`: (offset, event id, frame) each, if it fits in
    /// what is left of the session's [`MAX_REPLAY_BYTES`]. A channel whose replay does not
    /// fit is replayed none of it (the channel carries on live, as when history no longer
    /// holds what was missed): never a replay with a gap in its middle.
    fn replay_frames(
        &self,
        channel: &str,
        missed: &[Arc<Publication>],
    ) -> Option<Vec<(u64, String, String)>> {
        let mut used = self.replay_bytes;
        let mut frames = Vec::with_capacity(missed.len());
        for p in missed {
            let params = json!({"channel": channel, "message": message(p, channel)});
            let (id, frame) = event_frame("chat.channel.message", channel, &params);
            used += frame.len();
            if used > MAX_REPLAY_BYTES {
                tracing::debug!(
                    channel,
                    "resumed without the missed messages: replay too large"
                );
                return None;
            }
            frames.push((p.offset, id, frame));
        }
        Some(frames)
    }

    /// The stream's current position and, with `since`, what was published after it, if
    /// history still holds all of it. Publications of another epoch than `since`'s (Redis
    /// restarted empty, or the stream expired) all came after it: the new stream is
    /// replayed whole, so nothing is silently skipped (one delivered live just before the
    /// session closed may come twice).
    async fn read_position(
        &self,
        channel: &str,
        since: Option<&StreamPosition>,
    ) -> Result<(StreamPosition, Option<Vec<Arc<Publication>>>), ()> {
        let limit = self.c.gw.settings.history_max_publication_limit;
        let query = HistoryQuery {
            since,
            limit: Some(if since.is_some() { limit + 1 } else { 0 }),
            reverse: false,
        };
        let h = self.c.history(channel, query).await.map_err(|_| ())?;
        let Some(since) = since else {
            return Ok((h.position, None));
        };
        let (position, missed) = if since.epoch == h.position.epoch {
            let recovered = h.recovered;
            (h.position, Some(h.publications).filter(|_| recovered))
        } else {
            let whole = HistoryQuery {
                since: None,
                limit: Some(limit + 1),
                reverse: false,
            };
            let h = self.c.history(channel, whole).await.map_err(|_| ())?;
            (h.position, Some(h.publications))
        };
        // More missed than one read returns is as lost as history itself.
        let missed = missed.filter(|m| m.len() <= limit);
        if missed.is_none() {
            tracing::debug!(channel, "resumed without the missed messages: history lost");
        }
        Ok((position, missed))
    }

    pub(super) async fn subscribe(&mut self, params: &Map<String, Value>) -> Reply {
        let Some(channels) =
            channel_names(params, self.c.gw.settings.max_channels).filter(|c| !c.is_empty())
        else {
            return error(rpc::INVALID_PARAMS, "channels must be a list of {name}");
        };
        // All or nothing: every channel must be readable before any is joined.
        if let Some(denied) = channels.iter().find(|c| !self.grant_for(c).0) {
            return error(
                rpc::FORBIDDEN,
                format!("Permission denied: no read access to channel '{denied}'"),
            );
        }
        let new = channels
            .iter()
            .filter(|c| !self.c.subs.contains_key(*c))
            .count();
        if self.c.subs.len() + new > self.c.gw.settings.max_channels {
            return error(rpc::FORBIDDEN, "Too many channels");
        }
        let events = Events::from(params.get("events"));
        let mut joined: Vec<String> = Vec::new();
        for channel in &channels {
            let fresh = !self.c.subs.contains_key(channel);
            if self.join(channel, events).await.is_err() {
                for channel in joined {
                    self.c.leave(&channel).await;
                }
                return error(rpc::INTERNAL, "Internal error");
            }
            if fresh {
                joined.push(channel.clone());
            }
        }
        ok()
    }

    pub(super) async fn unsubscribe(&mut self, params: &Map<String, Value>) -> Reply {
        let Some(channels) = channel_names(params, self.c.gw.settings.max_channels) else {
            return error(rpc::INVALID_PARAMS, "channels must be a list of {name}");
        };
        for channel in channels {
            self.c.leave(&channel).await;
        }
        ok()
    }

    pub(super) async fn publish(&mut self, params: &Map<String, Value>) -> Reply {
        let Some(channel) = params
            .get("channel")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
        else {
            return error(rpc::INVALID_PARAMS, "channel is required");
        };
        let Some(content) = params.get("content") else {
            return error(rpc::INVALID_PARAMS, "content is required");
        };
        if !self.grant_for(channel).1 {
            return error(
                rpc::FORBIDDEN,
                format!("Permission denied: no write access to channel '{channel}'"),
            );
        }
        let meta = match params.get("meta") {
            None | Some(Value::Null) => None,
            Some(m @ Value::Object(_)) => Some(m),
            Some(_) => return error(rpc::INVALID_PARAMS, "meta must be an object"),
        };
        // Re-serialised compactly: Centrifugo frames are newline-delimited.
        let data = content.to_string();
        let meta_text = meta.map(Value::to_string);
        let size = data.len() + meta_text.as_ref().map_or(0, String::len);
        if size > self.c.gw.settings.max_publication_bytes {
            return error(rpc::INVALID_PARAMS, "message too large");
        }
        // String-valued meta is also Centrifugo's `tags`, so those clients see it.
        let tags = meta
            .and_then(Value::as_object)
            .filter(|m| m.values().all(Value::is_string))
            .map(|_| Bytes::from(meta_text.clone().unwrap_or_default()));
        let info = self
            .c
            .subs
            .get(channel)
            .map_or_else(|| self.client_info(channel), |s| s.info.clone());
        let publication = NewPublication {
            data: Bytes::from(data),
            info: Some(info),
            tags,
            meta: meta_text.map(Bytes::from),
        };
        let history = self.c.gw.publish_history(channel);
        match self.c.publish(channel, publication, history).await {
            Ok(_) => ok(),
            Err(_) => error(rpc::INTERNAL, "Internal error"),
        }
    }

    /// The request's `channel`, if the token's capability for it includes `what`.
    fn readable_channel<'p>(
        &self,
        params: &'p Map<String, Value>,
        what: &str,
    ) -> Result<&'p str, (i64, String)> {
        let channel = params
            .get("channel")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .ok_or((rpc::INVALID_PARAMS, "channel is required".to_owned()))?;
        if !self.can(channel, what) {
            return Err((
                rpc::FORBIDDEN,
                format!("Permission denied: no read access to channel '{channel}'"),
            ));
        }
        Ok(channel)
    }

    pub(super) async fn members(&mut self, params: &Map<String, Value>) -> Reply {
        let channel = self.readable_channel(params, "prs")?;
        let entries = self
            .c
            .presence(channel)
            .await
            .map_err(|_| (rpc::INTERNAL, "Internal error".to_owned()))?;
        let mut seen = std::collections::HashSet::new();
        let mut members: Vec<Value> = Vec::new();
        for e in &entries {
            // One member may be connected several times: list it once.
            if seen.insert(e.user.as_str()) {
                members.push(member(&parse_bytes(&e.info), channel));
            }
        }
        Ok(json!({"code": "200", "message": "OK", "members": members}))
    }

    /// `chat.messages.get`: newest first, [`PAGE`] at a time. Cursors are stream offsets:
    /// `before` pages to older messages, `after` to newer ones.
    pub(super) async fn messages(&mut self, params: &Map<String, Value>) -> Reply {
        let channel = self.readable_channel(params, "hst")?.to_owned();
        let history = self
            .c
            .history(&channel, HistoryQuery::default())
            .await
            .map_err(|_| (rpc::INTERNAL, "Internal error".to_owned()))?;
        let epoch = history.position.epoch.as_str();
        let (before, after) = read_cursor(params, epoch)?;
        let offsets: Vec<u64> = history.publications.iter().map(|p| p.offset).collect();
        let (page, cursor) = paginate(&offsets, epoch, before, after);
        let page: Vec<&Arc<Publication>> = page.iter().map(|&i| &history.publications[i]).collect();
        let messages: Vec<Value> = page.iter().rev().map(|p| message(p, &channel)).collect();
        Ok(json!({"code": "200", "message": "OK", "messages": messages, "cursor": cursor}))
    }

    pub(super) async fn set_state(&mut self, params: &Map<String, Value>) -> Reply {
        if let Some(m) = params.get("member_id").and_then(Value::as_str)
            && m != self.member_id()
        {
            return error(rpc::FORBIDDEN, "A member may only set its own state");
        }
        let Some(state) = params.get("state").filter(|s| s.is_object()) else {
            return error(rpc::INVALID_PARAMS, "state must be an object");
        };
        if state.to_string().len() > MAX_STATE_BYTES {
            return error(rpc::INVALID_PARAMS, "state is too large");
        }
        let channels = match channel_names(params, self.c.gw.settings.max_channels) {
            Some(c) if !c.is_empty() => c,
            None if params.get("channels").is_none() => self.c.subs.keys().cloned().collect(),
            _ => return error(rpc::INVALID_PARAMS, "channels must be a list of {name}"),
        };
        if let Some(denied) = channels.iter().find(|c| !self.grant_for(c).0) {
            return error(
                rpc::FORBIDDEN,
                format!("Permission denied: no read access to channel '{denied}'"),
            );
        }
        for channel in channels {
            if self.states.get(&channel) == Some(state) {
                continue;
            }
            // Bounded: at most max_channels states are remembered per session.
            if !self.states.contains_key(&channel)
                && self.states.len() >= self.c.gw.settings.max_channels
            {
                continue;
            }
            self.states.insert(channel.clone(), state.clone());
            let info = self.client_info(&channel);
            self.c.update_info(&channel, info).await;
        }
        ok()
    }

    pub(super) async fn get_state(&mut self, params: &Map<String, Value>) -> Reply {
        let member_id = params
            .get("member_id")
            .and_then(Value::as_str)
            .unwrap_or(self.member_id())
            .to_owned();
        let channels = match channel_names(params, self.c.gw.settings.max_channels) {
            Some(c) if !c.is_empty() => c,
            _ => self.c.subs.keys().cloned().collect(),
        };
        let mut out = Map::new();
        for channel in channels {
            if !self.grant_for(&channel).0 {
                continue;
            }
            let state = if member_id == self.member_id() {
                self.state(&channel)
            } else {
                let entries = self.c.presence(&channel).await.unwrap_or_default();
                match entries.iter().find(|e| e.user == member_id) {
                    Some(e) => member(&parse_bytes(&e.info), &channel)["state"].clone(),
                    None => continue,
                }
            };
            out.insert(channel, json!({ "state": state }));
        }
        Ok(json!({"code": "200", "message": "OK", "channels": out}))
    }

    /// Server API commands (the registry reaches SignalWire members by member id).
    pub(super) async fn apply(&mut self, control: crate::Control) -> Turn {
        use crate::Control;
        match control {
            // The SDK reconnects after a server disconnect and, never re-subscribing, relies
            // on the resume: keep it.
            Control::Disconnect { .. } => {
                let (_, text) = request("signalwire.disconnect", &json!({}));
                (vec![text], Some(Some((close::NORMAL, "disconnected"))))
            }
            Control::Subscribe(command) => {
                let sub = command.sub;
                // The same bound as a client's own `chat.subscribe`.
                if !self.c.subs.contains_key(&sub.channel)
                    && self.c.subs.len() >= self.c.gw.settings.max_channels
                {
                    return (Vec::new(), None);
                }
                let events = Events {
                    message: true,
                    ..Events::default()
                };
                if self.join(&sub.channel, events).await.is_ok() {
                    self.shared_dirty = true;
                }
                (Vec::new(), None)
            }
            Control::Unsubscribe { channel } => {
                let channels: Vec<String> = if channel.is_empty() {
                    self.c.subs.keys().cloned().collect()
                } else {
                    vec![channel]
                };
                for channel in channels {
                    self.c.leave(&channel).await;
                }
                self.shared_dirty = true;
                (Vec::new(), None)
            }
            // The broker may have lost deliveries (its connection to Redis broke, or an
            // offset jumped). SignalWire's protocol cannot say so, but the SDK reconnects
            // on any close and resumes with its `protocol`: closing makes the resume
            // replay what the member missed from history (or, history lost, at least
            // starts the member afresh on a working subscription).
            Control::Resubscribe { channel } if self.c.subs.contains_key(&channel) => (
                Vec::new(),
                Some(Some((close::TRY_AGAIN, "broker interrupted"))),
            ),
            Control::Resubscribe { .. } => (Vec::new(), None),
            Control::Refresh { expired: true, .. } => {
                (Vec::new(), Some(Some((close::EXPIRED, "token expired"))))
            }
            Control::Refresh { expire_at, .. } => {
                self.c.expiry = expire_at.map(|e| unix_to_instant(e, self.c.now_unix()));
                (Vec::new(), None)
            }
        }
    }

    /// `signalwire.event`s for a batch of deliveries, one frame each, only for channels
    /// and events this member subscribed to.
    pub(super) fn encode(&mut self, batch: &[Delivery]) -> Vec<String> {
        let mut frames = Vec::with_capacity(batch.len());
        for d in batch {
            let channel: &str = &d.channel;
            let Some(sub) = self.c.subs.get(channel) else {
                continue;
            };
            let mut in_order = None;
            if let Event::Publication(p) = &d.event
                && p.offset > 0
            {
                // Already sent in a resume's replay: skipped once, until the first newer one.
                if let Some(&replayed) = self.replayed.get(channel) {
                    if p.offset <= replayed {
                        continue;
                    }
                    self.replayed.remove(channel);
                }
                // Only a publication that follows the last one without a gap can move the
                // resume position: a resume then replays from before one the broker lost.
                if let Some(written) = self.written.get_mut(channel)
                    && p.offset == *written + 1
                {
                    *written = p.offset;
                    in_order = Some(p.offset);
                }
            }
            let (event_type, params) = match &d.event {
                Event::Publication(p) if sub.ext.message => (
                    "chat.channel.message",
                    json!({"channel": channel, "message": message(p, channel)}),
                ),
                Event::Join(info) if sub.ext.joined => (
                    "chat.member.joined",
                    json!({"channel": channel, "member": member(&parse_bytes(info), channel)}),
                ),
                Event::Update(info) if sub.ext.updated => (
                    "chat.member.updated",
                    json!({"channel": channel, "member": member(&parse_bytes(info), channel)}),
                ),
                Event::Leave(info) if sub.ext.left => (
                    "chat.member.left",
                    json!({"channel": channel, "member": member(&parse_bytes(info), channel)}),
                ),
                _ => continue,
            };
            let (id, frame) = event_frame(event_type, channel, &params);
            frames.push(frame);
            if let Some(offset) = in_order {
                self.sent(id, channel, offset);
            }
        }
        if !frames.is_empty() {
            self.c.gw.metrics.delivered(frames.len());
        }
        frames
    }
}

/// One `signalwire.event` request: its id and its text.
fn event_frame(event_type: &str, channel: &str, params: &Value) -> (String, String) {
    request(
        "signalwire.event",
        &json!({
            "event_type": event_type,
            "event_channel": channel,
            "timestamp": now_secs_f64(),
            "params": params,
        }),
    )
}

/// The `cursor.before` and `cursor.after` of `chat.messages.get`: offsets of the stream of
/// `epoch`, written `<epoch>:<offset>`. An offset from another epoch (the stream was reset)
/// would page the wrong messages, so it is refused.
pub(crate) fn read_cursor(
    params: &Map<String, Value>,
    epoch: &str,
) -> Result<(Option<u64>, Option<u64>), (i64, String)> {
    let cursor = params.get("cursor").filter(|c| !c.is_null());
    let at = |k: &str| -> Result<Option<u64>, (i64, String)> {
        let Some(v) = cursor.and_then(|c| c.get(k)).filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        v.as_str()
            .and_then(|c| c.split_once(':'))
            .filter(|(e, _)| *e == epoch)
            .and_then(|(_, o)| o.parse::<u64>().ok())
            .map(Some)
            .ok_or((rpc::INVALID_PARAMS, format!("invalid or stale cursor.{k}")))
    };
    if cursor.is_some_and(|c| !c.is_object()) {
        return Err((rpc::INVALID_PARAMS, "cursor must be an object".to_owned()));
    }
    Ok((at("before")?, at("after")?))
}

/// One page of a stream whose kept publications have `offsets` (oldest first): the indices
/// (into `offsets`, oldest first) of at most [`PAGE`] publications strictly between the
/// cursors — the newest such without `after`, the oldest with it — and the cursor to the
/// pages around it.
pub(crate) fn paginate(
    offsets: &[u64],
    epoch: &str,
    before: Option<u64>,
    after: Option<u64>,
) -> (Vec<usize>, Map<String, Value>) {
    let kept: Vec<usize> = (0..offsets.len())
        .filter(|&i| before.is_none_or(|b| offsets[i] < b) && after.is_none_or(|a| offsets[i] > a))
        .collect();
    let page: Vec<usize> = if after.is_some() {
        kept.iter().take(PAGE).copied().collect()
    } else {
        kept.iter().rev().take(PAGE).rev().copied().collect()
    };
    let first_kept = offsets.first().copied();
    let last_kept = offsets.last().copied();
    // The page's bounds; an empty page keeps the request's, so the client can turn back.
    let oldest = page
        .first()
        .map(|&i| offsets[i])
        // Saturating: `after` comes from the client and may be `u64::MAX` (found by fuzzing).
        .or_else(|| after.map(|a| a.saturating_add(1)));
    let newest = page
        .last()
        .map(|&i| offsets[i])
        .or_else(|| before.map(|b| b.saturating_sub(1)));
    let mut cursor = Map::new();
    if let (Some(o), Some(f)) = (oldest, first_kept)
        && o > f
    {
        cursor.insert("before".into(), format!("{epoch}:{o}").into());
    }
    if let (Some(n), Some(l)) = (newest, last_kept)
        && n < l
    {
        cursor.insert("after".into(), format!("{epoch}:{n}").into());
    }
    (page, cursor)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn cursor(c: Value) -> Map<String, Value> {
        json!({ "cursor": c }).as_object().unwrap().clone()
    }

    #[test]
    fn cursors_read_offsets_of_this_epoch_only() {
        let p = cursor(json!({"before": "e:10", "after": null}));
        assert_eq!(read_cursor(&p, "e").unwrap(), (Some(10), None));
        assert!(read_cursor(&p, "f").is_err());
        assert!(read_cursor(&cursor(json!("e:10")), "e").is_err());
        assert!(read_cursor(&cursor(json!({"after": "e:-1"})), "e").is_err());
        assert_eq!(read_cursor(&Map::new(), "e").unwrap(), (None, None));
    }

    #[test]
    fn pages_newest_first_with_cursors_both_ways() {
        let offsets: Vec<u64> = (1..=120).collect();
        let (page, c) = paginate(&offsets, "e", None, None);
        assert_eq!(page, (70..120).collect::<Vec<_>>());
        assert_eq!(c.get("before"), Some(&json!("e:71")));
        assert_eq!(c.get("after"), None);
        let (page, c) = paginate(&offsets, "e", None, Some(10));
        assert_eq!(page, (10..60).collect::<Vec<_>>());
        assert_eq!(c.get("after"), Some(&json!("e:60")));
    }

    #[test]
    fn a_cursor_at_the_end_of_u64_is_an_empty_page_not_an_overflow() {
        let (page, c) = paginate(&[1, 2, 3], "e", None, Some(u64::MAX));
        assert!(page.is_empty());
        assert_eq!(c.get("before"), Some(&json!(format!("e:{}", u64::MAX))));
        assert_eq!(c.get("after"), None);
        let p = cursor(json!({ "after": format!("e:{}", u64::MAX) }));
        assert_eq!(read_cursor(&p, "e").unwrap(), (None, Some(u64::MAX)));
        let (page, _) = paginate(&[1, 2, 3], "e", Some(0), None);
        assert!(page.is_empty());
    }
}
