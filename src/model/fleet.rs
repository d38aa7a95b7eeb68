//! Each deploy's view as its owner published it — `rollbackd.view/v1` on
//! `topics.views`, key = deploy id, compacted (`docs/formats.md#view-records`)
//! — typed both ways, and the fleet's views as an instance read them.
//!
//! The owner of a key publishes the view of each of its deploys when it
//! changes (at most once a pass, so once per evaluation), again every
//! [`REFRESH`] while it is unchanged, once more when the deploy finishes,
//! and a tombstone when the finished deploy is forgotten. Every instance
//! reads the topic whole and shows, for the keys it does not own, the
//! latest view published: a view older than [`STALE`] is from an owner
//! that went silent — the key's owner is changing.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::time::Timestamp;

/// The schema tag of a view record.
pub const VIEW_SCHEMA: &str = "rollbackd.view/v1";

/// An unchanged view is published again this often: a view older than
/// [`STALE`] tells every instance that its owner went silent.
pub const REFRESH: Duration = Duration::from_secs(5);

/// A published view older than this is from an owner that went silent
/// (three refreshes missed).
pub const STALE: Duration = Duration::from_secs(15);

/// How a deploy stopped being watched, in the view of a finished deploy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    pub finished_at: Timestamp,
    pub finished_because: String,
}

/// A view record as the owner writes it: `deploy` is its view of the
/// deploy (the engine's `DeployView`, with its history).
#[derive(Debug, Serialize)]
pub struct ViewRecord<'a, D: Serialize> {
    pub schema: &'static str,
    pub deploy_id: &'a str,
    /// The instance that decides for the deploy's key.
    pub owner: &'a str,
    /// When the view was made, on the owner's clock.
    pub as_of: Timestamp,
    /// Set in the last view of a finished deploy.
    pub finished: Option<&'a Finished>,
    pub deploy: &'a D,
}

/// A view record as read. The deploy's view is carried as its owner wrote
/// it: JSON in, JSON out (`GET /v1/status`), read by no one in between.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PublishedView {
    pub deploy_id: String,
    pub owner: String,
    pub as_of: Timestamp,
    #[serde(default)]
    pub finished: Option<Finished>,
    pub deploy: Map<String, Value>,
}

/// The payload of a view record.
pub fn encode<D: Serialize>(record: &ViewRecord<'_, D>) -> Vec<u8> {
    // A view is plain data: serializing it cannot fail.
    serde_json::to_vec(record).unwrap_or_default()
}

/// A view record read back: its schema, its deploy id (the record's key
/// and its view's) and its owner checked.
pub fn decode(key: &[u8], payload: &[u8]) -> Result<PublishedView, String> {
    #[derive(Deserialize)]
    struct Tag {
        schema: String,
    }
    let tag: Tag =
        serde_json::from_slice(payload).map_err(|e| format!("not a view record: {e}"))?;
    if tag.schema != VIEW_SCHEMA {
        return Err(format!("schema {:?}, expected {VIEW_SCHEMA:?}", tag.schema));
    }
    let view: PublishedView =
        serde_json::from_slice(payload).map_err(|e| format!("{VIEW_SCHEMA}: {e}"))?;
    if view.deploy_id.is_empty() || view.owner.is_empty() {
        return Err(format!("{VIEW_SCHEMA}: empty deploy_id or owner"));
    }
    if key != view.deploy_id.as_bytes()
        || view.deploy.get("deploy_id").and_then(Value::as_str) != Some(&view.deploy_id)
    {
        return Err(format!(
            "{VIEW_SCHEMA}: the key, deploy_id and deploy.deploy_id of {:?} differ",
            view.deploy_id
        ));
    }
    Ok(view)
}

/// The fleet's views as read from the topic: the latest of each deploy.
#[derive(Debug, Default)]
pub struct Fleet {
    views: HashMap<String, PublishedView>,
}

impl Fleet {
    /// A record of the views topic: a view replaces its deploy's; a
    /// tombstone (no payload) forgets the deploy. A record without a key
    /// or malformed changes nothing, and says why.
    pub fn apply(&mut self, key: Option<&[u8]>, payload: &[u8]) -> Result<(), String> {
        let key = key
            .filter(|k| !k.is_empty())
            .ok_or("a view record without a key")?;
        if payload.is_empty() {
            let id = std::str::from_utf8(key).map_err(|_| "a tombstone whose key is not UTF-8")?;
            self.views.remove(id);
            return Ok(());
        }
        let view = decode(key, payload)?;
        self.views.insert(view.deploy_id.clone(), view);
        Ok(())
    }

    /// The latest view published of a deploy.
    pub fn get(&self, deploy_id: &str) -> Option<&PublishedView> {
        self.views.get(deploy_id)
    }

    /// How many deploys have a view.
    pub fn len(&self) -> usize {
        self.views.len()
    }

    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, owner: &str, finished: Option<&Finished>) -> Vec<u8> {
        let deploy = serde_json::json!({"deploy_id": id, "state": "healthy so far"});
        encode(&ViewRecord {
            schema: VIEW_SCHEMA,
            deploy_id: id,
            owner,
            as_of: Timestamp(1_000_000_000),
            finished,
            deploy: &deploy,
        })
    }

    #[test]
    fn a_view_replaces_the_last_and_a_tombstone_forgets_it() {
        let mut fleet = Fleet::default();
        fleet
            .apply(Some(b"d-1"), &record("d-1", "i0", None))
            .unwrap();
        fleet
            .apply(Some(b"d-1"), &record("d-1", "i1", None))
            .unwrap();
        let v = fleet.get("d-1").unwrap();
        assert_eq!(v.owner, "i1");
        assert_eq!(v.deploy["state"], "healthy so far");
        assert_eq!(v.as_of, Timestamp(1_000_000_000));
        let done = Finished {
            finished_at: Timestamp(2_000_000_000),
            finished_because: "completed".into(),
        };
        fleet
            .apply(Some(b"d-1"), &record("d-1", "i1", Some(&done)))
            .unwrap();
        assert_eq!(fleet.get("d-1").unwrap().finished.as_ref(), Some(&done));
        fleet.apply(Some(b"d-1"), b"").unwrap();
        assert!(fleet.is_empty());
    }

    #[test]
    fn a_malformed_record_changes_nothing_and_says_why() {
        let mut fleet = Fleet::default();
        fleet
            .apply(Some(b"d-1"), &record("d-1", "i0", None))
            .unwrap();
        type Case<'a> = (Option<&'a [u8]>, Vec<u8>, &'a str);
        let bad: [Case; 5] = [
            (None, record("d-1", "i9", None), "without a key"),
            (Some(b"d-2"), record("d-1", "i9", None), "differ"),
            (Some(b"d-1"), b"{".to_vec(), "not a view record"),
            (
                Some(b"d-1"),
                br#"{"schema": "rollbackd.audit/v1"}"#.to_vec(),
                "expected",
            ),
            (Some(b"d-1"), record("d-1", "", None), "empty"),
        ];
        for (key, payload, why) in bad {
            let err = fleet.apply(key, &payload).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        assert_eq!(fleet.len(), 1);
        assert_eq!(fleet.get("d-1").unwrap().owner, "i0");
    }
}
