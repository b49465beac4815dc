//! `--generate-cli-skeleton`: the request's parameters for `--cli-input-json`, as the AWS CLI
//! generates them from botocore's input shape (same names, order and placeholder values), less
//! the members kafka-esm does not support (`UNSUPPORTED_MEMBERS` in the parent module, and
//! `ProvisionedPollerConfig.PollerGroupName`). `tests/cli.rs` checks them against the AWS CLI's own
//! output in `tests/golden/aws-skeleton-*.json`.

use serde_json::Value;

use super::Command;

const CREATE: &str = include_str!("skeletons/create-event-source-mapping.json");
const UPDATE: &str = include_str!("skeletons/update-event-source-mapping.json");

/// The skeleton `command` asks for, if it asks for one.
pub fn requested(command: &Command) -> Option<Value> {
    let text = match command {
        Command::CreateEventSourceMapping(args) if args.input.generate_cli_skeleton.is_some() => CREATE,
        Command::UpdateEventSourceMapping(args) if args.input.generate_cli_skeleton.is_some() => UPDATE,
        _ => return None,
    };
    serde_json::from_str(text).ok()
}
