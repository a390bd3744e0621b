//! Entry points for the fuzz targets (`crates/fuzz-targets`, `fuzz/`): the pure parts of
//! both protocols' frame handling — frame decoding, method and id extraction, and the
//! readers of command parameters — reachable without a socket, a broker or a token
//! store. These are the functions the sessions call; nothing here is a stable API.

use serde_json::{Map, Value};

use crate::centrifugo::channels::{HistoryParams, Wishes, valid_channel};
use crate::centrifugo::{command_id, command_method, decode_frame};
use crate::signalwire;

/// Messages per `chat.messages.get` page.
pub const SIGNALWIRE_PAGE: usize = signalwire::PAGE;

/// One line of a Centrifugo frame as the session reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct CentrifugoCommand {
    /// The command object.
    pub command: Map<String, Value>,
    /// Its `id` (0 when missing or invalid).
    pub id: u64,
    /// Its method, if it names one the gateway knows.
    pub method: Option<&'static str>,
    /// Its parameters when they are an object.
    pub params: Option<Map<String, Value>>,
}

/// Decodes a Centrifugo protocol v2 JSON frame exactly as the session does: the commands
/// read before the first line that is not a JSON object, and whether there was such a line
/// (the session then closes with 3501).
#[must_use]
pub fn centrifugo_frame(text: &str) -> (Vec<CentrifugoCommand>, bool) {
    let mut commands = Vec::new();
    for command in decode_frame(text) {
        let Ok(command) = command else {
            return (commands, true);
        };
        let id = command_id(&command);
        let (method, params) = match command_method(&command) {
            Some((_, m, p)) => (Some(m), p.as_object().cloned()),
            None => (None, None),
        };
        commands.push(CentrifugoCommand {
            command,
            id,
            method,
            params,
        });
    }
    (commands, false)
}

/// What the channel commands read from a command's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CentrifugoParams {
    /// `history`: the limit (at most the `max` given), and `reverse`.
    pub history_limit: usize,
    pub history_reverse: bool,
    /// `history`: `since` as (offset, epoch).
    pub since: Option<(u64, String)>,
    /// `subscribe`: the recovery position asked for, as (offset, epoch).
    pub recover: Option<(u64, String)>,
    /// `subscribe`: the flags asked for.
    pub positioned: bool,
    pub recoverable: bool,
    pub join_leave: bool,
    pub reject_unrecovered: bool,
    /// Whether `channel`, when a string, passes the gateway's channel-name check.
    pub channel_ok: Option<bool>,
}

/// Reads `params` as the `subscribe` and `history` commands do; `max` is the history
/// limit cap.
#[must_use]
pub fn centrifugo_params(params: &Map<String, Value>, max: usize) -> CentrifugoParams {
    let history = HistoryParams::parse(params, max);
    let wishes = Wishes::from(params);
    CentrifugoParams {
        history_limit: history.limit,
        history_reverse: history.reverse,
        since: history.since.map(|p| (p.offset, p.epoch)),
        recover: wishes.recover.map(|p| (p.offset, p.epoch)),
        positioned: wishes.positioned,
        recoverable: wishes.recoverable,
        join_leave: wishes.join_leave,
        reject_unrecovered: wishes.reject_unrecovered,
        channel_ok: params
            .get("channel")
            .and_then(Value::as_str)
            .map(valid_channel),
    }
}

/// One SignalWire JSON-RPC message as the session reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalWireMessage {
    /// The message object.
    pub message: Map<String, Value>,
    /// Its `id` (`null` when missing).
    pub id: Value,
    /// Its method (`None`: a response to one of the server's requests).
    pub method: Option<String>,
    /// Its params when they are an object.
    pub params: Option<Map<String, Value>>,
}

/// Decodes a SignalWire message exactly as the session does; `None` is answered with a
/// JSON-RPC parse error.
#[must_use]
pub fn signalwire_message(text: &str) -> Option<SignalWireMessage> {
    let message = signalwire::decode_message(text)?;
    let (id, method, params) = signalwire::message_parts(&message);
    let method = method.map(str::to_owned);
    let params = params.cloned();
    Some(SignalWireMessage {
        message,
        id,
        method,
        params,
    })
}

/// The channel names of `chat.subscribe`, `chat.unsubscribe` and the like (at most `max`).
#[must_use]
pub fn signalwire_channels(params: &Map<String, Value>, max: usize) -> Option<Vec<String>> {
    signalwire::channel_names(params, max)
}

/// The event selection of `chat.subscribe`, as its `Debug` form.
#[must_use]
pub fn signalwire_events(params: &Map<String, Value>) -> String {
    format!("{:?}", signalwire::Events::from(params.get("events")))
}

/// The `cursor` of `chat.messages.get` on a stream of `epoch`: (before, after) offsets,
/// or the JSON-RPC error the request is answered with.
pub fn signalwire_cursor(
    params: &Map<String, Value>,
    epoch: &str,
) -> Result<(Option<u64>, Option<u64>), (i64, String)> {
    signalwire::read_cursor(params, epoch)
}

/// The page of `chat.messages.get` over kept publications with `offsets` (oldest first):
/// indices into `offsets` and the cursor object answered.
#[must_use]
pub fn signalwire_page(
    offsets: &[u64],
    epoch: &str,
    before: Option<u64>,
    after: Option<u64>,
) -> (Vec<usize>, Map<String, Value>) {
    signalwire::paginate(offsets, epoch, before, after)
}
