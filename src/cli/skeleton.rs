//! `--generate-cli-skeleton`: the request's parameters for `--cli-input-json`, as the AWS CLI
//! generates them from botocore's input shape (same names, order and placeholder values), less
//! the members kafka-esm does not support in create and update (`UNSUPPORTED_MEMBERS` in the
//! parent module, and `ProvisionedPollerConfig.PollerGroupName`). `tests/cli.rs` checks them against the AWS CLI's own
//! output in `tests/golden/aws-skeleton-*.json`.

use serde_json::Value;

use super::Command;

const CREATE: &str = include_str!("skeletons/create-event-source-mapping.json");
const UPDATE: &str = include_str!("skeletons/update-event-source-mapping.json");
const GET: &str = include_str!("skeletons/get-event-source-mapping.json");
const DELETE: &str = include_str!("skeletons/delete-event-source-mapping.json");
const TAG: &str = include_str!("skeletons/tag-resource.json");
const UNTAG: &str = include_str!("skeletons/untag-resource.json");
const LIST_TAGS: &str = include_str!("skeletons/list-tags.json");

/// The skeleton `command` asks for, if it asks for one.
pub fn requested(command: &Command) -> Option<Value> {
    let (input, text) = match command {
        Command::CreateEventSourceMapping(args) => (&args.input, CREATE),
        Command::UpdateEventSourceMapping(args) => (&args.input, UPDATE),
        Command::GetEventSourceMapping(args) => (&args.input, GET),
        Command::DeleteEventSourceMapping(args) => (&args.input, DELETE),
        Command::TagResource(args) => (&args.input, TAG),
        Command::UntagResource(args) => (&args.input, UNTAG),
        Command::ListTags(args) => (&args.input, LIST_TAGS),
        _ => return None,
    };
    input.generate_cli_skeleton.as_ref()?;
    serde_json::from_str(text).ok()
}
