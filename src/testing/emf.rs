//! A checker of CloudWatch Embedded Metric Format documents, after the specification
//! (docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):
//! the root is one JSON object with `_aws` {`Timestamp`, `CloudWatchMetrics`}; each directive has
//! exactly `Namespace`, `Dimensions`, `Metrics`; every dimension and metric name references a root
//! member (dimension values strings, metric values a number or an array of at most 100 numbers);
//! at most 30 dimensions per set and 100 metrics per directive; `Unit` one of CloudWatch's;
//! `StorageResolution` 1 or 60; the event at most 1 MB.

use serde_json::{Map, Value};

const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Checks one log line.
///
/// # Errors
/// What in the line breaks the specification.
pub fn validate(line: &str) -> Result<(), String> {
    if line.len() > 1_048_576 {
        return Err(format!("event of {} bytes is over 1 MB", line.len()));
    }
    let root: Value = serde_json::from_str(line).map_err(|e| format!("not one JSON value: {e}"))?;
    let root = root.as_object().ok_or("root is not an object")?;
    let aws = root.get("_aws").and_then(Value::as_object).ok_or("_aws is missing or not an object")?;
    let timestamp = aws.get("Timestamp").ok_or("_aws.Timestamp is missing")?;
    if timestamp.as_u64().is_none_or(|t| t == 0) {
        return Err(format!("_aws.Timestamp {timestamp} is not epoch milliseconds"));
    }
    let directives =
        aws.get("CloudWatchMetrics").and_then(Value::as_array).ok_or("_aws.CloudWatchMetrics is not an array")?;
    if directives.is_empty() {
        return Err("_aws.CloudWatchMetrics is empty".into());
    }
    for directive in directives {
        check_directive(root, directive)?;
    }
    Ok(())
}

fn check_directive(root: &Map<String, Value>, directive: &Value) -> Result<(), String> {
    let directive = directive.as_object().ok_or("a MetricDirective is not an object")?;
    if let Some(extra) = directive.keys().find(|k| !["Namespace", "Dimensions", "Metrics"].contains(&k.as_str())) {
        return Err(format!("MetricDirective has a member the specification does not define: {extra}"));
    }
    let namespace = directive.get("Namespace").and_then(Value::as_str).ok_or("Namespace is missing")?;
    if namespace.is_empty() || namespace.len() > 255 || namespace.starts_with("AWS/") {
        return Err(format!("Namespace {namespace:?} is not 1–255 characters outside AWS/"));
    }
    let sets = directive.get("Dimensions").and_then(Value::as_array).ok_or("Dimensions is not an array")?;
    for set in sets {
        let set = set.as_array().ok_or("a DimensionSet is not an array")?;
        if set.len() > 30 {
            return Err(format!("a DimensionSet has {} dimensions (at most 30)", set.len()));
        }
        for name in set {
            let name = name.as_str().ok_or("a dimension name is not a string")?;
            match root.get(name) {
                Some(Value::String(v)) if !v.is_empty() && v.len() <= 1024 => {}
                Some(other) => return Err(format!("dimension {name} is {other}, not a 1–1024 character string")),
                None => return Err(format!("dimension {name} has no root member")),
            }
        }
    }
    let metrics = directive.get("Metrics").and_then(Value::as_array).ok_or("Metrics is not an array")?;
    if metrics.len() > 100 {
        return Err(format!("{} metrics in one directive (at most 100)", metrics.len()));
    }
    for metric in metrics {
        let metric = metric.as_object().ok_or("a MetricDefinition is not an object")?;
        if let Some(extra) = metric.keys().find(|k| !["Name", "Unit", "StorageResolution"].contains(&k.as_str())) {
            return Err(format!("MetricDefinition has an undefined member: {extra}"));
        }
        let name = metric.get("Name").and_then(Value::as_str).ok_or("a metric Name is missing")?;
        if name.is_empty() || name.len() > 255 {
            return Err(format!("metric name {name:?} is not 1–255 characters"));
        }
        if let Some(unit) = metric.get("Unit")
            && !unit.as_str().is_some_and(|u| UNITS.contains(&u))
        {
            return Err(format!("metric {name}: Unit {unit} is not a CloudWatch unit"));
        }
        if let Some(resolution) = metric.get("StorageResolution")
            && !matches!(resolution.as_u64(), Some(1 | 60))
        {
            return Err(format!("metric {name}: StorageResolution {resolution} is neither 1 nor 60"));
        }
        match root.get(name) {
            Some(Value::Number(_)) => {}
            Some(Value::Array(values))
                if !values.is_empty() && values.len() <= 100 && values.iter().all(Value::is_number) => {}
            Some(other) => return Err(format!("metric {name} is {other}: not a number or 1–100 numbers")),
            None => return Err(format!("metric {name} has no root member")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checker_refuses_what_the_specification_forbids() {
        let good = r#"{"_aws":{"Timestamp":1574109732004,"CloudWatchMetrics":[{"Namespace":"lambda-function-metrics","Dimensions":[["functionVersion"]],"Metrics":[{"Name":"time","Unit":"Milliseconds","StorageResolution":60}]}]},"functionVersion":"$LATEST","time":100,"requestId":"989ffbf8"}"#;
        assert_eq!(validate(good), Ok(()));
        for (bad, why) in [
            (good.replace("\"functionVersion\":\"$LATEST\",", ""), "dimension without member"),
            (good.replace("\"time\":100", "\"time\":\"100\""), "metric value a string"),
            (good.replace("Milliseconds", "Millis"), "unknown unit"),
            (good.replace("\"StorageResolution\":60", "\"StorageResolution\":5"), "resolution"),
            (good.replace("\"Timestamp\":1574109732004,", ""), "no timestamp"),
            (good.replace("lambda-function-metrics", "AWS/Lambda"), "reserved namespace"),
        ] {
            assert!(validate(&bad).is_err(), "{why} passed");
        }
    }
}
