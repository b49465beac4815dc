//! From the mappings table to what a poller should run and write: a pure function of the items
//! read and the consumers running.
//!
//! Valid mappings follow the state table ([`crate::model::state`]): consumed ones are wanted
//! (a changed configuration restarts the consumer), transitional states are settled, `Deleting`
//! items are removed. An item that is not a valid mapping stops its consumer and is disabled with
//! `ESM_CONFIG_NOT_VALID` and the problem as `LastProcessingResult`; if its user already asked to
//! delete it, it is removed.

use std::collections::{BTreeSet, HashMap};

use crate::delivery::policy::StopReason;
use crate::model::mapping::EventSourceMapping;
use crate::model::state::{Settle, State};
use crate::model::store::Loaded;

/// A write to the mappings table, each conditional on the version read.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Move a transitional state on, keeping reason and result.
    Settle { mapping: Box<EventSourceMapping>, to: State },
    /// Stop the mapping until a user fixes it.
    Disable { uuid: String, version: u64, reason: StopReason, message: String },
    /// Remove the item (a deleted mapping, once handed over).
    Remove { uuid: String, version: u64 },
}

/// What a refresh decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reconciled {
    /// Mappings to consume, by UUID.
    pub wanted: Vec<EventSourceMapping>,
    /// Consumers to stop (unwanted, or configuration changed: they restart from `wanted`).
    pub stop: Vec<String>,
    pub writes: Vec<Write>,
    /// Every UUID in the table: leases of any other mapping belong to a deleted one.
    pub all: BTreeSet<String>,
    /// Items without a UUID string: reported, otherwise ignored.
    pub nameless: usize,
}

/// The configuration that matters to a running consumer: everything but status fields.
pub fn fingerprint(mapping: &EventSourceMapping) -> String {
    let mut value = serde_json::to_value(mapping).unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        // Tags do not change what is consumed: tagging a mapping must not restart its consumer.
        for field in ["State", "StateTransitionReason", "LastProcessingResult", "LastModified", "Version", "Tags"] {
            // Keeps the other fields' order (`remove` would move the last field into the gap).
            obj.shift_remove(field);
        }
    }
    value.to_string()
}

/// Decides from `items` (the whole table) and `running` (UUID → fingerprint of each running
/// consumer).
pub fn reconcile(items: Vec<Loaded>, running: &HashMap<String, String>) -> Reconciled {
    let mut out = Reconciled::default();
    for item in items {
        let Some(uuid) = item.uuid().map(str::to_owned) else {
            out.nameless += 1;
            continue;
        };
        out.all.insert(uuid.clone());
        let problem = item.problem();
        let unwanted = |out: &mut Reconciled| {
            if running.contains_key(&uuid) {
                out.stop.push(uuid.clone());
            }
        };
        match item {
            Loaded::Malformed { state, version, .. } => {
                unwanted(&mut out);
                match state.as_deref() {
                    Some("Deleting") => out.writes.push(Write::Remove { uuid, version }),
                    Some("Disabled") => {}
                    _ => out.writes.push(Write::Disable {
                        uuid,
                        version,
                        reason: StopReason::EsmConfigNotValid,
                        message: problem.unwrap_or_default(),
                    }),
                }
            }
            Loaded::Invalid { mapping, .. } => {
                unwanted(&mut out);
                match mapping.state {
                    State::Deleting => out.writes.push(Write::Remove { uuid, version: mapping.version }),
                    State::Disabled => {}
                    _ => out.writes.push(Write::Disable {
                        uuid,
                        version: mapping.version,
                        reason: StopReason::EsmConfigNotValid,
                        message: problem.unwrap_or_default(),
                    }),
                }
            }
            Loaded::Valid(mapping) => match mapping.state.settle() {
                Settle::Consume { then } => {
                    if running.get(&uuid).is_some_and(|fp| *fp != fingerprint(&mapping)) {
                        out.stop.push(uuid.clone());
                    }
                    if let Some(to) = then {
                        out.writes.push(Write::Settle { mapping: Box::new(mapping.clone()), to });
                    }
                    out.wanted.push(mapping);
                }
                Settle::Stop { then } => {
                    unwanted(&mut out);
                    if let Some(to) = then {
                        out.writes.push(Write::Settle { mapping: Box::new(mapping), to });
                    }
                }
                Settle::Remove => {
                    unwanted(&mut out);
                    out.writes.push(Write::Remove { uuid, version: mapping.version });
                }
            },
        }
    }
    out.wanted.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const A: &str = "6d9bce8e-836b-442c-8070-74e77903c815";

    fn item(state: &str, batch_size: serde_json::Value) -> Loaded {
        Loaded::from_json(json!({
            "UUID": A, "StartingPosition": "LATEST", "BatchSize": batch_size,
            "FunctionArn": "f", "LastModified": 1.0, "State": state, "Topics": ["t"],
            "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["b:9092"]}},
            "Version": 4
        }))
    }

    #[test]
    fn transitional_states_settle_and_a_changed_configuration_restarts() {
        let r = reconcile(vec![item("Creating", json!(10))], &HashMap::new());
        assert_eq!(r.wanted.len(), 1);
        assert!(matches!(&r.writes[..], [Write::Settle { to: State::Enabled, .. }]));
        let Loaded::Valid(old) = item("Enabled", json!(10)) else { panic!() };
        let running = HashMap::from([(A.to_owned(), fingerprint(&old))]);
        assert!(reconcile(vec![item("Enabled", json!(10))], &running).stop.is_empty());
        assert_eq!(reconcile(vec![item("Updating", json!(20))], &running).stop, [A]);
        let r = reconcile(vec![item("Disabling", json!(10))], &running);
        assert!(r.wanted.is_empty() && r.stop == [A]);
        assert!(matches!(&r.writes[..], [Write::Settle { to: State::Disabled, .. }]));
        let r = reconcile(vec![item("Deleting", json!(10))], &running);
        assert_eq!(r.writes, [Write::Remove { uuid: A.into(), version: 4 }]);
    }

    #[test]
    fn tagging_a_running_mapping_does_not_restart_it() {
        let Loaded::Valid(mut mapping) = item("Enabled", json!(10)) else { panic!() };
        let running = HashMap::from([(A.to_owned(), fingerprint(&mapping))]);
        mapping.tags = Some([("team".to_owned(), "payments".to_owned())].into());
        mapping.version += 1;
        assert!(reconcile(vec![Loaded::Valid(mapping)], &running).stop.is_empty());
    }

    #[test]
    fn a_malformed_item_is_disabled_naming_the_field_and_removed_when_deleting() {
        let r = reconcile(vec![item("Enabled", json!("7"))], &HashMap::new());
        match &r.writes[..] {
            [Write::Disable { uuid, version: 4, reason: StopReason::EsmConfigNotValid, message }] => {
                assert_eq!(uuid, A);
                assert!(message.starts_with("PROBLEM: BatchSize: invalid type"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(reconcile(vec![item("Disabled", json!("7"))], &HashMap::new()).writes.is_empty());
        assert_eq!(
            reconcile(vec![item("Deleting", json!("7"))], &HashMap::new()).writes,
            [Write::Remove { uuid: A.into(), version: 4 }]
        );
        // Breaking a rule (not a type): disabled too, with the rule.
        let r = reconcile(vec![item("Enabled", json!(0))], &HashMap::new());
        assert!(
            matches!(&r.writes[..], [Write::Disable { message, .. }] if message.starts_with("PROBLEM: BatchSize: 0 is out of range"))
        );
    }
}
