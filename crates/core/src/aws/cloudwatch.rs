//! CloudWatch behind the [`MetricSink`] port: `PutMetricData` in the contract's namespace.

use async_trait::async_trait;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

use crate::error::Error;
use crate::ports::{Metric, MetricSink, Unit};

/// CloudWatch `PutMetricData`, by default in namespace [`appcreds_wire::metrics::NAMESPACE`].
#[derive(Debug, Clone)]
pub struct CloudWatchSink {
    client: aws_sdk_cloudwatch::Client,
    namespace: &'static str,
}

impl CloudWatchSink {
    /// A sink on `client`, in the contract's namespace.
    pub fn new(client: aws_sdk_cloudwatch::Client) -> Self {
        Self { client, namespace: appcreds_wire::metrics::NAMESPACE }
    }

    /// A sink on `client` in `namespace`.
    pub fn in_namespace(client: aws_sdk_cloudwatch::Client, namespace: &'static str) -> Self {
        Self { client, namespace }
    }
}

fn datum(metric: Metric) -> MetricDatum {
    let dimensions =
        metric.dimensions.into_iter().map(|(name, value)| Dimension::builder().name(name).value(value).build());
    MetricDatum::builder()
        .metric_name(metric.name)
        .set_dimensions(Some(dimensions.collect()))
        .value(metric.value)
        .unit(match metric.unit {
            Unit::Count => StandardUnit::Count,
            Unit::Percent => StandardUnit::Percent,
            Unit::Seconds => StandardUnit::Seconds,
            Unit::None => StandardUnit::None,
        })
        .timestamp(DateTime::from_secs(metric.timestamp))
        .build()
}

#[async_trait]
impl MetricSink for CloudWatchSink {
    async fn put(&self, data: Vec<Metric>) -> Result<(), Error> {
        self.client
            .put_metric_data()
            .namespace(self.namespace)
            .set_metric_data(Some(data.into_iter().map(datum).collect()))
            .send()
            .await
            .map_err(|e| Error::internal("CloudWatch PutMetricData", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_becomes_a_datum_with_its_unit_and_dimensions() {
        let d = datum(Metric {
            name: "GitHubAPICallsRemainingPercent",
            dimensions: vec![("Category", "core".into()), ("AppID", "7".into())],
            value: 75.0,
            unit: Unit::Percent,
            timestamp: 1_000_000,
        });
        assert_eq!(
            (d.metric_name(), d.value(), d.unit(), d.timestamp()),
            (
                Some("GitHubAPICallsRemainingPercent"),
                Some(75.0),
                Some(&StandardUnit::Percent),
                Some(&DateTime::from_secs(1_000_000))
            )
        );
        let dims: Vec<(&str, &str)> = d.dimensions().iter().map(|d| (d.name().unwrap(), d.value().unwrap())).collect();
        assert_eq!(dims, [("Category", "core"), ("AppID", "7")]);
    }
}
