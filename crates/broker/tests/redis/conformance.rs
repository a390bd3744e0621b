//! One sequence of operations run against any broker, written down as a transcript: the
//! in-process and Redis brokers must produce the same one (epochs are named by order of
//! appearance, since their values are random).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tollgate_broker::{
    Broker, ChannelKey, HistoryPolicy, HistoryQuery, NewPublication, StreamPosition,
};

const KEEP: Option<HistoryPolicy> = Some(HistoryPolicy {
    size: 3,
    ttl: Duration::from_secs(60),
});

fn pubn(s: &str) -> NewPublication {
    NewPublication {
        data: Bytes::from(format!("{{\"v\":\"{s}\"}}")),
        tags: (s == "5").then(|| Bytes::from_static(br#"{"k":"v"}"#)),
        info: (s == "4").then(|| Bytes::from_static(br#"{"user":"u"}"#)),
        meta: (s == "4").then(|| Bytes::from_static(br#"{"m":1}"#)),
    }
}

#[derive(Default)]
struct Transcript {
    lines: Vec<String>,
    epochs: HashMap<String, usize>,
}

impl Transcript {
    fn epoch(&mut self, e: &str) -> String {
        let n = self.epochs.len();
        format!("E{}", self.epochs.entry(e.to_owned()).or_insert(n))
    }

    fn position(&mut self, what: &str, p: &StreamPosition) {
        let e = self.epoch(&p.epoch);
        self.lines.push(format!("{what}: {}@{e}", p.offset));
    }

    fn history(&mut self, what: &str, h: &tollgate_broker::History) {
        let e = self.epoch(&h.position.epoch);
        let pubs: Vec<String> = h
            .publications
            .iter()
            .map(|p| {
                format!(
                    "{}={}{}",
                    p.offset,
                    String::from_utf8_lossy(&p.data),
                    [("tags", &p.tags), ("info", &p.info), ("meta", &p.meta)]
                        .iter()
                        .filter_map(|(k, v)| v
                            .as_ref()
                            .map(|v| format!(" {k} {}", String::from_utf8_lossy(v))))
                        .collect::<String>()
                )
            })
            .collect();
        self.lines.push(format!(
            "{what}: top {}@{e} recovered {} [{}]",
            h.position.offset,
            h.recovered,
            pubs.join(", ")
        ));
    }
}

async fn read(
    b: &dyn Broker,
    key: &ChannelKey,
    since: Option<&StreamPosition>,
    limit: Option<usize>,
    reverse: bool,
) -> tollgate_broker::History {
    b.history(
        key,
        HistoryQuery {
            since,
            limit,
            reverse,
        },
    )
    .await
    .expect("history")
}

/// The sequence; returns its transcript.
pub(crate) async fn run(b: &dyn Broker, project: uuid::Uuid) -> Vec<String> {
    let mut t = Transcript::default();
    let c = ChannelKey::new(project, "c");
    let mut positions = Vec::new();
    for i in 1..=5 {
        let p = b
            .publish(&c, pubn(&i.to_string()), KEEP)
            .await
            .expect("publish");
        t.position(&format!("publish {i}"), &p);
        positions.push(p);
    }
    let h = read(b, &c, None, None, false).await;
    t.history("all", &h);
    t.history("newest two", &read(b, &c, None, Some(2), true).await);
    t.history("oldest two", &read(b, &c, None, Some(2), false).await);
    for (i, since) in positions.iter().enumerate() {
        t.history(
            &format!("since {}", i + 1),
            &read(b, &c, Some(since), None, false).await,
        );
    }
    let before = StreamPosition {
        offset: 0,
        epoch: positions[0].epoch.clone(),
    };
    t.history(
        "since 0 (gap)",
        &read(b, &c, Some(&before), None, false).await,
    );
    let future = StreamPosition {
        offset: 99,
        epoch: positions[0].epoch.clone(),
    };
    t.history(
        "since the future",
        &read(b, &c, Some(&future), None, false).await,
    );
    let other = StreamPosition {
        offset: 4,
        epoch: "ffffffff".into(),
    };
    t.history(
        "since another epoch",
        &read(b, &c, Some(&other), Some(1), false).await,
    );

    // Without history: delivered only, no offset taken, the position reported as it is.
    let p = b.publish(&c, pubn("plain"), None).await.expect("publish");
    t.position("publish without history", &p);
    t.history(
        "after it",
        &read(b, &c, Some(&positions[3]), None, false).await,
    );

    // Removing history keeps the position: a client at the top recovers "nothing missed",
    // one behind learns of the gap.
    b.remove_history(&c).await.expect("remove");
    t.history(
        "removed, since top",
        &read(b, &c, Some(&positions[4]), None, false).await,
    );
    t.history(
        "removed, since 4",
        &read(b, &c, Some(&positions[3]), None, false).await,
    );
    let p = b.publish(&c, pubn("6"), KEEP).await.expect("publish");
    t.position("publish 6", &p);
    t.history(
        "since top before 6",
        &read(b, &c, Some(&positions[4]), None, true).await,
    );

    // Entries expire one by one, oldest first.
    let t_ch = ChannelKey::new(project, "t");
    let short = Some(HistoryPolicy {
        size: 10,
        ttl: Duration::from_millis(150),
    });
    let first = b.publish(&t_ch, pubn("x"), short).await.expect("publish");
    b.publish(&t_ch, pubn("y"), KEEP).await.expect("publish");
    tokio::time::sleep(Duration::from_millis(250)).await;
    t.history("expired front", &read(b, &t_ch, None, None, false).await);
    t.history(
        "since before it",
        &read(b, &t_ch, Some(&first), None, false).await,
    );

    // Size 1 keeps one; a bigger size later keeps more from then on.
    let s = ChannelKey::new(project, "s");
    let one = Some(HistoryPolicy {
        size: 1,
        ttl: Duration::from_secs(60),
    });
    for i in 0..3 {
        b.publish(&s, pubn(&format!("s{i}")), one)
            .await
            .expect("publish");
    }
    b.publish(&s, pubn("s3"), KEEP).await.expect("publish");
    t.history("size change", &read(b, &s, None, None, false).await);
    t.history("limit 0", &read(b, &s, None, Some(0), false).await);
    t.history("newest 1", &read(b, &s, None, Some(1), true).await);

    // A long expired front (more than one trimming batch) goes; what follows stays.
    let long = ChannelKey::new(project, "long");
    let brief = Some(HistoryPolicy {
        size: 500,
        ttl: Duration::from_millis(200),
    });
    for i in 0..250 {
        b.publish(&long, pubn(&format!("l{i}")), brief)
            .await
            .expect("publish");
    }
    let mid = b
        .publish(&long, pubn("kept1"), KEEP)
        .await
        .expect("publish");
    b.publish(&long, pubn("kept2"), KEEP)
        .await
        .expect("publish");
    tokio::time::sleep(Duration::from_millis(300)).await;
    t.history(
        "long front expired",
        &read(b, &long, None, None, false).await,
    );
    t.history(
        "since the first kept",
        &read(b, &long, Some(&mid), Some(5), true).await,
    );
    let early = StreamPosition {
        offset: 100,
        epoch: mid.epoch.clone(),
    };
    t.history(
        "since an expired one",
        &read(b, &long, Some(&early), None, false).await,
    );
    t.lines
}
