//! Deploying mappings with infrastructure code: the CloudFormation custom resource
//! `Custom::KafkaEsmEventSource` ([`custom_resource`]).

pub mod custom_resource;
