//! One view of the whole fleet: the owner publishes the view of each
//! deploy it decides for to `topics.views` ([`Publisher`], from the owner
//! thread), and every instance reads that topic whole into the fleet's
//! views ([`read`], on its own thread), which `GET /v1/status` merges with
//! its own ([`crate::http::status`]). The record format and its cadence:
//! [`crate::model::fleet`].
//!
//! Views are informational: they go out with the evidence producer,
//! outside the owner's transactions, and a view the broker did not take is
//! published again at the next refresh.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::intake::{Sender, ACK_WITHIN};
use super::shared::Shared;
use super::RunError;
use crate::engine::{DeployView, Engine, ViewMark};
use crate::kafka::consumer::ControlReader;
use crate::kafka::producer::{OutRecord, Until};
use crate::kafka::InRecord;
use crate::model::fleet::{self, Finished, Fleet, ViewRecord, REFRESH, VIEW_SCHEMA};
use crate::time::Timestamp;

/// How often the owner looks for views to publish.
const EVERY: Duration = Duration::from_secs(1);

/// The owner's side: which views it published, and when.
pub struct Publisher {
    /// Active deploys it owns: the mark of the view last published, when.
    active: HashMap<String, (ViewMark, Instant)>,
    /// Finished deploys whose last view is published (by it or by the
    /// key's owner before it): a tombstone follows when they are forgotten.
    finished: HashSet<String>,
    last: Instant,
}

impl Default for Publisher {
    fn default() -> Self {
        Publisher {
            active: HashMap::new(),
            finished: HashSet::new(),
            last: Instant::now() - EVERY,
        }
    }
}

impl Publisher {
    /// At most once a second: the views due, sent without waiting (the
    /// owner thread never waits for an informational record).
    pub fn publish(&mut self, shared: &Shared, sender: &Sender) {
        if self.last.elapsed() < EVERY {
            return;
        }
        self.last = Instant::now();
        let records = {
            let engine = shared.read();
            let fleet = shared.fleet();
            self.due(
                &engine,
                &fleet,
                &shared.instance,
                &shared.config.topics.views,
            )
        };
        if records.is_empty() {
            return;
        }
        let sender = sender.clone();
        sender.rt.clone().spawn(async move {
            let until = Until::Deadline(Instant::now() + ACK_WITHIN);
            if let Err(e) = sender.producer.deliver(&records, until).await {
                warn!(error = %e, records = records.len(), "the views topic did not acknowledge; published again at the next refresh");
            }
        });
    }

    /// The records due now: the view of each active deploy it owns whose
    /// view changed, or was last published [`REFRESH`] ago; the last view
    /// of each deploy it owns that finished (unless its owner before
    /// published one); a tombstone for each deploy forgotten since.
    pub fn due(
        &mut self,
        engine: &Engine,
        fleet: &Fleet,
        instance: &str,
        topic: &str,
    ) -> Vec<OutRecord> {
        let now = engine.now();
        let mut out = Vec::new();
        let marks = engine.owned_marks();
        let owned: HashSet<&str> = marks.iter().map(|(id, _)| id.as_str()).collect();
        for (id, mark) in &marks {
            let fresh = self
                .active
                .get(id)
                .is_some_and(|(m, at)| m == mark && at.elapsed() < REFRESH);
            if fresh {
                continue;
            }
            if let Some(view) = engine.latest_view(id) {
                out.push(record(topic, &view, None, instance, now));
                self.active
                    .insert(id.clone(), (mark.clone(), Instant::now()));
            }
        }
        let finished: HashMap<&str, _> = engine
            .finished()
            .map(|f| (f.deploy.deploy_id.as_str(), f))
            .collect();
        // Left the owned active deploys: finished, forgotten, or its key
        // owned elsewhere now (still active here).
        let left: Vec<String> = self
            .active
            .keys()
            .filter(|id| !owned.contains(id.as_str()))
            .cloned()
            .collect();
        for id in left {
            self.active.remove(&id);
            if !finished.contains_key(id.as_str()) && !engine.is_active(&id) {
                out.push(tombstone(topic, &id));
            }
        }
        let ownership = engine.ownership();
        for (id, f) in &finished {
            let d = &f.deploy;
            if self.finished.contains(*id) || !ownership.owns(&d.service, &d.environment) {
                continue;
            }
            self.finished.insert(id.to_string());
            if fleet.get(id).is_some_and(|p| p.finished.is_some()) {
                continue;
            }
            let done = Finished {
                finished_at: f.finished_at,
                finished_because: f.finished_because.clone(),
            };
            out.push(record(topic, d, Some(&done), instance, now));
        }
        let forgotten: Vec<String> = self
            .finished
            .iter()
            .filter(|id| !finished.contains_key(id.as_str()))
            .cloned()
            .collect();
        for id in forgotten {
            self.finished.remove(&id);
            out.push(tombstone(topic, &id));
        }
        out
    }
}

fn record(
    topic: &str,
    view: &DeployView,
    finished: Option<&Finished>,
    owner: &str,
    as_of: Timestamp,
) -> OutRecord {
    OutRecord {
        topic: topic.to_string(),
        key: Some(view.deploy_id.as_bytes().to_vec()),
        payload: fleet::encode(&ViewRecord {
            schema: VIEW_SCHEMA,
            deploy_id: &view.deploy_id,
            owner,
            as_of,
            finished,
            deploy: view,
        }),
        ..OutRecord::default()
    }
}

fn tombstone(topic: &str, deploy_id: &str) -> OutRecord {
    OutRecord {
        topic: topic.to_string(),
        key: Some(deploy_id.as_bytes().to_vec()),
        ..OutRecord::default()
    }
}

/// Reads the views topic whole, then follows it into the fleet's views
/// until stopped (a topic created later is followed once it appears).
pub fn read(shared: Arc<Shared>, mut reader: ControlReader) -> Result<(), RunError> {
    let topic = shared.config.topics.views.clone();
    let n = loop {
        match reader.read_whole(&topic, |rec| take(&shared, &rec)) {
            Ok(n) => break n,
            Err(e) => {
                warn!(topic = %topic, error = %e, "reading the views topic failed; retrying");
                if shared.cancel.is_cancelled() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    };
    info!(topic = %topic, records = n, deploys = shared.fleet().len(), "views read");
    while let Err(e) = reader.follow(&[topic.as_str()]) {
        warn!(topic = %topic, error = %e, "following the views topic failed; retrying");
        if shared.cancel.is_cancelled() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut last_check = Instant::now();
    while !shared.cancel.is_cancelled() {
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(rec)) => take(&shared, &rec),
            Some(Err(e)) => warn!(topic = %topic, error = %e, "views consumer error"),
            None => {}
        }
        if last_check.elapsed() >= Duration::from_secs(10) {
            last_check = Instant::now();
            if let Err(e) = reader.follow_new(&[topic.as_str()]) {
                warn!(topic = %topic, error = %e, "looking for new view partitions failed");
            }
        }
    }
    Ok(())
}

/// A view record into the fleet's views; a malformed one changes nothing.
fn take(shared: &Shared, rec: &InRecord) {
    if let Err(why) = shared.fleet().apply(rec.key.as_deref(), &rec.payload) {
        warn!(topic = %rec.topic, partition = rec.partition, offset = rec.offset, error = %why, "malformed view record ignored");
    }
}
